using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using AlexNet.Analysis;
using AlexNet.Data;
using AlexNet.Model;
using SkiaSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Analysis;

/// <summary>§6.1: Figure 3's kernel grid and Figure 4's retrieval.</summary>
public class AnalysisTests
{
    [Fact]
    public void ThePaperNetsKernelGridHasTwoTowersOf48()
    {
        using var dir = new TestData.TempDir();
        using var model = new AlexNetModel(Variants.Get(Variants.Paper), seed: 1);
        GridLayout g = KernelGrid.Draw(model.LayerParameters("conv1").Weight, dir["conv1.png"], scale: 3);
        Assert.Equal((96, 2, 16, 3, 11), (g.Kernels, g.Towers, g.Columns, g.RowsPerTower, g.KernelSide));
        using SKBitmap png = SKBitmap.Decode(dir["conv1.png"]);
        Assert.Equal((g.Width, g.Height), (png.Width, png.Height));
        Assert.Equal(16 * (11 * 3 + 2) + 2, png.Width);
        // Each kernel is contrast-normalised on its own: its darkest weight is black and its brightest white.
        var pixels = Enumerable.Range(0,
            33).SelectMany(y => Enumerable.Range(0, 33).Select(x => png.GetPixel(2 + x, 2 + y))).ToArray();
        Assert.Contains(pixels, p => p.Red == 0 || p.Green == 0 || p.Blue == 0);
        Assert.Contains(pixels, p => p.Red == 255 || p.Green == 255 || p.Blue == 255);
    }

    [Fact]
    public void EveryImageIsItsOwnNearestNeighbourInFc7Space()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["s"], 40, 4);
        using ImageStore store = ImageStore.Open(dir["s"]);
        using var model = new AlexNetModel(Variants.Get(Variants.Small, 4, 1, 32), seed: 3);
        var aug = new Augmentation(store, AugmentOptions.PaperFor(28) with { Scale = 0.0125f });
        FeatureHeader h = Retrieval.Extract(model, store, aug, "fc7", dir["f.bin"], "test.ckpt", batchSize: 16);
        Assert.Equal((40, 512), (h.Count, h.Dimensions));
        using FeatureMatrix data = Retrieval.Open(dir["f.bin"]);
        Assert.Equal(h, data.Header);
        using Tensor queries = tensor(data.Rows(0, 40).ToArray(), new long[] { 40, 512 });
        // blocks smaller than the set: the merge is exercised
        var hits = Retrieval.Nearest(queries, data, k: 3, block: 7);
        for (int i = 0; i < 40; i++)
        {
            Assert.Equal(i, hits[i][0].Index);
            Assert.True(hits[i][0].Distance < 1e-2);
            Assert.True(hits[i][1].Distance >= hits[i][0].Distance && hits[i][2].Distance >= hits[i][1].Distance);
        }
    }
}

