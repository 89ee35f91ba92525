using System;
using System.IO;
using System.Linq;
using AlexNet.Cli;
using AlexNet.Data;
using AlexNet.Model;
using AlexNet.Training;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Training;

/// <summary>
/// train --init-from: the checkpoint's weights in, fc8 kept or re-initialised, --freeze features,
/// --pretrained-lr-factor.
/// </summary>
public class FineTuningTests
{
    private static TrainOptions Source => new()
    {
        Model = Variants.Small, Epochs = 1, BatchSize = 16, InputScale = 0.0125f, LogEvery = 1, Seed = 4, MaxSteps = 3,
    };

    /// <summary>A run of `small` on 4 synthetic RGB classes: the checkpoint the tests fine-tune from.</summary>
    private static string TrainSource(TestData.TempDir dir)
    {
        TestData.WriteSyntheticStore(dir["src/train"], 48, 4, channels: 3);
        TestData.WriteSyntheticStore(dir["src/val"], 16, 4, channels: 3, seed: 2);
        using ImageStore train = ImageStore.Open(dir["src/train"]), val = ImageStore.Open(dir["src/val"]);
        Trainer.Fit(Source, new MachineOptions(2), train, val, dir["src/run"], resume: false, new SilentProgress());
        return Path.Combine(dir["src/run"], Trainer.LastCheckpoint);
    }

    private static Tensor Weight(string checkpoint, string layer)
    {
        (AlexNetModel model, _) = Checkpoint.LoadModel(checkpoint);
        using (model)
        {
            return model.LayerParameters(layer).Weight.detach().clone();
        }
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [SkippableFact]
    public void OnARealFolderTheClassifierLearnsWhileFrozenFeaturesStayBitForBit()
    {
        string[] photos = Directory.Exists("/usr/share/darknet/data") ? Directory.GetFiles("/usr/share/darknet/data",
            "*.jpg") : Array.Empty<string>();
        Skip.If(photos.Length < 6, "the photographs of Debian's darknet package are not installed");
        using var dir = new TestData.TempDir();
        string source = TrainSource(dir);
        // Two classes of real photographs: animals and the rest, §2-prepared at the source net's 28 px.
        foreach (string p in photos)
        {
            string name = Path.GetFileNameWithoutExtension(p);
            string cls = name is "dog" or "eagle" or "giraffe" or "horses" ? "animal" : "other";
            Directory.CreateDirectory(dir[$"photos/{cls}"]);
            File.Copy(p, dir[$"photos/{cls}/{name}.jpg"]);
        }
        Assert.Equal(0, App.Run(new[] { "prepare", "--folder", dir["photos"], "--size", "28", "--out", dir["real"] }));
        string store = dir["real"];
        Assert.True(ImageStore.IsComplete(store));

        Assert.Equal(0,
            App.Run(new[] { "train", "--train", store, "--val", store, "--init-from", source, "--freeze", "features",
            "--epochs", "30", "--batch-size", "8", "--lr", "0.01", "--dropout", "0", "--no-crop", "--no-flip",
                "--pca-std", "0", "--schedule", "step", "--log-every", "1", "--threads", "2", "--out", dir["tuned"] }));
        string tuned = Path.Combine(dir["tuned"], Trainer.LastCheckpoint);
        RunState state = Checkpoint.ReadState(tuned);
        Assert.Equal(2, state.Architecture.Classes);
        Assert.Equal(source, state.Options.InitFrom);
        Assert.True(state.Options.FreezeFeatures);
        Assert.Equal(0.0125f, state.Options.InputScale);   // the source's input scale, taken with its net
        foreach (string conv in new[] { "conv1", "conv2", "conv3", "conv4", "conv5" })
        {
            using Tensor before = Weight(source, conv), after = Weight(tuned, conv);
            Assert.True(Same(before, after), $"{conv} changed although frozen");
        }
        using (Tensor before = Weight(source, "fc6"), after = Weight(tuned, "fc6"))
        {
            Assert.False(Same(before, after));
        }
        double[] losses = MetricsLog.Read(dir["tuned"]).OfType<EpochMetrics>().Select(m => m.TrainLoss).ToArray();
        Assert.Equal(30, losses.Length);
        Assert.True(losses[^5..].Average() < 0.7 * losses[..5].Average(),
            $"the loss did not fall: {string.Join(", ", losses.Select(l => l.ToString("F3")))}");
    }

    [Fact]
    public void PretrainedLayersKeepTheirWeightsAtFactorZeroAndFc8IsKeptOnlyWhenClassesMatch()
    {
        using var dir = new TestData.TempDir();
        string source = TrainSource(dir);
        TestData.WriteSyntheticStore(dir["three/train"], 24, 3, channels: 3, seed: 5);
        TestData.WriteSyntheticStore(dir["three/val"], 8, 3, channels: 3, seed: 6);
        var same = new[] { "train", "-d", dir["src"], "--init-from", source, "--pretrained-lr-factor", "0",
            "--max-steps", "2", "--threads", "2" };
        Assert.Equal(0, App.Run(same.Concat(new[] { "--out", dir["same"] }).ToArray()));
        Assert.Equal(0, App.Run(new[] { "train", "-d", dir["three"], "--init-from", source, "--pretrained-lr-factor",
            "0", "--max-steps", "2", "--threads", "2", "--out", dir["other"] }));
        string sameCkpt = Path.Combine(dir["same"], Trainer.LastCheckpoint),
            otherCkpt = Path.Combine(dir["other"], Trainer.LastCheckpoint);
        foreach (string layer in new[] { "conv1", "conv5", "fc6", "fc7", "fc8" })
        {
            using Tensor before = Weight(source, layer), after = Weight(sameCkpt, layer);
            Assert.True(Same(before, after), $"{layer} moved at ε × 0");
        }
        using (Tensor before = Weight(source, "fc7"), after = Weight(otherCkpt, "fc7"))
        {
            Assert.True(Same(before, after));
        }
        using (Tensor fc8 = Weight(otherCkpt, "fc8"))
        {
            Assert.Equal(new long[] { 3, 512 }, fc8.shape);   // re-initialised for 3 classes, and learning at ε
        }
        // Flags that need a checkpoint, and a checkpoint of another net, are refused before anything is written.
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["three"], "--freeze", "features", "--out", dir["bad1"] }));
        Assert.Equal(2,
            App.Run(new[] { "train", "-d", dir["three"], "--init-from", source, "-m", "owt", "--out", dir["bad2"] }));
        Assert.False(Directory.Exists(dir["bad1"]) || Directory.Exists(dir["bad2"]));
    }
}
