using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using AlexNet.Training;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>`alexnet eval`: §6's top-1/top-5 error, centre crop and 10-crop, one net or an ensemble.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string[]>("--checkpoint", "-c") { Description = "Checkpoint(s) to evaluate; several are averaged as an ensemble (§6).", AllowMultipleArgumentsPerToken = true };
        var ensemble = new Option<string[]>("--ensemble") { Description = "Checkpoints whose softmax outputs are averaged (§6).", AllowMultipleArgumentsPerToken = true };
        var data = new Option<string>("--data", "-d") { Description = "A prepared store (e.g. data/fashion-mnist/val), or an ImageNet-style folder ROOT/<class>/<image>.", Required = true };
        var views = new Option<string>("--views") { Description = "centre, ten (§4.1's ten patches) or both.", DefaultValueFactory = _ => "both" };
        views.AcceptOnlyFromAmong("centre", "ten", "both");
        var json = new Option<string?>("--json") { Description = "Write the full result (per-class accuracy, most-confused pairs) to this JSON file." };
        var batch = new Option<int>("--batch-size", "-b") { Description = "Batch size.", DefaultValueFactory = _ => 256 };
        var threads = new Option<int>("--threads") { Description = "Compute threads.", DefaultValueFactory = _ => Environment.ProcessorCount };
        var command = new Command("eval", "Evaluate checkpoints: top-1/top-5 error with the centre crop and with 10-crop averaging.")
        {
            checkpoint, ensemble, data, views, json, batch, threads,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string[] paths = (r.GetValue(checkpoint) ?? Array.Empty<string>()).Concat(r.GetValue(ensemble) ?? Array.Empty<string>()).ToArray();
            if (paths.Length == 0)
            {
                throw new UserError("give a --checkpoint (or --ensemble C1 C2 …).");
            }
            Compute.UseThreads(r.GetValue(threads));
            var results = Run(paths, r.GetValue(data)!, r.GetValue(views)!, r.GetValue(batch));
            Print(results);
            if (r.GetValue(json) is string jsonPath)
            {
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(results, ResultJson));
                AnsiConsole.MarkupLineInterpolated($"Wrote {jsonPath}");
            }
            return 0;
        }));
        return command;
    }

    internal static readonly JsonSerializerOptions ResultJson = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static List<EvalResult> Run(string[] checkpoints, string data, string views, int batch)
    {
        var models = new List<AlexNetModel>();
        try
        {
            RunState? first = null;
            foreach (string c in checkpoints)
            {
                (AlexNetModel m, RunState s) = Checkpoint.LoadModel(c);
                models.Add(m);
                first ??= s;
                if (s.Architecture.Classes != first.Architecture.Classes || s.StoreHeight != first.StoreHeight || s.Architecture.InputChannels != first.Architecture.InputChannels)
                {
                    throw new UserError($"{c} does not fit in an ensemble with {checkpoints[0]}: classes, input size and channels must agree.");
                }
            }
            using ImageStore store = OpenOrPrepare(data, first!);
            if (store.ClassCount != first!.Architecture.Classes || store.Channels != first.Architecture.InputChannels)
            {
                throw new UserError($"{data} has {store.ClassCount} classes and {store.Channels} channels; the network expects {first.Architecture.Classes} and {first.Architecture.InputChannels}.");
            }
            Augmentation aug = TestAugmentation(first, store.Height, store.Width);
            var results = new List<EvalResult>();
            if (views is "centre" or "both")
            {
                results.Add(Evaluator.Evaluate(models, store, aug, tenCrop: false, batch));
            }
            if (views is "ten" or "both")
            {
                results.Add(Evaluator.Evaluate(models, store, aug, tenCrop: true, batch));
            }
            return results;
        }
        finally
        {
            foreach (AlexNetModel m in models)
            {
                m.Dispose();
            }
        }
    }

    /// <summary>§4.1's test-time geometry and §2's mean image, both from the checkpoint's training set.</summary>
    public static Augmentation TestAugmentation(RunState s, int height, int width)
    {
        if (height != s.StoreHeight || width != s.StoreWidth)
        {
            throw new UserError($"the data is {height}×{width}, the network was trained on {s.StoreHeight}×{s.StoreWidth} records; prepare it with --size {s.StoreHeight}.");
        }
        var noPca = new PcaStats(new double[s.Architecture.InputChannels], Enumerable.Range(0, s.Architecture.InputChannels)
            .Select(_ => new double[s.Architecture.InputChannels]).ToArray(), Array.Empty<double[]>());
        return new Augmentation(s.Architecture.InputChannels, height, width, s.Mean, noPca, Trainer.AugmentOptionsFor(s.Options, height, width));
    }

    static ImageStore OpenOrPrepare(string data, RunState s)
    {
        if (ImageStore.IsComplete(data))
        {
            return ImageStore.Open(data);
        }
        if (Directory.Exists(data) && Directory.GetDirectories(data).Length > 0 && !File.Exists(Path.Combine(data, "progress.json")))
        {
            string store = Path.Combine(Path.GetTempPath(), "alexnet-eval-" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(
                System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(data))))[..16]);
            if (!ImageStore.IsComplete(store))
            {
                AnsiConsole.MarkupLineInterpolated($"Preparing {data} into {store} …");
                FolderPreparer.Prepare(ImageFolder.FromClassFolders(data), store, s.StoreHeight, Environment.ProcessorCount);
            }
            return ImageStore.Open(store);
        }
        return ImageStore.Open(data);   // gives the store's own clear error
    }

    public static void Print(IEnumerable<EvalResult> results)
    {
        var table = new Table().AddColumn("views").AddColumn(new TableColumn("nets").RightAligned()).AddColumn(new TableColumn("images").RightAligned())
            .AddColumn(new TableColumn("top-1 error").RightAligned()).AddColumn(new TableColumn("top-5 error").RightAligned())
            .AddColumn(new TableColumn("accuracy").RightAligned()).AddColumn(new TableColumn("loss").RightAligned());
        foreach (EvalResult e in results)
        {
            table.AddRow(e.Views, e.Models.ToString(CultureInfo.InvariantCulture), e.Count.ToString(CultureInfo.InvariantCulture),
                ConsoleProgress.Pct(e.Top1Error), ConsoleProgress.Pct(e.Top5Error), ConsoleProgress.Pct(1 - e.Top1Error),
                e.Loss.ToString("F4", CultureInfo.InvariantCulture));
        }
        AnsiConsole.Write(table);
        EvalResult last = results.Last();
        if (last.MostConfused.Length > 0)
        {
            AnsiConsole.MarkupLine("Most confused (true → predicted): " + Markup.Escape(string.Join("; ",
                last.MostConfused.Take(3).Select(p => $"{p.TrueName} → {p.PredictedName} ×{p.Count}"))));
        }
    }
}
