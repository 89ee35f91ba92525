// The paper's ablations as presets: each trains the compared nets under the same seed and budget, then
// writes a markdown table with our numbers beside the paper's claim, and a plot of the curves.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Model;

namespace AlexNet.Training;

public sealed record ExperimentArm(string Name, TrainOptions Options);

public sealed record Experiment(string Name, string Section, string Claim, string Metric,
    IReadOnlyList<ExperimentArm> Arms)
{
    /// <summary>
    /// Every arm of the preset, in its order, also after <see cref="Experiments.Only(Experiment,
    /// IReadOnlyCollection{string})"/> kept some of them.
    /// </summary>
    public IReadOnlyList<string> Preset { get; init; } = Arms.Select(a => a.Name).ToArray();
}

/// <summary> One arm's run. StepsTo25: Figure 1's measure; StepsTo15, StepsTo10, StepsTo5: the same at lower training
/// errors, the points comparable to it on the easier Fashion-MNIST once a run is long enough to reach them. Seconds:
/// the training time its metrics.jsonl records (the epochs' sum), whichever runs trained it. Budget: the report's
/// budget line, so that results joined from another machine can be checked against it (null in files written before
/// it).
/// </summary>
public sealed record ArmResult(string Arm, long Seed, double ValTop1, double ValTop5, double TrainTop1,
    double? StepsTo25, double Seconds,
    bool Diverged = false, double? StepsTo15 = null, double? StepsTo10 = null,
    double? StepsTo5 = null, string? Budget = null);

/// <summary>
/// Results of the same experiment trained elsewhere (another machine or session), read from its results.json.
/// </summary>
public sealed record JoinedResults(string Path, IReadOnlyList<ArmResult> Results);

public static class Experiments
{
    public static readonly string[] Names = { "relu-vs-tanh", "lrn", "pooling", "dropout", "pca", "towers", "depth" };

    /// <summary>§3.1's per-network ε sweep for relu-vs-tanh when none is given.</summary>
    public static readonly double[] DefaultSweep = { 0.04, 0.02, 0.01, 0.005 };

    /// <summary>
    /// The preset <paramref name="name"/> on top of <paramref name="baseline"/> (model, budget, seed, data scale).
    /// <paramref name="sweep"/>: relu-vs-tanh's learning rates, each net trained at each (default <see
    /// cref="DefaultSweep"/>).
    /// </summary>
    public static Experiment Get(string name, TrainOptions baseline, IReadOnlyList<double>? sweep = null)
    {
        TrainOptions b = baseline;
        return name switch
        {
            "relu-vs-tanh" => new Experiment(name, "§3.1, Figure 1",
                "A four-layer CNN with ReLUs reaches 25% training error on CIFAR-10 six times faster than with tanh " +
                "(\"the learning rates for each network were chosen independently to make training as fast as " +
                "possible\").",
                "steps to 25% training error",
                new[] { Activation.Relu,
                Activation.Tanh }.SelectMany(a => (sweep ?? DefaultSweep).Select(lr => Fig1(b with
                {
                    LearningRate = lr,
                }, a))).ToArray()),
            "lrn" => new Experiment(name, "§3.3",
                "Response normalisation lowers top-1/top-5 error by 1.4%/1.2% (ImageNet); CIFAR-10 test error 13% → " +
                "11%.",
                "validation error", new[] { new ExperimentArm("with LRN", b), new ExperimentArm("without LRN", b with
                {
                    Lrn = false,
                }),
                    new ExperimentArm("with LRN, α/n (authors' code)", b with
                    {
                        LrnConvention = LrnConvention.Code,
                    }) }),
            "pooling" => new Experiment(name, "§3.4",
                "Overlapping pooling (z=3, s=2) lowers top-1/top-5 by 0.4%/0.3% against z=s=2, and overfits slightly " +
                "less.",
                "validation error", new[] { new ExperimentArm("3/2 overlapping", b),
                new ExperimentArm("2/2", b with { PoolWindow = 2, PoolStride = 2 }) }),
            "dropout" => new Experiment(name, "§4.2",
                "Without dropout the network overfits substantially; dropout roughly doubles the iterations to " +
                "converge.",
                "validation error",
                new[] { new ExperimentArm("dropout 0.5", b), new ExperimentArm("no dropout", b with { Dropout = 0 }) }),
            "pca" => new Experiment(name, "§4.1", "PCA colour augmentation lowers top-1 error by over 1%.",
                "validation error", new[] { new ExperimentArm("PCA noise σ=0.1", b with { PcaStd = 0.1 }),
                new ExperimentArm("no PCA noise", b with { PcaStd = 0 }) }),
            "towers" => new Experiment(name, "§3.2",
                "Two towers lower top-1/top-5 by 1.7%/1.2% against one GPU with half the kernels in conv1–conv4.",
                "validation error", new[] { new ExperimentArm("two towers", b),
                new ExperimentArm("one GPU, half kernels", b with { Model = OneGpuOf(b.Model) }) }),
            "depth" => new Experiment(name, "§7", "Removing any middle convolutional layer costs about 2% top-1.",
                "validation error",
                new[] { new ExperimentArm("5 conv layers", b), new ExperimentArm("conv3 removed", b with
                {
                    RemoveLayer = "conv3",
                }),
                    new ExperimentArm("conv4 removed", b with { RemoveLayer = "conv4" }) }),
            _ => throw new ArgumentException($"unknown experiment '{name}'. Known: {string.Join(", ", Names)}."),
        };
    }

