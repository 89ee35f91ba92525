using System;
using System.CommandLine;
using System.Diagnostics;
using System.IO;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Training;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>
/// `alexnet quickstart`: the whole system on the embedded default data set, on a laptop with no ImageNet:
/// Fashion-MNIST (installed from Debian if missing) → store → the `small` net trained with the scaled §5
/// recipe → §6 evaluation with the centre crop and ten patches.
/// </summary>
internal static class QuickstartCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data")
        {
            Description = "Where the prepared Fashion-MNIST stores go.",
            DefaultValueFactory = _ => Path.Combine("data", "fashion-mnist"),
        };
        var output = new Option<string?>("--out", "-o")
        {
            Description = "Run folder (default runs/quickstart-<time>).",
        };
        var epochs = new Option<int>("--epochs")
        {
            Description =
                "Epochs (ε rises over the first 2, then falls linearly to 0; under 3 epochs it rises over 2/15 of " +
                "them).",
            DefaultValueFactory = _ => Recipes.QuickStart.Epochs,
        };
        var seed = new Option<long>("--seed")
        {
            Description = "Seed.",
            DefaultValueFactory = _ => Recipes.QuickStart.Seed,
        };
        Option<string> precision = Cli.PrecisionOption();
        var command =
            new Command("quickstart", "Train and evaluate the small AlexNet on Fashion-MNIST (the README's main " +
            "command).")
        {
            data, output, epochs, seed, precision,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            var clock = Stopwatch.StartNew();
            EnsureFashionMnist();
            string dataDir = r.GetValue(data)!;
            PrepareCommand.PrepareSplits(dataDir,
                (train, store) => FashionMnist.Prepare(FashionMnist.DefaultDirectory, train, store));
            int epochCount = r.GetValue(epochs);
            TrainOptions o = Recipes.QuickStartFor(epochCount) with
            {
                Seed = r.GetValue(seed),
                Precision = AlexNet.Model.LowPrecision.Parse(r.GetValue(precision)!),
                // Each epoch's test error only draws the curves: the centre view is enough, at half the cost.
                ValViews = ViewSet.Centre,
            };
            string runDir = r.GetValue(output) ?? Path.Combine("runs", $"quickstart-{DateTime.Now:yyyyMMdd-HHmmss}");
            // Two replicas on two or more cores: `small`'s small layers keep two threads busier side by side than
            // splitting each operation (docs/performance.md, "Replicas").
            MachineOptions machine = MachineOptions.Default with { Replicas = Math.Min(2, Environment.ProcessorCount) };
            int code = TrainCommand.Execute(o, machine, Path.Combine(dataDir, "train"),
                Path.Combine(dataDir, "val"), runDir, resume: false,
                $"alexnet train --out {runDir} --data {dataDir} --resume");
            if (code != 0)
            {
                return code;
            }
            // The last epoch's weights: `val` is Fashion-MNIST's test split, so best.ckpt would be chosen on the test
            // set.
            string last = Path.Combine(runDir, Trainer.LastCheckpoint);
            // The recipe's views: each image and its reflection (`alexnet eval --views ten` adds §4.1's ten patches).
            using Ensemble net = Ensemble.Load(new[] { last });
            var results = TestPipeline.Evaluate(net, Path.Combine(dataDir, "val"), Recipes.QuickStart.ValViews, 500);
            AnsiConsole.MarkupLineInterpolated($"Fashion-MNIST test set (10,000 images), {last}:");
            EvalCommand.Print(results);
            Json.Write(Path.Combine(runDir, "result.json"), results);
            // What it trained: the curves, conv1's kernels (Figure 3) and test images with their top-5 (Figure 4), in
            // report.md.
            string report = AlexNet.Analysis.RunReport.Write(runDir, Path.Combine(dataDir, "val"), checkpoint: last);
            AnsiConsole.MarkupLineInterpolated(
                $"Total time {clock.Elapsed.TotalMinutes:F1} min. Run folder: {runDir}:");
            foreach (string file in new[] { "result.json", "metrics.jsonl", "loss.png", "error.png",
                "kernels.png", "predictions.png" })
            {
                AnsiConsole.MarkupLineInterpolated($"  {Path.Combine(runDir, file)}");
            }
            AnsiConsole.MarkupLineInterpolated($"  {report} (all of it in one page)");
            AnsiConsole.MarkupLineInterpolated(
                $"See it in a browser (top-5, nearest training images, kernels): ./alexnet serve -c {Path.Combine(runDir, "last.ckpt")} --store {Path.Combine(dataDir, "train")}");
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// Installs Debian's dataset-fashion-mnist when it is missing and we may (root); otherwise says how.
    /// </summary>
    private static void EnsureFashionMnist()
    {
        if (FashionMnist.IsInstalled())
        {
            return;
        }
        if (Environment.UserName != "root")
        {
            throw new UserError(
                $"Fashion-MNIST is not installed ({FashionMnist.DefaultDirectory}): run `sudo apt-get install " +
                "dataset-fashion-mnist` (or ./setup.sh).");
        }
        AnsiConsole.MarkupLine("Installing Debian's dataset-fashion-mnist …");
        foreach (string args in new[] { "update", "install -y --no-install-recommends dataset-fashion-mnist" })
        {
            using Process p = SignalThread.Unblocked(() => Process.Start(new ProcessStartInfo("apt-get", args)
            {
                UseShellExecute = false,
            }))
                ?? throw new UserError("could not run apt-get; install dataset-fashion-mnist by hand.");
            p.WaitForExit();
            if (p.ExitCode != 0)
            {
                throw new UserError(
                    $"apt-get {args} failed (exit {p.ExitCode}); install dataset-fashion-mnist by hand.");
            }
        }
    }
}