public class ExperimentTests
{
    /// <summary>
    /// ImageNet-sized features: 600,000 × 4096 floats (2.46·10⁹, past 2³¹) in a sparse file, memory-mapped; two vectors
    /// written past the 2³¹-float mark are found where they are, by reading only the blocks around them.
    /// </summary>
    [Fact]
    public void FeaturesPastTwoToTheThirtyFirstFloatsAreAddressedRight()
    {
        using var dir = new TestData.TempDir();
        const int dims = 4096;
        const long rows = 600_000;
        Assert.True(FeatureMatrix.Offset(rows - 1, dims) > int.MaxValue);
        string path = dir["big.f32"];
        long[] marked = { 524_300, 599_999 };   // both beyond 2³¹ / 4096 = 524,288 rows
        using (var f = new FileStream(path, FileMode.Create, FileAccess.Write))
        {
            f.SetLength(rows * dims * 4);   // sparse: no blocks written but these
            foreach (long row in marked)
            {
                f.Seek(FeatureMatrix.Offset(row, dims) * 4, SeekOrigin.Begin);
                var v = new float[dims];
                Array.Fill(v, row == marked[0] ? 1f : -1f);
                f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(v.AsSpan()));
            }
        }
        AlexNet.Json.Write(path + ".json",
            new FeatureHeader("alexnet-features-v1", "fc7", (int)rows, dims, "store", "ckpt"));
        using FeatureMatrix m = Retrieval.Open(path);
        Assert.Equal(1f, m.Rows(marked[0], 1)[dims - 1]);
        Assert.Equal(-1f, m.Rows(marked[1], 1)[0]);
        using Tensor q = full(new long[] { 2, dims }, 0.9f);
        q[1].fill_(-0.9f);
        var hits = Retrieval.Nearest(q, m, k: 1, block: 4096, from: 520_000, to: 530_000);
        Assert.Equal(marked[0], hits[0][0].Index);
        Assert.Equal(0.1 * Math.Sqrt(dims), hits[0][0].Distance, 4);
        Assert.Equal(marked[1], Retrieval.Nearest(q, m, k: 1, block: 4096, from: 595_000)[1][0].Index);
    }

    [Fact]
    public void TheHarnessOnATinyBudgetWritesAWellFormedTable()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["train"], 96, 4);
        TestData.WriteSyntheticStore(dir["val"], 32, 4, seed: 5);
        using ImageStore train = ImageStore.Open(dir["train"]);
        using ImageStore val = ImageStore.Open(dir["val"]);
        var baseline = new AlexNet.Training.TrainOptions
        {
            Model = Variants.Small, Epochs = 1, BatchSize = 32, InputScale = 0.0125f, LogEvery = 1,
            Schedule = AlexNet.Training.ScheduleKind.Step,
        };
        foreach (string name in new[] { "pooling", "relu-vs-tanh" })
        {
            // relu-vs-tanh sweeps ε per net (§3.1); a diverging ε (1e30 here, for ReLU) is recorded as such and the
            // sweep goes on.
            var e = AlexNet.Training.Experiments.Get(name, baseline, new[] { 0.01, 1e30 });
            var results = AlexNet.Training.Experiments.Run(e, train, val, dir[name], new long[] { 1, 2 },
                new AlexNet.Training.MachineOptions(2), new AlexNet.Training.SilentProgress());
            int arms = name == "pooling" ? 2 : 4;
            Assert.Equal(2 * arms, results.Count);
            string[] report = System.IO.File.ReadAllLines(dir[$"{name}/report.md"]);
            string[] rows = report.Where(l => l.StartsWith("| ") && !l.StartsWith("| arm")).ToArray();
            Assert.Equal(arms, rows.Length);
            if (name == "relu-vs-tanh")
            {
                Assert.Equal(new[] { "ReLU ε=0.01", "ReLU ε=1E+30", "tanh ε=0.01",
                    "tanh ε=1E+30" }, e.Arms.Select(a => a.Name));
                // tanh saturates: its loss stays finite
                Assert.All(results.Where(r => r.Arm == "ReLU ε=1E+30"), r => Assert.True(r.Diverged));
                Assert.Contains(rows, r => r.StartsWith("| ReLU ε=1E+30") && r.Contains("diverged"));
            }
            // relu-vs-tanh: steps to 25, 15, 10 and 5%
            Assert.All(rows, r => Assert.Equal(name == "pooling" ? 7 : 10, r.Count(c => c == '|')));
            Assert.Contains(report, l => l.StartsWith("**The paper:**"));
            Assert.True(System.IO.File.Exists(dir[$"{name}/{name}.png"]));
        }
        Assert.Contains("conv 32-32-64", Variants.All.Single(v => v.Name == Variants.Figure1).Description);
    }

    [Fact]
    public void AnExperimentTakesItsStepsOfεAndItsReplicas()
    {
        // `experiment --step-epochs 1 --replicas 2` reaches the trainer. ε: 0.01 in epoch 1, 0.001 in epoch 2 (§5's
        // ÷10). Replicas: the arm without dropout ends where the one-thread run ends; the arm with dropout does not,
        // since each replica draws its masks from its own stream (Replicas.cs).
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 40, 4);
        TestData.WriteSyntheticStore(dir["data/val"], 16, 4, seed: 5);
        foreach (string replicas in new[] { "1", "2" })
        {
            Assert.Equal(0, AlexNet.Cli.App.Run(new[] { "experiment", "dropout", "-d", dir["data"], "--epochs", "2",
                "--step-epochs", "1", "--train-limit", "0",
                "--seeds", "1", "--threads", "2", "--replicas", replicas, "--out", dir[$"r{replicas}"] }));
        }
        string Last(string run, string arm) => dir[$"{run}/{arm}-s1/{AlexNet.Training.Trainer.LastCheckpoint}"];
        Close.SameWeights(Last("r1", "no-dropout"), Last("r2", "no-dropout"));
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => Close.SameWeights(Last("r1",
            "dropout-0-5"), Last("r2", "dropout-0-5")));
        double[] rates = File.ReadLines(dir["r2/no-dropout-s1/metrics.jsonl"])
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement)
            .Where(m => m.GetProperty("kind").GetString() == "epoch").Select(m =>
            m.GetProperty("lr").GetDouble()).ToArray();
        Assert.Equal(new[] { 0.01, 0.001 }, rates.Select(r => Math.Round(r, 12)));
        Assert.Contains("**Budget:** 2 epochs on every training image, batch 128, ε = 0.01, ÷10 after epoch 1.",
            File.ReadAllText(dir["r2/report.md"]));
        Assert.Equal(2, AlexNet.Cli.App.Run(new[] { "experiment", "dropout", "-d", dir["data"], "--epochs", "2",
            "--step-epochs", "2", "--out", dir["bad"] }));
        Assert.False(Directory.Exists(dir["bad"]));
    }

    [Fact]
    public void AnExperimentTrainsOnlyTheArmsAskedAndLaterTheRest()
    {
        // `--arms` trains and reports only those arms; a later run without it into the same folder trains only what is
        // missing (the finished arm's checkpoint is not rewritten) and reports every arm.
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 40, 4);
        TestData.WriteSyntheticStore(dir["data/val"], 16, 4, seed: 5);
        string[] Args(params string[] more) => new[] { "experiment", "dropout", "-d", dir["data"],
            "--epochs", "1", "--train-limit", "0",
            "--seeds", "1", "--threads", "1", "--out", dir["out"] }.Concat(more).ToArray();
        string[] Rows() => File.ReadAllLines(dir["out/report.md"]).Where(l => l.StartsWith("| ")
            && !l.StartsWith("| arm")).ToArray();

        Assert.Equal(0, AlexNet.Cli.App.Run(Args("--arms", "no-dropout")));
        Assert.True(File.Exists(dir[$"out/no-dropout-s1/{AlexNet.Training.Trainer.LastCheckpoint}"]));
        Assert.False(Directory.Exists(dir["out/dropout-0-5-s1"]));
        Assert.Single(Rows(), r => r.StartsWith("| no dropout |"));
        byte[] first = File.ReadAllBytes(dir[$"out/no-dropout-s1/{AlexNet.Training.Trainer.LastCheckpoint}"]);
        DateTime written =
            File.GetLastWriteTimeUtc(dir[$"out/no-dropout-s1/{AlexNet.Training.Trainer.LastCheckpoint}"]);

        Assert.Equal(0, AlexNet.Cli.App.Run(Args()));
        Assert.True(File.Exists(dir[$"out/dropout-0-5-s1/{AlexNet.Training.Trainer.LastCheckpoint}"]));
        Assert.Equal(written,
            File.GetLastWriteTimeUtc(dir[$"out/no-dropout-s1/{AlexNet.Training.Trainer.LastCheckpoint}"]));
        Assert.Equal(first, File.ReadAllBytes(dir[$"out/no-dropout-s1/{AlexNet.Training.Trainer.LastCheckpoint}"]));
        Assert.Equal(new[] { "| dropout 0.5 |", "| no dropout |" }, Rows().Select(r => r[..(r.IndexOf(" |", 2) + 2)]));
        // The arm trained by the first call keeps its training time, not the second call's moment of reading it.
        double logged = File.ReadLines(dir["out/no-dropout-s1/metrics.jsonl"]).Select(l =>
            System.Text.Json.JsonDocument.Parse(l).RootElement)
            .Where(m => m.GetProperty("kind").GetString() == "epoch").Sum(m => m.GetProperty("seconds").GetDouble());
        Assert.True(logged > 0);
        Assert.Equal(logged, AlexNet.Json.Read<System.Collections.Generic.List<AlexNet.Training.ArmResult>>(
            dir["out/results.json"]).Single(r => r.Arm == "no dropout").Seconds);

        // An arm the preset lacks is refused before anything is written, with the arms it has.
        var e = AlexNet.Training.Experiments.Get("depth", new AlexNet.Training.TrainOptions { Model = Variants.Small });
        var ex = Assert.Throws<ArgumentException>(() =>
            AlexNet.Training.Experiments.Only(e, new[] { "conv5 removed" }));
        Assert.Contains("'conv3 removed' (conv3-removed)", ex.Message);
        Assert.Equal(new[] { "conv3 removed", "conv4 removed" },
            AlexNet.Training.Experiments.Only(e, new[] { "conv4-removed", "conv3 removed" }).Arms.Select(a => a.Name));
        Assert.Equal(2, AlexNet.Cli.App.Run(new[] { "experiment", "depth", "-d", dir["data"], "--arms",
            "conv5", "--out", dir["bad"] }));
        Assert.False(Directory.Exists(dir["bad"]));
        // An arm whose name holds a comma is named whole, beside others.
        var lrn = AlexNet.Training.Experiments.Get("lrn", new AlexNet.Training.TrainOptions { Model = "small" });
        Assert.Equal(new[] { "without LRN", "with LRN, α/n (authors' code)" },
            AlexNet.Training.Experiments.Only(lrn,
            "with LRN, α/n (authors' code),without LRN").Arms.Select(a => a.Name));
        Assert.Equal(new[] { "with LRN" }, AlexNet.Training.Experiments.Only(lrn, "with LRN").Arms.Select(a => a.Name));
    }

    [Fact]
    public void AnExperimentJoinsTheSeedsTrainedElsewhere()
    {
        // Seed 1 trained in one folder (another machine), seed 2 in another with `--join` of the first's results.json:
        // one report over both seeds, its mean worked out here; a file of another experiment, budget or the same seed,
        // a missing or a damaged one is refused before anything is trained or written.
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 40, 4);
        TestData.WriteSyntheticStore(dir["data/val"], 16, 4, seed: 5);
        string[] Args(string experiment, string seed, string epochs, string outDir,
            params string[] more) => new[] { "experiment", experiment,
            "-d", dir["data"], "--epochs", epochs, "--train-limit", "0", "--seeds", seed, "--threads", "1", "--out",
                dir[outDir] }.Concat(more).ToArray();
        List<AlexNet.Training.ArmResult> Read(string path) => AlexNet.Json.Read<List<AlexNet.Training.ArmResult>>(path);

        Assert.Equal(0, AlexNet.Cli.App.Run(Args("dropout", "1", "1", "a")));
        Assert.Equal(0, AlexNet.Cli.App.Run(Args("dropout", "2", "1", "b", "--join", dir["a/results.json"])));
        List<AlexNet.Training.ArmResult> a = Read(dir["a/results.json"]), b = Read(dir["b/results.json"]);
        Assert.Equal(new[] { ("dropout 0.5", 1L), ("dropout 0.5", 2L), ("no dropout", 1L), ("no dropout", 2L) },
            b.Select(r => (r.Arm, r.Seed)));
        Assert.Equal(a, b.Where(r => r.Seed == 1));   // seed 1 as the other machine reported it
        Assert.All(b, r => Assert.Equal("1 epochs on every training image, batch 128, ε = 0.01, constant.", r.Budget));
        Assert.False(Directory.Exists(dir["b/no-dropout-s1"]));
        string report = File.ReadAllText(dir["b/report.md"]);
        double[] top1 = b.Where(r => r.Arm == "no dropout").Select(r => r.ValTop1).ToArray();
        string P(double v) => (100 * v).ToString("F2", System.Globalization.CultureInfo.InvariantCulture) + "%";
        Assert.Contains(
            $"| no dropout | 1,2 | {P((top1[0] + top1[1]) / 2)} ± {P(Math.Abs(top1[0] - top1[1]) / 2)} |", report);
        Assert.Contains($"Joined from `{dir["a/results.json"]}`: 2 results, seed 1 (the same budget)", report);
        Assert.True(File.Exists(dir["b/dropout.png"]));

        // Refused, nothing written: the same seed again, another budget, another experiment's arms, no file, a damaged
        // file.
        File.WriteAllText(dir["damaged.json"], "[{\"arm\": \"no dropout\", \"seed\": ");
        Assert.Equal(2, AlexNet.Cli.App.Run(Args("dropout", "1", "1", "r1", "--join", dir["a/results.json"])));
        Assert.Equal(2, AlexNet.Cli.App.Run(Args("dropout", "3", "2", "r2", "--join", dir["a/results.json"])));
        Assert.Equal(2, AlexNet.Cli.App.Run(Args("pooling", "3", "1", "r3", "--join", dir["a/results.json"])));
        Assert.Equal(2, AlexNet.Cli.App.Run(Args("dropout", "3", "1", "r4", "--join", dir["nowhere.json"])));
        Assert.Equal(2, AlexNet.Cli.App.Run(Args("dropout", "3", "1", "r5", "--join", dir["damaged.json"])));
        Assert.Equal(2, AlexNet.Cli.App.Run(Args("dropout", "3", "1", "r6", "--join",
            dir["a/results.json"], dir["b/results.json"])));
        Assert.All(new[] { "r1", "r2", "r3", "r4", "r5", "r6" }, d => Assert.False(Directory.Exists(dir[d])));

        // What the messages say: the file, and what to do.
        var e = AlexNet.Training.Experiments.Get("pooling", new AlexNet.Training.TrainOptions
        {
            Model = Variants.Small,
            Epochs = 1,
        });
        var joined = AlexNet.Training.Experiments.ReadJoined(dir["a/results.json"]);
        var ex = Assert.Throws<ArgumentException>(() => AlexNet.Training.Experiments.CheckJoined(e,
            new long[] { 3 }, new[] { joined }));
        Assert.Contains(
            $"{dir["a/results.json"]} has the arm 'dropout 0.5', which is not an arm of pooling", ex.Message);
        var d = AlexNet.Training.Experiments.Get("dropout", new AlexNet.Training.TrainOptions
        {
            Model = Variants.Small,
            Epochs = 1,
        });
        ex = Assert.Throws<ArgumentException>(() => AlexNet.Training.Experiments.CheckJoined(d,
            new long[] { 1 }, new[] { joined }));
        Assert.Contains("'dropout 0.5', seed 1, is in " + dir["a/results.json"] + " and in this run", ex.Message);
        var longer = AlexNet.Training.Experiments.Get("dropout", new AlexNet.Training.TrainOptions
        {
            Model = Variants.Small,
            Epochs = 2,
        });
        ex = Assert.Throws<ArgumentException>(() => AlexNet.Training.Experiments.CheckJoined(longer,
            new long[] { 3 }, new[] { joined }));
        Assert.Contains("was trained for another budget (1 epochs", ex.Message);
        Assert.Contains($"--join: {dir["damaged.json"]} is not an experiment's results.json, or it is damaged",
            Assert.Throws<InvalidDataException>(() =>
            AlexNet.Training.Experiments.ReadJoined(dir["damaged.json"])).Message);
    }

    [Fact]
    public void ReluVersusTanhComparesEachNetAtItsFastestRate()
    {
        AlexNet.Training.ArmResult R(string arm, long seed, double? steps, bool diverged = false) =>
            new(arm, seed, 0.2, 0.01, 0.2, steps, 1, diverged, StepsTo15: steps * 2, StepsTo10: steps * 3,
            StepsTo5: arm.StartsWith("tanh") ? null : steps * 4);
        var results = new[]
        {
            R("ReLU ε=0.02", 1, 40), R("ReLU ε=0.02", 2, 60),            // mean 50: ReLU's fastest
            R("ReLU ε=0.04", 1, 30), R("ReLU ε=0.04", 2, null, true),    // one seed diverged: not eligible
            R("tanh ε=0.02", 1, 300), R("tanh ε=0.02", 2, 320),
            R("tanh ε=0.01", 1, 200), R("tanh ε=0.01", 2, 250),          // mean 225: tanh's fastest
        };
        string text = AlexNet.Training.Experiments.ReluVersusTanh(results);
        Assert.Contains("ReLU ε=0.02: 50 steps", text);
        Assert.Contains("tanh ε=0.01: 225 steps", text);
        Assert.Contains("4.5×", text);
        Assert.Contains("ReLU ε=0.02: 100 steps", AlexNet.Training.Experiments.ReluVersusTanh(results, 15));
        Assert.Contains("15% training error", AlexNet.Training.Experiments.ReluVersusTanh(results, 15));
        Assert.Contains("tanh ε=0.01: 675 steps", AlexNet.Training.Experiments.ReluVersusTanh(results, 10));
        Assert.Contains("the tanh net reached 5%", AlexNet.Training.Experiments.ReluVersusTanh(results, 5));
        Assert.Contains("the tanh net",
            AlexNet.Training.Experiments.ReluVersusTanh(results.Where(r => r.Arm.StartsWith("ReLU")).ToArray()));
    }
}
