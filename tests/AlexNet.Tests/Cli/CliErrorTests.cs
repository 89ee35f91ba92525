using System.IO;
using System.Linq;
using AlexNet.Cli;
using Xunit;

namespace AlexNet.Tests.Cli;

/// <summary>Bad flags and paths: a clear error and a non-zero exit code, nothing overwritten.</summary>
public class CliErrorTests
{
    [Fact]
    public void TrainWithoutDataOrWithAMissingStoreFails()
    {
        using var dir = new TestData.TempDir();
        CliCapture.Refuses(2, new[] { "train", "--out", dir["run"] }, "say where the data is");
        CliCapture.Refuses(2, new[] { "train", "--data", dir["nowhere"], "--out", dir["run"] },
            "no prepared store at", "alexnet prepare");
        Assert.False(Directory.Exists(dir["run"]));
    }

    [Fact]
    public void OutOfRangeAndUnknownOptionsFail()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 16, 2);
        TestData.WriteSyntheticStore(dir["data/val"], 16, 2);
        string[] Train(params string[] flags) => new[] { "train", "-d", dir["data"], "-m",
            "small" }.Concat(flags).ToArray();
        CliCapture.Refuses(2, Train("--epochs", "0"), "--epochs must be at least 1");
        CliCapture.Refuses(2, Train("--lr", "-1"), "--lr must be a positive number");
        CliCapture.Refuses(2, new[] { "train", "-d", dir["data"], "-m", "nonet" }, "Unknown model 'nonet'");
        CliCapture.Refuses(2, Train("--pool", "3"), "--pool takes WINDOW/STRIDE");
        CliCapture.Refuses(2, Train("--crop", "0"), "--crop must be at least 1");
        CliCapture.Refuses(2, Train("--crop", "999", "--out", dir["big"]), "--crop 999 does not fit");
        CliCapture.Refuses(2, Train("--replicas", "0", "--out", dir["r0"]), "--replicas must be at least 1");
        CliCapture.Refuses(2, Train("--replicas", "2", "--towers", "cpu,cpu", "--out", dir["rt"]),
            "--towers splits the net, --replicas the batch");
        CliCapture.Refuses(2, Train("--input-scale", "0", "--out", dir["s0"]),
            "--input-scale must be a positive number");
        CliCapture.Refuses(2, Train("--pad", "-7", "--out", dir["p7"]), "--pad must be");
        string tooMany = (4 * System.Environment.ProcessorCount +
            1).ToString(System.Globalization.CultureInfo.InvariantCulture);
        CliCapture.Refuses(2, Train("--threads", tooMany, "--out", dir["t"]), $"--threads {tooMany}", "cores");
        CliCapture.Refuses(2, Train("-b", "100000", "--out", dir["b"]), "--batch-size 100000 needs about");
        CliCapture.Refuses(2, new[] { "bench", "-m", "small", "--replicas", "0", "--steps", "1" }, "--replicas");
        CliCapture.Refuses(2,
            new[] { "experiment", "pooling", "-d", dir["data"], "--replicas", "0", "--out", dir["e0"] }, "--replicas");
        foreach (string made in new[] { "big", "r0", "rt", "s0", "p7", "t", "b", "e0" })
        {
            Assert.False(Directory.Exists(dir[made]), $"a refused command left {made}/ behind");
        }
        (int code, string text) = CliCapture.Run(Train("--no-such-flag"));
        Assert.NotEqual(0, code);
        Assert.Contains("--no-such-flag", text);
        File.WriteAllText(dir["preset.json"], "{\"model\": \"small\", \"learningRat\": 0.1}");
        CliCapture.Refuses(2, new[] { "train", "-d", dir["data"], "--preset", dir["preset.json"] }, "learningRat");
    }

    [Fact]
    public void AnExistingRunIsNotOverwrittenWithoutResume()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 16, 2);
        TestData.WriteSyntheticStore(dir["data/val"], 16, 2);
        Directory.CreateDirectory(dir["run"]);
        File.WriteAllText(dir["run/last.ckpt"], "precious\n");
        File.WriteAllText(dir["run/metrics.jsonl"], "precious\n");
        CliCapture.Refuses(1, new[] { "train", "-d", dir["data"], "-m", "small", "--out", dir["run"], "--epochs", "1" },
            "already holds a run", "--resume");
        Assert.Equal("precious\n", File.ReadAllText(dir["run/metrics.jsonl"]));
        Assert.Equal("precious\n", File.ReadAllText(dir["run/last.ckpt"]));
        // A run that never wrote a checkpoint (it diverged or crashed first) starts anew, its log kept aside, not lost.
        File.Delete(dir["run/last.ckpt"]);
        Assert.Equal(0,
            App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--out", dir["run"], "--epochs", "1" }));
        Assert.Equal("precious\n",
            File.ReadAllText(Assert.Single(Directory.GetFiles(dir["run"], "metrics-before-*.jsonl"))));
    }

    [Fact]
    public void DataThatDoesNotFitTheModelFails()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 16, 2);
        TestData.WriteSyntheticStore(dir["data/val"], 16, 3);
        CliCapture.Refuses(2, new[] { "train", "-d", dir["data"], "-m", "small", "--out", dir["run"] },
            "does not match the training store");
    }

    [Fact]
    public void EvalAndPredictWithBadCheckpointsFail()
    {
        using var dir = new TestData.TempDir();
        File.WriteAllText(dir["x.ckpt"], "garbage");
        TestData.WriteSyntheticStore(dir["val"], 16, 2);
        CliCapture.Refuses(2, new[] { "eval", "-c", dir["missing.ckpt"], "-d", dir["val"] },
            "missing.ckpt does not exist");
        CliCapture.Refuses(2, new[] { "eval", "-c", dir["x.ckpt"], "-d", dir["val"] }, "not an alexnet checkpoint");
        CliCapture.Refuses(2,
            new[] { "predict", "-c", dir["x.ckpt"], "/usr/share/darknet/data/dog.jpg" }, "not an alexnet checkpoint");
        CliCapture.Refuses(2, new[] { "prepare", "--out", dir["s"] }, "--fashion-mnist");
        CliCapture.Refuses(2, new[] { "prepare", "--folder", dir["nowhere"], "--out", dir["s"] }, "nowhere");
    }
}

public class ReportTests
{
    [Fact]
    public void AReportOfATinyRunHasItsTablesAndPictures()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 64, 4);
        TestData.WriteSyntheticStore(dir["data/val"], 16, 4, seed: 2);
        Assert.Equal(0, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--epochs", "2", "-b",
            "16", "--input-scale", "0.0125",
            "--step-epochs", "1", "--out", dir["run"] }));
        Assert.Equal(0, App.Run(new[] { "report", dir["run"], "--data", dir["data/val"] }));
        string[] report = File.ReadAllLines(dir["run/report.md"]);
        Assert.Contains("| stepEpochs | [1] |", report);
        Assert.Equal(2, report.Count(l => l.StartsWith("| 1 |")
            || l.StartsWith("| 2 |")) - report.Count(l => l.StartsWith("| 1 | class") || l.StartsWith("| 2 | class")));
        foreach (string png in new[] { "loss.png", "error.png", "lr.png", "kernels.png", "predictions.png" })
        {
            Assert.Contains(report, l => l.Contains($"({png})"));
            Assert.True(File.Exists(dir[$"run/{png}"]), png);
        }
        CliCapture.Refuses(2, new[] { "report", dir["data"] }, dir["data"]);   // not a run folder, named
    }
}
