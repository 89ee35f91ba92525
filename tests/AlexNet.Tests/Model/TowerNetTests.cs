using System;
using System.Linq;
using AlexNet.Model;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>
/// §3.2's two towers on two devices (both the CPU here) against the grouped net that computes the same on one.
/// </summary>
public class TowerNetTests
{
    private static readonly Device[] TwoCpus = { CPU, CPU };

    private static Architecture NoDropout(string variant, int size) =>
        Variants.Get(variant, classes: 10, inputChannels: variant == Variants.Small ? 1 : 3, inputSize: size) with
        {
            Dropout = 0,
        };

    [Theory]
    [InlineData(Variants.Small, 28, false)]
    [InlineData(Variants.Small, 28, true)]
    [InlineData(Variants.Paper, 224, false)]
    public void TheTowersComputeTheGroupedNetsOutputsAndGradients(string variant, int size, bool concurrent)
    {
        Architecture arch = NoDropout(variant, size);
        using var grouped = new AlexNetModel(arch, seed: 3);
        using var towers = new TowerNet(grouped, TwoCpus) { Concurrent = concurrent };
        using var g = new Generator(4);
        using Tensor x = randn(new long[] { 3, arch.InputChannels, size, size }, generator: g) * 50;
        using Tensor labels = tensor(new long[] { 1, 7, 2 });

        grouped.train();
        towers.train();
        using Tensor expected = grouped.forward(x);
        using Tensor actual = towers.forward(x);
        Close.Assert(expected, actual, 1e-5, "logits");
        using (Tensor l = nn.functional.cross_entropy(expected, labels))
        {
            l.backward();
        }
        using (Tensor l = nn.functional.cross_entropy(actual, labels))
        {
            l.backward();
        }
        // Tower t's gradient is the grouped layer's gradient for tower t's rows (kernels or neurons).
        var groupedGrads = grouped.parameters().Select(p => p.grad!).ToArray();
        var towerGrads = towers.parameters().Select(p => p.grad!).ToArray();
        (int Grouped, int[] Towers)[] map = towers.ParameterMap(grouped);
        Assert.Equal(groupedGrads.Length, map.Length);
        foreach ((int gi, int[] ti) in map)
        {
            using Tensor joined = cat(ti.Select(i => towerGrads[i]).ToArray(), 0);
            Close.Assert(groupedGrads[gi], joined, 1e-4, $"gradient of parameter {gi}");
        }
    }

    [Fact]
    public void WeightsGoBackAndForthUnchangedAndTheCheckpointIsTheGroupedNets()
    {
        Architecture arch = NoDropout(Variants.Small, 28);
        using var grouped = new AlexNetModel(arch, seed: 5);
        using var towers = new TowerNet(grouped, TwoCpus);
        // A step on the towers' weights, written into a fresh grouped net: it now computes what the towers compute.
        using (no_grad())
        {
            foreach (var p in towers.parameters())
            {
                p.add_(0.01);
            }
        }
        using var other = new AlexNetModel(arch, seed: 9);
        towers.WriteInto(other);
        other.eval();
        towers.eval();
        using var g = new Generator(6);
        using Tensor x = randn(new long[] { 4, 1, 28, 28 }, generator: g) * 50;
        using (no_grad())
        using (Tensor a = other.forward(x))
        using (Tensor b = towers.forward(x))
        {
            Close.Assert(a, b, 1e-5, "logits after the write");
        }
        // And read back, every tensor bit for bit.
        using var again = new TowerNet(other, TwoCpus);
        foreach (var (p, q) in towers.parameters().Zip(again.parameters()))
        {
            Assert.True(p.eq(q).all().item<bool>());
        }
    }

    [Fact]
    public void NetsWithoutTowersAndWrongDeviceListsAreRefused()
    {
        using var owt = new AlexNetModel(Variants.Get(Variants.Owt, classes: 10), seed: 1);
        Assert.Contains("paper or small", Assert.Throws<ArgumentException>(() => new TowerNet(owt, TwoCpus)).Message);
        using var oneGpu = new AlexNetModel(Variants.Get(Variants.Small1Gpu, classes: 10, inputChannels: 1), seed: 1);
        Assert.Throws<ArgumentException>(() => new TowerNet(oneGpu, TwoCpus));
        using var small = new AlexNetModel(Variants.Get(Variants.Small, classes: 10, inputChannels: 1), seed: 1);
        Assert.Contains("2 devices",
            Assert.Throws<ArgumentException>(() => new TowerNet(small, new[] { CPU, CPU, CPU })).Message);
    }
}

/// <summary>`train --towers cpu,cpu`: the same run as the grouped net's, and checkpoints either can resume.</summary>
public class TowerTrainingTests
{
    private static AlexNet.Training.TrainOptions Options(int epochs) => new()
    {
        Model = Variants.Small, Epochs = epochs, BatchSize = 16, InputScale = 0.0125f,
        LogEvery = 2, Seed = 11, Dropout = 0,
        Schedule = AlexNet.Training.ScheduleKind.Step, Nesterov = true,
    };

    [Fact]
    public void TowersTrainAsTheGroupedNetAndTheirCheckpointsAreInterchangeable()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 80, 16);
        var grouped = new AlexNet.Training.MachineOptions(2);
        var towers = new AlexNet.Training.MachineOptions(2, Towers: "cpu,cpu");
        var silent = new AlexNet.Training.SilentProgress();
        AlexNet.Training.Trainer.Fit(Options(1), grouped, stores.Train, stores.Val, dir["g"], resume: false, silent);
        var r = AlexNet.Training.Trainer.Fit(Options(1), towers, stores.Train, stores.Val,
            dir["t"], resume: false, silent);
        Assert.Equal(5, r.Steps);
        Close.SameWeights(dir["g/last.ckpt"], dir["t/last.ckpt"]);
        // Each run's second epoch on the other's layout: the towers resume the grouped checkpoint (momentum split
        // to them), the grouped net resumes the towers' (momentum joined), and they still agree.
        AlexNet.Training.Trainer.Fit(Options(2), towers, stores.Train, stores.Val, dir["g"], resume: true, silent);
        AlexNet.Training.Trainer.Fit(Options(2), grouped, stores.Train, stores.Val, dir["t"], resume: true, silent);
        Close.SameWeights(dir["g/last.ckpt"], dir["t/last.ckpt"]);
        using var fresh = new TestData.TempDir();
        AlexNet.Training.Trainer.Fit(Options(2), grouped, stores.Train, stores.Val, fresh["g2"], resume: false, silent);
        // and both equal two epochs of the grouped net alone
        Close.SameWeights(fresh["g2/last.ckpt"], dir["t/last.ckpt"]);
    }

    [Fact]
    public void TowersRefuseWhatTheyDoNotSupport()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 80, 16);
        var towers = new AlexNet.Training.MachineOptions(2, Towers: "cpu,cpu");
        var e = Assert.Throws<ArgumentException>(() => AlexNet.Training.Trainer.Fit(Options(1) with
        {
            Ema = 0.9,
        }, towers, stores.Train, stores.Val, dir["e"],
            resume: false, new AlexNet.Training.SilentProgress()));
        Assert.Contains("--ema", e.Message);
        Assert.Throws<ArgumentException>(() => AlexNet.Training.Trainer.Fit(Options(1) with
        {
            Model = Variants.Small1Gpu,
        }, towers, stores.Train, stores.Val,
            dir["o"], resume: false, new AlexNet.Training.SilentProgress()));
        // refused before a run folder is made
        Assert.False(System.IO.Directory.Exists(dir["e"]) || System.IO.Directory.Exists(dir["o"]));
    }
}
