using System.IO;
using System.Linq;
using System.Text;
using AlexNet.Cli;
using Xunit;

namespace AlexNet.Tests.Analysis;

public class TensorBoardTests
{
    [Fact]
    public void ARunWritesItsScalarsKernelsAndPredictionsAsEventFiles()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 32, 4);
        TestData.WriteSyntheticStore(dir["data/val"], 8, 4, seed: 3);
        Assert.Equal(0, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--epochs", "2", "--batch-size",
            "16", "--input-scale", "0.0125",
            "--log-every", "1", "--threads", "2", "--out", dir["run"], "--tensorboard", dir["tb"] }));
        string events = Directory.GetFiles(dir["tb"], "events.out.tfevents.*").Single();
        string text = Encoding.Latin1.GetString(File.ReadAllBytes(events));
        foreach (string tag in new[] { "train/loss", "lr", "val/top1_error", "val/top5_error",
            "conv1_kernels", "predictions" })
        {
            Assert.Contains(tag, text);
        }
        Assert.Contains("\x89PNG", text);   // the pictures themselves
        Assert.True(File.Exists(Path.Combine(dir["run"],
            "kernels.png")) && File.Exists(Path.Combine(dir["run"], "predictions.png")));
    }
}
