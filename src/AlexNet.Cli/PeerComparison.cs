// `alexnet bench peer`: ours and the PyTorch peer (bench/peer.py) on the same nets, batch and threads, their
// runs interleaved round by round so that both see the same machine load, with the ratios (issue: performance).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Model;
using AlexNet.Performance;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>
/// `bench peer`'s result for one net, as written to --json: medians of ours and the peer's, and their ratios.
/// </summary>
internal sealed record PeerComparisonRow(string Model, int Batch, int Threads, int Rounds, double OursTrain,
    double PeerTrain, double TrainRatio,
    double OursInfer, double PeerInfer, double InferRatio, double OursTrainGflops, double MatmulGflops,
    long OursPeakRssBytes, long PeerPeakRssBytes,
    string PeerBlas, bool PeerChannelsLast);

internal sealed record PeerResult(string Model, bool ChannelsLast, double TrainImagesPerSecond,
    double InferImagesPerSecond, long PeakRssBytes, string Blas);

internal static class PeerComparison
{
    /// <summary>
    /// Debian's OpenBLAS with pthreads; the peer alone gets it through LD_LIBRARY_PATH (the system default stays).
    /// </summary>
    private const string OpenBlasDirectory = "/usr/lib/x86_64-linux-gnu/openblas-pthread";

