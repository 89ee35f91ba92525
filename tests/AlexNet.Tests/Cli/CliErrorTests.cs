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
        Assert.Equal(2, App.Run(new[] { "train", "--out", dir["run"] }));
        Assert.Equal(2, App.Run(new[] { "train", "--data", dir["nowhere"], "--out", dir["run"] }));
        Assert.False(Directory.Exists(dir["run"]));
    }

    [Fact]
    public void OutOfRangeAndUnknownOptionsFail()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 16, 2);
        TestData.WriteSyntheticStore(dir["data/val"], 16, 2);
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--epochs", "0" }));
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--lr", "-1" }));
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "nonet" }));
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--pool", "3" }));
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--crop", "0" }));
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--crop", "999", "--out", dir["big"] }));
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--replicas", "0", "--out", dir["r0"] }));
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--replicas", "2", "--towers", "cpu,cpu", "--out", dir["rt"] }));
        Assert.Equal(2, App.Run(new[] { "bench", "-m", "small", "--replicas", "0", "--steps", "1" }));
        Assert.Equal(2, App.Run(new[] { "experiment", "pooling", "-d", dir["data"], "--replicas", "0", "--out", dir["e0"] }));
        Assert.False(Directory.Exists(dir["big"]) || Directory.Exists(dir["r0"]) || Directory.Exists(dir["rt"]) || Directory.Exists(dir["e0"]));
        Assert.NotEqual(0, App.Run(new[] { "train", "-d", dir["data"], "--no-such-flag" }));
        File.WriteAllText(dir["preset.json"], "{\"model\": \"small\", \"learningRat\": 0.1}");
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "--preset", dir["preset.json"] }));
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
        Assert.Equal(1, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--out", dir["run"], "--epochs", "1" }));
        Assert.Equal("precious\n", File.ReadAllText(dir["run/metrics.jsonl"]));
        Assert.Equal("precious\n", File.ReadAllText(dir["run/last.ckpt"]));
        // A run that never wrote a checkpoint (it diverged or crashed first) starts anew, its log kept aside, not lost.
        File.Delete(dir["run/last.ckpt"]);
        Assert.Equal(0, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--out", dir["run"], "--epochs", "1" }));
        Assert.Equal("precious\n", File.ReadAllText(Assert.Single(Directory.GetFiles(dir["run"], "metrics-before-*.jsonl"))));
    }

    [Fact]
    public void DataThatDoesNotFitTheModelFails()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 16, 2);
        TestData.WriteSyntheticStore(dir["data/val"], 16, 3);
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--out", dir["run"] }));
    }

    [Fact]
    public void EvalAndPredictWithBadCheckpointsFail()
    {
        using var dir = new TestData.TempDir();
        File.WriteAllText(dir["x.ckpt"], "garbage");
        TestData.WriteSyntheticStore(dir["val"], 16, 2);
        Assert.Equal(2, App.Run(new[] { "eval", "-c", dir["missing.ckpt"], "-d", dir["val"] }));
        Assert.Equal(2, App.Run(new[] { "eval", "-c", dir["x.ckpt"], "-d", dir["val"] }));
        Assert.Equal(2, App.Run(new[] { "predict", "-c", dir["x.ckpt"], "/usr/share/darknet/data/dog.jpg" }));
        Assert.Equal(2, App.Run(new[] { "prepare", "--out", dir["s"] }));
        Assert.Equal(2, App.Run(new[] { "prepare", "--folder", dir["nowhere"], "--out", dir["s"] }));
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
        Assert.Equal(0, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--epochs", "2", "-b", "16", "--input-scale", "0.0125",
            "--step-epochs", "1", "--out", dir["run"] }));
        Assert.Equal(0, App.Run(new[] { "report", dir["run"], "--data", dir["data/val"] }));
        string[] report = File.ReadAllLines(dir["run/report.md"]);
        Assert.Contains("| stepEpochs | [1] |", report);
        Assert.Equal(2, report.Count(l => l.StartsWith("| 1 |") || l.StartsWith("| 2 |")) - report.Count(l => l.StartsWith("| 1 | class") || l.StartsWith("| 2 | class")));
        foreach (string png in new[] { "loss.png", "error.png", "lr.png", "kernels.png", "predictions.png" })
        {
            Assert.Contains(report, l => l.Contains($"({png})"));
            Assert.True(File.Exists(dir[$"run/{png}"]), png);
        }
        Assert.Equal(2, App.Run(new[] { "report", dir["data"] }));   // not a run folder
    }
}
