using System;
using System.CommandLine;
using System.Globalization;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Model;
using AlexNet.Training;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>
/// `alexnet experiment NAME`: one of the paper's ablations, its arms trained under the same seed and budget.
/// </summary>
internal static class ExperimentCommand
{
    public static Command Create()
    {
        var name = new Argument<string>("name")
        {
            Description =
                "relu-vs-tanh (§3.1), lrn (§3.3), pooling (§3.4), dropout (§4.2), pca (§4.1), towers (§3.2), depth " +
                "(§7).",
        };
        name.AcceptOnlyFromAmong(Experiments.Names);
        var data = new Option<string>("--data", "-d")
        {
            Description = "Prepared data folder with train/ and val/.",
            DefaultValueFactory = _ => Path.Combine("data", "fashion-mnist"),
        };
        var model = Cli.ModelOption(Variants.Small);
        var epochs = new Option<int>("--epochs")
        {
            Description = "Budget: epochs per arm.",
            DefaultValueFactory = _ => 2,
        };
        var limit = new Option<int>("--train-limit")
        {
            Description = "Budget: train on the first N images only (0 = all).",
            DefaultValueFactory = _ => 20000,
        };
        var seeds = new Option<string>("--seeds")
        {
            Description = "Comma-separated seeds; the table gives the spread over them.",
            DefaultValueFactory = _ => "1",
        };
        var lr = new Option<double>("--lr")
        {
            Description = "ε for every arm (relu-vs-tanh sweeps --lrs instead).",
            DefaultValueFactory = _ => 0.01,
        };
        var steps = new Option<string?>("--step-epochs")
        {
            Description =
                "Budget: comma-separated epochs after which ε is divided by 10 (§5 divided it three times), e.g. " +
                "18,26; default: ε constant.",
        };
        var lrs = new Option<string>("--lrs")
        {
            Description =
                "relu-vs-tanh: comma-separated ε, each net trained at each (§3.1: \"chosen independently to make " +
                "training as fast as possible\").",
            DefaultValueFactory = _ => string.Join(",",
                Experiments.DefaultSweep.Select(v => v.ToString(CultureInfo.InvariantCulture))),
        };
        var arms = new Option<string?>("--arms")
        {
            Description =
                "Train and report only these arms (comma-separated names or run-folder names, e.g. conv3-removed); " +
                "a later run without it into the same --out trains what is missing and reports every arm.",
        };
        var join = new Option<string[]>("--join")
        {
            Description =
                "results.json files of the same experiment trained elsewhere (another machine or session, e.g. other " +
                "seeds), " +
                "reported beside this run's arms; checked first: the same arms and budget, each arm and seed from one " +
                "place.",
            AllowMultipleArgumentsPerToken = true,
        };
        var output = new Option<string?>("--out", "-o")
        {
            Description = "Output folder (default runs/experiment-NAME).",
        };
        var threads = new Option<int>("--threads")
        {
            Description = "Compute threads.",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var replicas = new Option<int>("--replicas")
        {
            Description = Cli.ReplicasDescription,
            DefaultValueFactory = _ => 1,
        };
        var command =
            new Command("experiment", "Reproduce one of the paper's ablations at small scale: a markdown table beside " +
            "the paper's claim, and plots.")
        {
            name, data, model, epochs, limit, seeds, lr, steps, lrs, arms, join, output, threads, replicas,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            var machine = MachineOptions.Default with
            {
                Threads = r.GetValue(threads),
                Replicas = r.GetValue(replicas),
            };
            machine.Validate();
            (string trainDir, string valDir) = TrainCommand.Stores(r.GetValue(data), null, null);
            using ImageStore train = ImageStore.Open(trainDir);
            using ImageStore val = ImageStore.Open(valDir);
            int[] stepEpochs = r.GetValue(steps) is string s ? Cli.List(s, "--step-epochs",
                int.Parse) : Array.Empty<int>();
            if (stepEpochs.Any(e => e < 1 || e >= r.GetValue(epochs)))
            {
                throw new ArgumentException(
                    $"--step-epochs: each epoch must be from 1 to --epochs − 1 ({r.GetValue(epochs) - 1}), " +
                    $"got {r.GetValue(steps)}.");
            }
            var baseline = new TrainOptions
            {
                Model = r.GetValue(model)!, Epochs = r.GetValue(epochs), TrainLimit = r.GetValue(limit),
                LearningRate = r.GetValue(lr),
                InputScale = Recipes.InputScaleFor(train.Height),
                Schedule = ScheduleKind.Step, StepEpochs = stepEpochs, LogEvery = 20,
            };
            double[] sweep = Cli.List(r.GetValue(lrs)!, "--lrs", double.Parse);
            if (sweep.Length == 0 || sweep.Any(v => !(v > 0) || double.IsInfinity(v)))
            {
                throw new ArgumentException("--lrs needs one or more positive learning rates, e.g. 0.04,0.02,0.01.");
            }
            Experiment e = Experiments.Get(r.GetValue(name)!, baseline, sweep);
            if (r.GetValue(arms) is string only)
            {
                e = Experiments.Only(e, only);
            }
            long[] seedList = Cli.List(r.GetValue(seeds)!, "--seeds", long.Parse);
            JoinedResults[] joined = (r.GetValue(join)
                ?? Array.Empty<string>()).Select(Experiments.ReadJoined).ToArray();
            string outDir = r.GetValue(output) ?? Path.Combine("runs", $"experiment-{e.Name}");
            var progress = new ConsoleProgress();
            var results = Experiments.Run(e, train, val, outDir, seedList, machine, progress, joined);
            AnsiConsole.Write(new Markup(Markup.Escape(File.ReadAllText(Path.Combine(outDir, "report.md")))));
            AnsiConsole.WriteLine();
            return 0;
        }));
        return command;
    }
}
