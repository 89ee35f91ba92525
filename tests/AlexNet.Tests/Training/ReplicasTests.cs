using System;
using System.Linq;
using AlexNet.Model;
using AlexNet.Training;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Training;

/// <summary>
/// `--replicas`: a batch split across copies of the net on their own threads takes §5's step of the whole batch.
/// </summary>
public class ReplicasTests
{
    private static Architecture Small(double dropout) =>
        Variants.Get(Variants.Small, classes: 10, inputChannels: 1) with { Dropout = dropout };

    [Theory]
    [InlineData(2, false)]
    [InlineData(3, true)]
    public void TheSplitBatchTakesTheWholeBatchsStep(int count, bool mixup)
    {
        using var plain = new AlexNetModel(Small(0), seed: 3);
        using var split = new AlexNetModel(Small(0), seed: 3);
        using var plainSgd = new PaperSgd(plain.parameters(), 0.02, 0.9, 0.0005, nesterov: true);
        using var splitSgd = new PaperSgd(split.parameters(), 0.02, 0.9, 0.0005, nesterov: true);
        using var replicas = new Replicas(split, count, threads: 2);
        plain.train();
        split.train();
        using var g = new Generator(5);
        for (int step = 0; step < 3; step++)
        {
            // 17 images: parts of unequal size, so each part's loss must be weighted by its share of the batch.
            using var scope = NewDisposeScope();
            Tensor x = randn(new long[] { 17, 1, 28, 28 }, generator: g);
            Tensor y = randint(0, 10, new long[] { 17 }, generator: g);
            Mix? mix = mixup ? new Mix(randint(0, 10, new long[] { 17 }, generator: g), 0.7) : null;
            plainSgd.LearningRate = splitSgd.LearningRate = step == 2 ? 0.002 : 0.02;   // an ε change on the way
            (Tensor lossA, Tensor logitsA) = TrainingStep.Run(plain, plainSgd, x, y, labelSmoothing: 0.1, mix: mix);
            (Tensor lossB, Tensor logitsB) = replicas.Run(splitSgd, x, y, labelSmoothing: 0.1, mix: mix);
            Close.Assert(logitsA, logitsB, 1e-5, $"step {step} logits");
            Assert.Equal(lossA.item<float>(), lossB.item<float>(), 1e-5f);
        }
        foreach ((Tensor a, Tensor b) in plain.parameters().Zip(split.parameters()))
        {
            Close.Assert(a, b, 1e-5, "weights after 3 steps");
        }
        foreach ((Tensor a, Tensor b) in plainSgd.Velocity.Zip(splitSgd.Velocity))
        {
            Close.Assert(a, b, 1e-4, "momentum after 3 steps");
        }
    }

    [Fact]
    public void InferenceOnTheReplicasIsTheNetsOwnAfterAnUpdate()
    {
        // Each epoch's validation runs on the replicas' lanes: every image's output must be the net's in evaluation
        // mode (dropout off), with the weights of the step just taken, and the net left in the mode it was in.
        using var net = new AlexNetModel(Small(0.5), seed: 3);
        using var sgd = new PaperSgd(net.parameters(), 0.02, 0.9, 0.0005);
        using var replicas = new Replicas(net, 3, threads: 2);
        using var g = new Generator(11);
        using var scope = NewDisposeScope();
        net.train();
        replicas.Run(sgd, randn(new long[] { 16, 1, 28, 28 }, generator: g),
            randint(0, 10, new long[] { 16 }, generator: g));
        Tensor x = randn(new long[] { 23, 1, 28, 28 }, generator: g);
        net.eval();
        Tensor split = replicas.Infer(x);
        Assert.False(net.training);
        Assert.False(split.requires_grad);
        Tensor whole;
        using (no_grad())
        {
            whole = net.forward(x);
        }
        Assert.Equal(new long[] { 23, 10 }, split.shape);
        Close.Assert(whole, split, 1e-5, "outputs");
        net.train();
        replicas.Infer(x);
        Assert.True(net.training);
    }

    [Fact]
    public void DropoutMasksAreFixedByTheSeedWhateverTheThreadsOrder()
    {
        Tensor[] Train()
        {
            manual_seed(7);
            using var net = new AlexNetModel(Small(0.5), seed: 3);
            using var sgd = new PaperSgd(net.parameters(), 0.02, 0.9, 0.0005);
            using var replicas = new Replicas(net, 2, threads: 2);
            net.train();
            using var g = new Generator(5);
            for (int step = 0; step < 3; step++)
            {
                using var scope = NewDisposeScope();
                replicas.Run(sgd, randn(new long[] { 16, 1, 28, 28 }, generator: g),
                    randint(0, 10, new long[] { 16 }, generator: g));
            }
            return net.parameters().Select(p => p.detach().clone()).ToArray();
        }
        Tensor[] first = Train(), second = Train();
        foreach ((Tensor a, Tensor b) in first.Zip(second))
        {
            Assert.True(a.eq(b).all().item<bool>(), "two runs from one seed differ");
        }
    }

    [Fact]
    public void PartsAreAsEvenAsCanBe()
    {
        Assert.Equal(new long[] { 64, 64 }, Replicas.Parts(128, 2));
        Assert.Equal(new long[] { 6, 6, 5 }, Replicas.Parts(17, 3));
        Assert.Equal(new long[] { 1 }, Replicas.Parts(1, 2));   // a last batch of one image: one part
        Assert.Throws<ArgumentException>(() => new Replicas(new AlexNetModel(Small(0), seed: 1), 1, 2));
    }
}

/// <summary>`train --replicas 2`: the run of the plain trainer, resumable by it.</summary>
public class ReplicasTrainingTests
{
    private static TrainOptions Options(int epochs) => new()
    {
        Model = Variants.Small, Epochs = epochs, BatchSize = 16, InputScale = 0.0125f,
        LogEvery = 2, Seed = 11, Dropout = 0,
        Schedule = ScheduleKind.Step, Nesterov = true, LabelSmoothing = 0.1,
    };

    [Fact]
    public void ReplicasTrainAsOneThreadAndResumeEachOther()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 80, 16);
        var plain = new MachineOptions(2);
        var split = new MachineOptions(2, Replicas: 2);
        var silent = new SilentProgress();
        Trainer.Fit(Options(1), plain, stores.Train, stores.Val, dir["p"], resume: false, silent);
        TrainResult r = Trainer.Fit(Options(1), split, stores.Train, stores.Val, dir["r"], resume: false, silent);
        Assert.Equal(5, r.Steps);
        Close.SameWeights(dir["p/last.ckpt"], dir["r/last.ckpt"]);
        // A second epoch of each with the other's setting: still the same run.
        Trainer.Fit(Options(2), split, stores.Train, stores.Val, dir["p"], resume: true, silent);
        Trainer.Fit(Options(2), plain, stores.Train, stores.Val, dir["r"], resume: true, silent);
        Close.SameWeights(dir["p/last.ckpt"], dir["r/last.ckpt"]);
    }

    [Fact]
    public void ReplicasAndTowersAreRefusedTogether()
    {
        var e = Assert.Throws<ArgumentException>(() => new MachineOptions(2,
            Towers: "cpu,cpu", Replicas: 2).Validate());
        Assert.Contains("--replicas", e.Message);
    }
}