    private static string OneGpuOf(string model) => model switch
    {
        Variants.Paper => Variants.Paper1Gpu,
        Variants.Small => Variants.Small1Gpu,
        _ => throw new ArgumentException(
            $"the towers experiment compares paper or small with its one-GPU baseline, not {model}."),
    };

    /// <summary>
    /// <paramref name="e"/> with only the arms named (by name, "conv3 removed", or by run-folder name,
    /// "conv3-removed"), in the preset's order: to split an experiment over machines, or to train the arms a baseline
    /// lacks. A later run with every arm into the same folder trains only what is missing and reports them all.
    /// </summary>
    public static Experiment Only(Experiment e, string commaList) => Only(e, SplitArms(e, commaList));

    /// <summary>
    /// A comma-separated list of arms, where a name may itself hold a comma ("with LRN, α/n (authors' code)"): pieces
    /// are joined back while they form the start of an arm's name.
    /// </summary>
    public static string[] SplitArms(Experiment e, string commaList)
    {
        var names = e.Arms.SelectMany(a => new[] { a.Name, Slug(a.Name) }).ToHashSet();
        string[] pieces = commaList.Split(',');
        var arms = new List<string>();
        for (int i = 0; i < pieces.Length;)
        {
            // The longest run of pieces from i that is an arm's name; else the piece alone (Only names it unknown).
            int take = Enumerable.Range(1, pieces.Length - i).Reverse()
                .FirstOrDefault(k => names.Contains(string.Join(",", pieces, i, k).Trim()), 1);
            string arm = string.Join(",", pieces, i, take).Trim();
            if (arm.Length > 0)
            {
                arms.Add(arm);
            }
            i += take;
        }
        return arms.ToArray();
    }