    /// <summary>
    /// Debian's interpreter, where python3-torch lives, even when another python3 comes first on PATH.
    /// </summary>
    public static string DefaultPython => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    public static int Run(IReadOnlyList<string> models, int batch, int threads, int steps, int rounds, string python,
        string script, bool peerChannelsLast,
        int classes, int channels, string? jsonPath)
    {
        if (!File.Exists(script))
        {
            throw new UserError(
                $"The peer script '{script}' does not exist. Run from the repository root or pass --script PATH.");
        }
        double matmul = Benchmark.MatmulGflops(threads);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"libtorch float32 matmul 2048², {threads} threads: {matmul:F1} GFLOP/s"));
        var ours = models.ToDictionary(m => m, _ => new List<BenchResult>());
        var peer = models.ToDictionary(m => m, _ => new List<PeerResult>());
        for (int round = 1; round <= rounds; round++)
        {
            foreach (string model in models)
            {
                Architecture arch = Variants.Get(model, classes, channels);
                BenchResult o = Benchmark.Run(arch, "fused", batch, threads, 3, steps);
                ours[model].Add(o);
                PeerResult p = RunPeer(python, script, model, batch, threads, steps,
                    classes, channels, peerChannelsLast);
                peer[model].Add(p);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"round {round} {model}: ours train {o.TrainImagesPerSecond:F1} / infer {o.InferImagesPerSecond:F1} img/s; peer train {p.TrainImagesPerSecond:F1} / infer {p.InferImagesPerSecond:F1} img/s"));
            }
        }

        var table = new Table().AddColumns("net", "train ours", "train peer", "ratio",
            "infer ours", "infer peer", "ratio");
        var notes = new List<string>();
        var rows = new List<PeerComparisonRow>();
        static double Median<T>(List<T> runs, Func<T, double> value) => Benchmark.Median(runs.Select(value).ToList());
        var oursTrain = models.ToDictionary(m => m, m => Median(ours[m], r => r.TrainImagesPerSecond));
        var oursInfer = models.ToDictionary(m => m, m => Median(ours[m], r => r.InferImagesPerSecond));
        foreach (string model in models)
        {
            double ot = oursTrain[model], oi = oursInfer[model];
            double pt = Median(peer[model], r => r.TrainImagesPerSecond),
                pi = Median(peer[model], r => r.InferImagesPerSecond);
            double gflops = (ours[model][0] with { TrainImagesPerSecond = ot }).TrainGflops;
            long ourRss = ours[model].Max(r => r.PeakRssBytes), peerRss = peer[model].Max(r => r.PeakRssBytes);
            table.AddRow(model, F(ot), F(pt), F(ot / pt, "F2") + "×", F(oi), F(pi), F(oi / pi, "F2") + "×");
            notes.Add($"{model}: ours trains at {F(gflops)} GFLOP/s ({F(100 * gflops / matmul, "F0")}% of the matmul " +
                $"rate); peak RSS ours {ourRss >> 20} MiB " +
                $"(this process, all nets so far), peer {peerRss >> 20} MiB");
            rows.Add(new PeerComparisonRow(model, batch, threads, rounds, ot, pt, ot / pt, oi, pi, oi / pi,
                gflops, matmul, ourRss, peerRss,
                peer[model][0].Blas, peerChannelsLast));
        }
        table.Caption("images/s, medians over the rounds");
        AnsiConsole.Write(table);
        notes.ForEach(Console.WriteLine);
        Console.WriteLine(
            $"peer: {Path.GetFileName(script)}, BLAS {peer[models[0]][0].Blas}; medians over {rounds} interleaved " +
            $"rounds of {steps} steps each.");
        if (oursTrain.ContainsKey(Variants.Paper) && oursTrain.ContainsKey(Variants.Owt))
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"ours, paper / owt: training {oursTrain[Variants.Paper] / oursTrain[Variants.Owt]:F2}×, inference {oursInfer[Variants.Paper] / oursInfer[Variants.Owt]:F2}×"));
        }
        if (jsonPath is not null)
        {
            Json.Write(jsonPath, rows);
        }
        return 0;
    }

    private static PeerResult RunPeer(string python, string script, string model, int batch, int threads, int steps,
        int classes, int channels, bool channelsLast)
    {
        var args = new List<string> { "--model", model, "--batch", Inv(batch), "--threads", Inv(threads), "--steps", Inv(steps),
            "--classes", Inv(classes), "--channels", Inv(channels) };
        if (channelsLast)
        {
            args.Add("--channels-last");
        }
        var env = new Dictionary<string, string> { ["OMP_NUM_THREADS"] = Inv(threads) };
        if (Directory.Exists(OpenBlasDirectory))
        {
            string? old = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
            env["LD_LIBRARY_PATH"] = string.IsNullOrEmpty(old) ? OpenBlasDirectory : OpenBlasDirectory + ":" + old;
        }
        PeerOutput r = RunScript<PeerOutput>(python, script, args, env,
            "python3-torch python3-torchvision libopenblas0-pthread", $"--model {model}");
        return new PeerResult(model, channelsLast, r.TrainImagesPerSecond, r.InferImagesPerSecond,
            r.PeakRssBytes, r.Blas ?? "?");
    }

    /// <summary>What bench/peer.py prints: one JSON object with Python's snake_case keys.</summary>
    internal sealed record PeerOutput(string Peer, string? Blas, string Model, int Batch, int Threads,
        bool ChannelsLast, double TrainStepMs,
        double TrainImagesPerSecond, double InferMs, double InferImagesPerSecond, long PeakRssBytes);

    /// <summary>
    /// The peers' JSON: snake_case keys, every key a field of the record (a renamed key fails loudly, naming the
    /// script).
    /// </summary>
    private static readonly JsonSerializerOptions PeerJson = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
        RespectRequiredConstructorParameters = true,
    };

    /// <summary>
    /// Runs a peer script that prints one JSON line; a missing interpreter or module, or a failure, is a clear error
    /// naming the packages.
    /// </summary>
    internal static T RunScript<T>(string python, string script, IEnumerable<string> args,
        IReadOnlyDictionary<string, string> env,
        string packages, string what)
    {
        var start = new ProcessStartInfo(python)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(script);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        foreach ((string key, string value) in env)
        {
            start.Environment[key] = value;
        }
        Process process;
        try
        {
            process = SignalThread.Unblocked(() => Process.Start(start))
                ?? throw new UserError($"{python} did not start.");
        }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new UserError($"'{python}' could not be started: the peer needs `apt-get install {packages}`.");
        }
        using (process)
        {
            var stderr = process.StandardError.ReadToEndAsync();
            string stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                string err = stderr.Result;
                string hint = err.Contains("No module named",
                    StringComparison.Ordinal) ? $" Install the peer with `apt-get install {packages}`." : "";
                throw new UserError(
                    $"The peer ({script} {what}) failed with exit code {process.ExitCode}.{hint}\n{err.Trim()}");
            }
            try
            {
                return JsonSerializer.Deserialize<T>(stdout, PeerJson) ?? throw new JsonException("null");
            }
            catch (JsonException e)
            {
                throw new UserError(
                    $"The peer ({script} {what}) printed no {typeof(T).Name} result ({e.Message}): {stdout.Trim()}");
            }
        }
    }

    private static string Inv(int v) => v.ToString(CultureInfo.InvariantCulture);

    private static string F(double v, string format = "F1") => v.ToString(format, CultureInfo.InvariantCulture);
}
