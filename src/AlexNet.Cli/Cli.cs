using System;
using System.CommandLine;
using System.Globalization;
using System.IO;
using System.Linq;
using AlexNet.Model;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>Shared option definitions and the error boundary of every command.</summary>
internal static class Cli
{
    public const int UsageError = 2;
    public const int Failure = 1;

    public static Option<string> ModelOption(string defaultModel) => new("--model", "-m")
    {
        Description = "Network: " + string.Join("; ", Variants.All.Select(v => $"{v.Name} = {v.Description}")),
        DefaultValueFactory = _ => defaultModel,
    };

    /// <summary>
    /// --device: where the net runs (the fused C# kernels are CPU float32's; elsewhere libtorch's operations run).
    /// </summary>
    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "cpu, cuda or cuda:N (cuda needs the CUDA build: README, \"The CUDA build\").",
        DefaultValueFactory = _ => "cpu",
    };

    private const string PrecisionText =
        "Not in the paper: fp32, or bf16 = the conv and FC products in bfloat16 from float32 weights (fast where " +
        "lscpu shows avx512_bf16)";

    private const string Int8Text =
        ", or int8 = a checkpoint `alexnet quantize` wrote, on oneDNN's int8 kernels (VNNI where lscpu shows " +
        "avx512_vnni or avx_vnni)";

    public const string ReplicasDescription =
        "Not in the paper (One weird trick's data parallelism, in one process): split each batch across this many " +
        "copies of the net, each on its own thread(s) of --threads, their gradients added in a fixed order (a machine " +
        "setting).";

    /// <param name="inference">Whether int8 is offered (inference only: `bench onnx`).</param>
    public static Option<string> PrecisionOption(bool inference = false) =>
        new("--precision")
        {
            Description = PrecisionText + (inference ? Int8Text : "") + ".",
            DefaultValueFactory = _ => "fp32",
        };

    /// <summary>--precision for commands that load a checkpoint: absent = the precision the run trained in.</summary>
    public static Option<string?> CheckpointPrecisionOption() =>
        new("--precision") { Description = PrecisionText + Int8Text + "; default: the run's own." };

    public static Precision? PrecisionOrNull(string? name) => name is null ? null : LowPrecision.Parse(name);

    /// <summary>--engine: what runs inference on the CPU (Model/Kernels/OneDnnNet.cs).</summary>
    public static Option<string> EngineOption() => new("--engine")
    {
        Description =
            "What runs inference on the CPU: auto = oneDNN's primitives (Debian's libdnnl2) where they serve the net, " +
            "else libtorch; libtorch; onednn.",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>
    /// A comma-separated flag value ("30,60,80"), each item parsed invariantly; a bad item names the flag.
    /// </summary>
    public static T[] List<T>(string text, string flag, Func<string, IFormatProvider, T> parse)
    {
        try
        {
            return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s =>
                parse(s, CultureInfo.InvariantCulture)).ToArray();
        }
        catch (FormatException)
        {
            throw new ArgumentException($"{flag} takes comma-separated numbers, not '{text}'.");
        }
    }

    /// <summary>Whole numbers, comma-separated.</summary>
    public static int[] Ints(string text, string flag) =>
        List(text, flag, (s, p) => int.Parse(s, NumberStyles.None, p));

    /// <summary>Refuses a count flag below 1, naming it.</summary>
    public static void Positive(int value, string flag)
    {
        if (value < 1)
        {
            throw new ArgumentException($"{flag} {value}: give a whole number of at least 1.");
        }
    }

    /// <summary>
    /// Runs a command body; a bad input becomes one clear line and a non-zero exit code, never a stack dump.
    /// </summary>
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ArgumentException or InvalidDataException or FileNotFoundException
                                       or DirectoryNotFoundException or UserError)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]error:[/] {e.Message}");
            return UsageError;
        }
        catch (UnauthorizedAccessException e)
        {
            AnsiConsole.MarkupLineInterpolated(
                $"[red]error:[/] {e.Message} This user may not read or write there: choose a path it can (or change the folder's permissions).");
            return Failure;
        }
        catch (IOException e)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]error:[/] {e.Message}");
            return Failure;
        }
    }
}

/// <summary>An error the user can fix, with a message that says how.</summary>
public sealed class UserError(string message) : Exception(message);