    public static Experiment Only(Experiment e, IReadOnlyCollection<string> arms)
    {
        string[] unknown = arms.Where(a => !e.Arms.Any(x => x.Name == a || Slug(x.Name) == a)).ToArray();
        if (unknown.Length > 0 || arms.Count == 0)
        {
            throw new ArgumentException(
                $"--arms: {(unknown.Length > 0 ? $"'{string.Join("', '", unknown)}' is not an arm of {e.Name}" : "no " +
                "arm given")}. " +
                $"Its arms: {string.Join(", ", e.Arms.Select(a => $"'{a.Name}' ({Slug(a.Name)})"))}.");
        }
        return e with { Arms = e.Arms.Where(x => arms.Contains(x.Name) || arms.Contains(Slug(x.Name))).ToArray() };
    }

    /// <summary>Figure 1: "no regularization of any kind"; one arm per activation and ε, named "ReLU ε=0.01".</summary>
    private static ExperimentArm Fig1(TrainOptions b, Activation a) => new(
        (a == Activation.Relu ? "ReLU" : "tanh") + " ε=" + b.LearningRate.ToString(CultureInfo.InvariantCulture), b with
        {
            Model = Variants.Figure1,
            Activation = a,
            Dropout = 0,
            WeightDecay = 0,
            RandomCrop = false,
            Flip = false,
            PcaStd = 0,
            LogEvery = Math.Min(b.LogEvery, 10),
        });

    /// <summary> Trains every arm for every seed into outDir/ARM-sSEED, then writes outDir/report.md and plots.
    /// <paramref name="joined"/>: results of the same experiment trained elsewhere, reported beside these (checked by
    /// <see cref="CheckJoined"/> first).
    /// </summary>
    public static List<ArmResult> Run(Experiment e, ImageStore train, ImageStore val,
        string outDir, IReadOnlyList<long> seeds,
        MachineOptions machine, ITrainingProgress progress, IReadOnlyList<JoinedResults>? joined = null)
    {
        joined ??= Array.Empty<JoinedResults>();
        CheckJoined(e, seeds, joined);
        Directory.CreateDirectory(outDir);
        var results = new List<ArmResult>();
        foreach (long seed in seeds)
        {
            foreach (ExperimentArm arm in e.Arms)
            {
                string dir = Path.Combine(outDir, $"{Slug(arm.Name)}-s{seed}");
                progress.Message($"{e.Name}: {arm.Name}, seed {seed} → {dir}");
                bool done = File.Exists(Path.Combine(dir, Trainer.LastCheckpoint))
                    && Checkpoint.ReadState(Path.Combine(dir, Trainer.LastCheckpoint)).Epoch >= arm.Options.Epochs;
                bool diverged = File.Exists(Path.Combine(dir, Diverged));
                if (!done && !diverged)
                {
                    try
                    {
                        Trainer.Fit(arm.Options with
                        {
                            Seed = seed,
                        }, machine, train, val, dir,
                            resume: File.Exists(Path.Combine(dir, Trainer.LastCheckpoint)), progress);
                    }
                    catch (TrainingDivergedException ex)
                    {
                        // A sweep's too-large ε is a result, not a failure of the experiment: record it and go on.
                        diverged = true;
                        AtomicFile.WriteAllText(Path.Combine(dir, Diverged), ex.Message + Environment.NewLine);
                        progress.Message($"{arm.Name}, seed {seed}: diverged ({ex.Message})");
                    }
                }
                results.Add(Summarise(arm.Name, seed, dir) with { Diverged = diverged, Budget = BudgetOf(e) });
            }
        }
        // The preset's arm order, each arm's seeds in order: the joined results where they belong, not at the end.
        string[] preset = e.Preset.ToArray();
        results = results.Concat(joined.SelectMany(j => j.Results))
            .OrderBy(r => Array.IndexOf(preset, r.Arm)).ThenBy(r => r.Seed).ToList();
        WriteReport(e, results, outDir, joined);
        return results;
    }

    /// <summary>
    /// A results.json that an experiment wrote (`experiment --join`): its arms, seeds and budget, checked against this
    /// run by Run.
    /// </summary>
    public static JoinedResults ReadJoined(string path)
    {
        const string give = "give the results.json that `alexnet experiment` wrote into its --out folder";
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"--join: {path} does not exist; {give}.", path);
        }
        List<ArmResult> results;
        try
        {
            results = Json.Read<List<ArmResult>>(path);
        }
        catch (InvalidDataException ex)
        {
            throw new InvalidDataException(
                $"--join: {path} is not an experiment's results.json, or it is damaged; {give}. ({ex.Message})");
        }
        if (results.Count == 0 || results.Any(r => r is null || string.IsNullOrEmpty(r.Arm)))
        {
            throw new InvalidDataException($"--join: {path} holds no arm results; {give}.");
        }
        return new JoinedResults(path, results);
    }

    /// <summary> Joined results must be arms of this preset (with these options: relu-vs-tanh's arms are its ε), of the
    /// same budget where their file records it, and each arm and seed must come from one place: this run or one file.
    /// Checked before any training, so that a wrong file costs no compute.
    /// </summary>
    public static void CheckJoined(Experiment e, IReadOnlyList<long> seeds, IReadOnlyList<JoinedResults> joined)
    {
        string budget = BudgetOf(e);
        var from = new Dictionary<(string, long), string>();
        foreach (ExperimentArm arm in e.Arms)
        {
            foreach (long seed in seeds)
            {
                from[(arm.Name, seed)] = "this run";
            }
        }
        foreach (JoinedResults j in joined)
        {
            foreach (ArmResult r in j.Results)
            {
                if (!e.Preset.Contains(r.Arm))
                {
                    throw new ArgumentException(
                        $"--join: {j.Path} has the arm '{r.Arm}', which is not an arm of {e.Name} with these options " +
                        $"(its arms: {string.Join(", ", e.Preset.Select(a => $"'{a}'"))}). Join results of the same " +
                        "experiment" +
                        (e.Name == "relu-vs-tanh" ? " and the same --lrs." : "."));
                }
                if (r.Budget is not null && r.Budget != budget)
                {
                    throw new ArgumentException(
                        $"--join: {j.Path} was trained for another budget ({r.Budget}) than this run ({budget}). " +
                        "Join results of the same --epochs, --train-limit, --lr and --step-epochs.");
                }
                if (from.TryGetValue((r.Arm, r.Seed), out string? other))
                {
                    throw new ArgumentException(
                        $"--join: '{r.Arm}', seed {r.Seed}, is in {j.Path} and in {other}; each arm and seed must " +
                        "come from one place " +
                        "(leave the seed out of --seeds, or the file out of --join).");
                }
                from[(r.Arm, r.Seed)] = j.Path;
            }
        }
    }

    private const string Diverged = "DIVERGED";

    private static string Slug(string s) =>
        new string(s.ToLowerInvariant().Select(c => char.IsLetterOrDigit(c) ? c : '-').ToArray()).Trim('-');

    private static ArmResult Summarise(string arm, long seed, string dir)
    {
        RunPlots.Series s = RunPlots.Read(dir);
        double? FirstStepAt(double error)   // the first logged step whose training error is at most this fraction
        {
            for (int i = 0; i < s.Steps.Count; i++)
            {
                if (s.StepTop1[i] <= error)
                {
                    return s.Steps[i];
                }
            }
            return null;
        }
        // Seconds from the log, not this call's clock: an arm trained by an earlier call (or resumed) is only read
        // here.
        return new ArmResult(arm, seed, s.ValTop1.LastOrDefault(double.NaN) / 100,
            s.ValTop5.LastOrDefault(double.NaN) / 100,
            s.TrainTop1.LastOrDefault(double.NaN) / 100, FirstStepAt(0.25), s.EpochSeconds.Sum(),
            StepsTo15: FirstStepAt(0.15), StepsTo10: FirstStepAt(0.10), StepsTo5: FirstStepAt(0.05));
    }

    private static string StepsCell(IEnumerable<ArmResult> arm, Func<ArmResult, double?> steps) =>
        arm.Any(r => r.Diverged) ? "diverged" : arm.All(r => steps(r).HasValue) ? StepsText(arm, steps) : "not reached";

    private static string StepsText(IEnumerable<ArmResult> g, Func<ArmResult, double?> steps)
    {
        double[] v = g.Select(r => steps(r)!.Value).ToArray();
        string mean = v.Average().ToString("F0", CultureInfo.InvariantCulture);
        return v.Length > 1
            ? $"{mean} ({v.Min().ToString("F0", CultureInfo.InvariantCulture)}–{v.Max().ToString("F0", CultureInfo.InvariantCulture)})" : mean;
    }

    /// <summary>
    /// The training errors Figure 1's comparison is made at: the paper's 25%, then lower ones (ArmResult).
    /// </summary>
    public static readonly int[] Figure1Targets = { 25, 15, 10, 5 };

    private static Func<ArmResult, double?> StepsTo(int percent) => percent switch
    {
        25 => r => r.StepsTo25,
        15 => r => r.StepsTo15,
        10 => r => r.StepsTo10,
        5 => r => r.StepsTo5,
        _ => throw new ArgumentOutOfRangeException(nameof(percent), percent,
            $"steps are counted to {string.Join(", ", Figure1Targets)}% only."),
    };

    /// <summary>
    /// §3.1's comparison: each activation at its fastest ε (fewest mean steps to <paramref name="percent"/>% training
    /// error over ε where every seed got there without diverging), and the ratio of the two.
    /// </summary>
    public static string ReluVersusTanh(IReadOnlyList<ArmResult> results, int percent = 25)
    {
        Func<ArmResult, double?> steps = StepsTo(percent);
        string target = $"{percent}%";
        (string Arm, double Steps)? Best(string activation) => Fastest(results, activation, steps);
        var relu = Best("ReLU");
        var tanh = Best("tanh");
        if (relu is null || tanh is null)
        {
            return $"**Ours:** {(relu is null ? "the ReLU net" : "the tanh net")} reached {target} training error at " +
                "no ε of the sweep within the budget.";
        }
        string ratio = (tanh.Value.Steps / relu.Value.Steps).ToString("F1", CultureInfo.InvariantCulture);
        return $"**Ours:** at each net's fastest ε ({relu.Value.Arm}: {relu.Value.Steps:F0} " +
            $"steps; {tanh.Value.Arm}: {tanh.Value.Steps:F0} steps), " +
            $"tanh needs {ratio}× the steps of ReLU to reach {target} training error.";
    }

    /// <summary>
    /// The arm of <paramref name="activation"/> with the fewest mean steps, over arms where every seed got there.
    /// </summary>
    private static (string Arm, double Steps)? Fastest(IReadOnlyList<ArmResult> results, string activation,
        Func<ArmResult, double?> steps) => results
        .Where(r => r.Arm.StartsWith(activation + " ", StringComparison.Ordinal) || r.Arm == activation)
        .GroupBy(r => r.Arm)
        .Where(g => g.All(r => steps(r).HasValue && !r.Diverged))
        .Select(g => (g.Key, g.Average(r => steps(r)!.Value)))
        .OrderBy(t => t.Item2)
        .Cast<(string, double)?>()
        .FirstOrDefault();

    /// <summary>
    /// What every arm trained for: epochs, images, ε and its steps (the arms differ only in what they compare).
    /// </summary>
    private static string Budget(TrainOptions o, bool sweep)
    {
        string images = o.TrainLimit > 0
            ? $"the first {o.TrainLimit.ToString("N0", CultureInfo.InvariantCulture)} training images"
            : "every training image";
        string rate = sweep ? "ε per arm" : $"ε = {o.LearningRate.ToString(CultureInfo.InvariantCulture)}";
        string steps = o.StepEpochs.Length switch
        {
            0 => ", constant",
            1 => $", ÷10 after epoch {o.StepEpochs[0]}",
            _ => $", ÷10 after epochs {string.Join(", ", o.StepEpochs[..^1])} and {o.StepEpochs[^1]}",
        };
        return $"{o.Epochs} epochs on {images}, batch {o.BatchSize}, {rate}{steps}.";
    }

    /// <summary>What every arm of <paramref name="e"/> trained for (the report's budget line).</summary>
    private static string BudgetOf(Experiment e) => Budget(e.Arms[0].Options, sweep: e.Name == "relu-vs-tanh");

    private static void WriteReport(Experiment e, List<ArmResult> results, string outDir,
        IReadOnlyList<JoinedResults> joined)
    {
        var md = new StringBuilder();
        string P(double v) => double.IsNaN(v) ? "—" : (100 * v).ToString("F2", CultureInfo.InvariantCulture) + "%";
        md.AppendLine($"# Experiment `{e.Name}` ({e.Section})").AppendLine();
        md.AppendLine($"**The paper:** {e.Claim}").AppendLine();
        bool figure1 = e.Name == "relu-vs-tanh";
        md.AppendLine($"**Budget:** {BudgetOf(e)}").AppendLine();
        int[] lower = figure1 ? Figure1Targets[1..] : Array.Empty<int>();
        md.AppendLine(
            "| arm | seeds | val top-1 error (mean ± spread) | val top-5 error | train top-1 error | steps to 25% " +
            "train error |"
            + string.Concat(lower.Select(t => $" steps to {t}% |")));
        md.AppendLine("|---|---|---|---|---|---|" + string.Concat(lower.Select(_ => "---|")));
        foreach (var g in results.GroupBy(r => r.Arm))
        {
            double[] top1 = g.Select(r => r.ValTop1).ToArray();
            double spread = top1.Length > 1 ? (top1.Max() - top1.Min()) / 2 : 0;
            md.AppendLine(
                $"| {g.Key} | {string.Join(",", g.Select(r => r.Seed))} | {P(top1.Average())} ± {P(spread)} " +
                $"| {P(g.Average(r => r.ValTop5))} | " +
                $"{P(g.Average(r => r.TrainTop1))} | {StepsCell(g, r => r.StepsTo25)} |" +
                string.Concat(lower.Select(t => $" {StepsCell(g, StepsTo(t))} |")));
        }
        if (figure1)
        {
            md.AppendLine()
                .AppendLine("Steps are counted on the training error averaged over each logging window; an arm's cell " +
                "gives the mean over seeds (range).");
            foreach (int t in Figure1Targets)
            {
                md.AppendLine().AppendLine(ReluVersusTanh(results, t));
            }
            md.AppendLine()
                .AppendLine("Fashion-MNIST is easier than CIFAR-10 (a linear classifier gets below 25% error), so the " +
                "lower training errors, "
                + "reached after the first transient, are the points comparable to Figure 1's 25%.");
        }
        foreach (JoinedResults j in joined)
        {
            long[] seedsOf = j.Results.Select(r => r.Seed).Distinct().ToArray();
            string recorded = j.Results.All(r => r.Budget is not null) ? "the same budget"
                : "its budget not recorded in the file, so not checked";
            md.AppendLine()
                .AppendLine($"Joined from `{j.Path}`: {j.Results.Count} results, " +
                $"seed{(seedsOf.Length > 1 ? "s" : "")} {string.Join(", ", seedsOf)} ({recorded}); trained " +
                "elsewhere, " +
                "so their run folders are not beside this file and the plot draws only the runs that are.");
        }
        md.AppendLine()
            .AppendLine($"Each arm's run folder (options, metrics.jsonl, curves) is beside this file. Plot: ![curves]({e.Name}.png)");
        AtomicFile.WriteAllText(Path.Combine(outDir, "report.md"), md.ToString());
        Json.Write(Path.Combine(outDir, "results.json"), results);
        var plot = new ScottPlot.Plot();
        IEnumerable<ArmResult> plotted = results;
        if (figure1)
        {
            // Figure 1 draws one curve per net: each at its fastest ε, every seed.
            var best = new[] { "ReLU",
                "tanh" }.Select(a => Fastest(results, a, r => r.StepsTo25)?.Arm).Where(a => a is not null).ToHashSet();
            plotted = best.Count > 0 ? results.Where(r => best.Contains(r.Arm)) : results;
            var target = plot.Add.HorizontalLine(25);
            target.LinePattern = ScottPlot.LinePattern.Dashed;
            target.LegendText = "25% (Figure 1)";
        }
        foreach (ArmResult r in plotted)
        {
            string dir = Path.Combine(outDir, $"{Slug(r.Arm)}-s{r.Seed}");
            if (!File.Exists(Path.Combine(dir, MetricsLog.FileName)))
            {
                continue;   // joined from elsewhere: its curve is in its own folder, on its own machine
            }
            RunPlots.Series s = RunPlots.Read(dir);
            var line = figure1
                ? plot.Add.Scatter(s.Steps.ToArray(), s.StepTop1.Select(v => 100 * v).ToArray())
                : plot.Add.Scatter(s.Epochs.ToArray(), s.ValTop1.ToArray());
            line.LegendText = $"{r.Arm} (seed {r.Seed})";
        }
        plot.ShowLegend();
        plot.Title(figure1 ? $"{e.Name}: each net at its fastest ε" : $"{e.Name}: {e.Metric}");
        plot.XLabel(figure1 ? "step" : "epoch");
        plot.YLabel(figure1 ? "training top-1 error (%)" : "validation top-1 error (%)");
        plot.SavePng(Path.Combine(outDir, $"{e.Name}.png"), 800, 500);
    }
}
