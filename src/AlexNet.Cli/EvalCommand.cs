using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Globalization;
using System.Linq;
using AlexNet.Evaluation;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>`alexnet eval`: §6's top-1/top-5 error, centre crop and 10-crop, one net or an ensemble.</summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string[]>("--checkpoint", "-c")
        {
            Description = "Checkpoint(s) to evaluate; several are averaged as an ensemble (§6).",
            AllowMultipleArgumentsPerToken = true,
        };
        var ensemble = new Option<string[]>("--ensemble")
        {
            Description = "Checkpoints whose softmax outputs are averaged (§6).",
            AllowMultipleArgumentsPerToken = true,
        };
        var data = new Option<string>("--data", "-d")
        {
            Description =
                "A prepared store (e.g. data/fashion-mnist/val), or an ImageNet-style folder ROOT/<class>/<image>.",
            Required = true,
        };
        var views = new Option<string>("--views")
        {
            Description =
                "centre, ten (§4.1's ten patches), both, or flip (not in the paper: the centre and its reflection " +
                "averaged).",
            DefaultValueFactory = _ => "both",
        };
        views.AcceptOnlyFromAmong("centre", "ten", "both", "flip");
        var weights = new Option<string>("--weights")
        {
            Description =
                "model (the trained weights) or ema (their moving average, for runs trained with --ema; not in the " +
                "paper).",
            DefaultValueFactory = _ => "model",
        };
        weights.AcceptOnlyFromAmong("model", "ema");
        var json = new Option<string?>("--json")
        {
            Description = "Write the full result (per-class accuracy, most-confused pairs) to this JSON file.",
        };
        var batch = new Option<int>("--batch-size", "-b")
        {
            Description = "Batch size.",
            DefaultValueFactory = _ => 256,
        };
        var threads = new Option<int>("--threads")
        {
            Description = "Compute threads.",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        Option<string> device = Cli.DeviceOption();
        Option<string?> precision = Cli.CheckpointPrecisionOption();
        Option<string> engine = Cli.EngineOption();
        var command =
            new Command("eval", "Evaluate checkpoints: top-1/top-5 error with the centre crop and with 10-crop " +
            "averaging.")
        {
            checkpoint, ensemble, data, views, weights, json, batch, threads, device, precision, engine,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string[] paths = (r.GetValue(checkpoint)
                ?? Array.Empty<string>()).Concat(r.GetValue(ensemble) ?? Array.Empty<string>()).ToArray();
            Compute.UseThreads(r.GetValue(threads));
            using Ensemble nets = Ensemble.Load(paths, averagedWeights: r.GetValue(weights) == "ema",
                Compute.ResolveDevice(r.GetValue(device)!),
                Cli.PrecisionOrNull(r.GetValue(precision)),
                AlexNet.Model.Kernels.OneDnnNet.ParseEngine(r.GetValue(engine)!));
            AnsiConsole.MarkupLineInterpolated(
                $"Inference on {nets.Models[0].Engine?.Summary ?? "libtorch (the modules)"}.");
            List<EvalResult> results = TestPipeline.Evaluate(nets, r.GetValue(data)!,
                Enum.Parse<ViewSet>(r.GetValue(views)!, ignoreCase: true),
                r.GetValue(batch), m => AnsiConsole.MarkupLineInterpolated($"{m}"));
            Print(results);
            if (r.GetValue(json) is string jsonPath)
            {
                Json.Write(jsonPath, results);
                AnsiConsole.MarkupLineInterpolated($"Wrote {jsonPath}");
            }
            return 0;
        }));
        return command;
    }

    public static void Print(IEnumerable<EvalResult> results)
    {
        var table = new Table().AddColumn("views").AddColumn(new TableColumn("nets").RightAligned())
            .AddColumn(new TableColumn("images").RightAligned())
            .AddColumn(new TableColumn("top-1 error").RightAligned())
            .AddColumn(new TableColumn("top-5 error").RightAligned())
            .AddColumn(new TableColumn("accuracy").RightAligned()).AddColumn(new TableColumn("loss").RightAligned());
        foreach (EvalResult e in results)
        {
            table.AddRow(e.Views, e.Models.ToString(CultureInfo.InvariantCulture),
                e.Count.ToString(CultureInfo.InvariantCulture),
                ConsoleProgress.Pct(e.Top1Error), ConsoleProgress.Pct(e.Top5Error),
                ConsoleProgress.Pct(1 - e.Top1Error),
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
