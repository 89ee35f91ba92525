using System;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using AlexNet.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Training;

/// <summary>§5's update rule and schedule, checkpoints and resuming, and a few real training steps.</summary>
public class TrainingTests
{
    [Fact]
    public void TheUpdateRuleMatchesSection5ByHandAcrossALearningRateChange()
    {
        // L = ½(w·x − y)², so ∂L/∂w = (w·x − y)·x. Three steps; ε drops from 0.1 to 0.01 before the third.
        double x = 2, y = 1, w = 0.5, v = 0;
        using var p = new TorchSharp.Modules.Parameter(tensor(new[] { 0.5 }, ScalarType.Float64));
        using var sgd = new PaperSgd(new[] { p }, 0.1, 0.9, 0.0005);
        double[] rates = { 0.1, 0.1, 0.01 };
        foreach (double eps in rates)
        {
            sgd.LearningRate = eps;
            sgd.ZeroGrad();
            using (Tensor loss = (p * x - y).pow(2).sum() * 0.5)
            {
                loss.backward();
            }
            sgd.Step();
            double grad = (w * x - y) * x;
            v = 0.9 * v - 0.0005 * eps * w - eps * grad;   // v ← 0.9v − 0.0005εw − ε∂L/∂w
            w += v;                                        // w ← w + v
            Assert.Equal(w, p.item<double>(), 12);
        }
    }

    /// <summary>
    /// The one-pass CPU update against the rule as libtorch's four operations, over steps with an ε change.
    /// </summary>
    [Fact]
    public void TheFusedUpdateMatchesLibtorchsOperationsAndZeroesTheGradient()
    {
        using var g = new Generator(5);
        // chunks and a vector tail
        using var p = new TorchSharp.Modules.Parameter(randn(new long[] { 70_003 }, generator: g));
        using Tensor w = p.detach().clone();
        using Tensor v = zeros_like(w);
        using var sgd = new PaperSgd(new[] { p }, 0.1, 0.9, 0.0005);
        Assert.True(sgd.StepZeroesGradients);
        foreach (double eps in new[] { 0.1, 0.1, 0.01, 0.01, 0.05 })
        {
            using Tensor c = randn(new long[] { 70_003 }, generator: g);
            using (Tensor loss = (p * c).sum())
            {
                loss.backward();   // ∂L/∂w = c; the gradient was left zero by the previous step
            }
            sgd.LearningRate = eps;
            sgd.Step();
            using (no_grad())
            {
                v.mul_(0.9).add_(w, alpha: -0.0005 * eps).add_(c, alpha: -eps);
                w.add_(v);
            }
            Assert.True(p.grad!.eq(0).all().item<bool>(), "the update leaves ∂L/∂w zero");
            using Tensor dw = (p.detach() - w).abs().max(), dv = (sgd.Velocity[0] - v).abs().max();
            Assert.True(p.detach().allclose(w, rtol: 1e-6, atol: 1e-7), $"weights differ by up to {dw.item<float>()}");
            Assert.True(sgd.Velocity[0].allclose(v, rtol: 1e-6, atol: 1e-8),
                $"velocities differ by up to {dv.item<float>()}");
        }
    }

    /// <summary>
    /// The same rule as libtorch's operations (fused: false) also leaves ∂L/∂w zero, as the training step relies on.
    /// </summary>
    [Fact]
    public void TheLibtorchPathOfTheRuleAlsoZeroesTheGradient()
    {
        using var p = new TorchSharp.Modules.Parameter(tensor(new[] { 0.5f, -1f, 2f }));
        using var sgd = new PaperSgd(new[] { p }, 0.1, 0.9, 0.0005, fused: false);
        Assert.True(sgd.StepZeroesGradients);
        using (Tensor loss = (p * tensor(new[] { 1f, 2f, 3f })).sum())
        {
            loss.backward();
        }
        sgd.Step();
        Assert.True(p.grad!.eq(0).all().item<bool>());
        // v = −0.0005·0.1·w − 0.1·g; w + v.
        Assert.Equal(0.5f - 0.00005f * 0.5f - 0.1f, p[0].item<float>(), 6);
    }

    [Fact]
    public void LibtorchsRuleEqualsThePapersOnlyWhileTheRateIsConstant()
    {
        double Run(OptimizerKind kind, double secondRate)
        {
            using var p = new TorchSharp.Modules.Parameter(tensor(new[] { 0.5 }, ScalarType.Float64));
            using var sgd = new PaperSgd(new[] { p }, 0.1, 0.9, 0.0005, kind);
            foreach (double eps in new[] { 0.1, secondRate })
            {
                sgd.LearningRate = eps;
                sgd.ZeroGrad();
                using (Tensor loss = (p * 2 - 1).pow(2).sum())
                {
                    loss.backward();
                }
                sgd.Step();
            }
            return p.item<double>();
        }
        Assert.Equal(Run(OptimizerKind.Paper, 0.1), Run(OptimizerKind.Torch, 0.1), 12);
        Assert.NotEqual(Run(OptimizerKind.Paper, 0.01), Run(OptimizerKind.Torch, 0.01), 6);
    }

    [Fact]
    public void ThePlateauScheduleDividesByTenAtMostThreeTimes()
    {
        var s = new LearningRateSchedule(new TrainOptions { LearningRate = 0.01, Patience = 2, MaxReductions = 3 });
        double[] errors = { 0.5, 0.4, 0.41, 0.40, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3 };
        double[] expected = { 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5 };
        for (int e = 0; e < errors.Length; e++)
        {
            Assert.Equal(expected[e], s.EndEpoch(e + 1, errors[e]), 12);
        }
        Assert.Equal(3, s.State.Reductions);
    }

    [Fact]
    public void TheStepScheduleDividesAtItsEpochs()
    {
        var s = new LearningRateSchedule(new TrainOptions
        {
            LearningRate = 0.01,
            Schedule = ScheduleKind.Step,
            StepEpochs = new[] { 2, 4 },
        });
        Assert.Equal(new[] { 0.01, 0.001, 0.001, 0.0001, 0.0001 },
            Enumerable.Range(1, 5).Select(e => Math.Round(s.EndEpoch(e, 0.5), 8)));
    }

    [Fact]
    public void ThePolyScheduleFallsEveryStepToZero()
    {
        var linear = new LearningRateSchedule(new TrainOptions { LearningRate = 0.04, Schedule = ScheduleKind.Poly });
        Assert.True(linear.PerStep);
        Assert.Equal(new[] { 0.04, 0.03, 0.02, 0.01, 0.0 },
            Enumerable.Range(0, 5).Select(t => Math.Round(linear.BeginStep(t, 4), 12)));
        var square = new LearningRateSchedule(new TrainOptions
        {
            LearningRate = 0.04,
            Schedule = ScheduleKind.Poly,
            Power = 2,
        });
        Assert.Equal(0.01, square.BeginStep(5, 10), 12);                      // 0.04·(1/2)²
        Assert.Equal(0.01, square.EndEpoch(1, 0.3), 12);                   // the validation error does not move it
        Assert.False(new LearningRateSchedule(new TrainOptions()).PerStep);
        Assert.Throws<ArgumentException>(() => new TrainOptions { Power = 0 }.Validate());
    }

    [Fact]
    public void CropSetsThePatchSideAndTheNetsInputFollowsIt()
    {
        var o = new TrainOptions { Model = Variants.Small, Pad = 0, Crop = 24 };
        AlexNet.Data.AugmentOptions a = o.Augment(28, 28);
        Assert.Equal((24, 0), (a.Crop, a.Pad));
        // padded by 4 by default
        Assert.Equal(28 + 4, new TrainOptions { Model = Variants.Small }.Augment(28, 28).Crop);
        Assert.Equal(224, new TrainOptions().Augment(256, 256).Crop);                          // §4.1: 224 of 256
        Assert.Equal(24, o.Architecture(10, 1, a.Crop).InputSize);
        Assert.Throws<ArgumentException>(() => (o with { Crop = 29 }).Augment(28, 28));
    }

    [Fact]
    public void TopKCountsHandMadeLogits()
    {
        using Tensor scores = tensor(new float[,]
        {
            { 0.1f, 0.9f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f },   // label 1: top-1 hit
            { 0.9f, 0.1f, 0.8f, 0.7f, 0.6f, 0.5f, 0.0f },   // label 5: 5th highest, top-5 hit only
            { 0.9f, 0.1f, 0.8f, 0.7f, 0.6f, 0.5f, 0.0f },   // label 6: lowest, miss
        });
        using Tensor labels = tensor(new long[] { 1, 5, 6 });
        (Tensor top1, Tensor top5) = TopK.Correct(scores, labels);
        Assert.Equal(1, top1.item<long>());
        Assert.Equal(2, top5.item<long>());
    }

    private static MachineOptions TwoThreads => new(2);

    private static TrainOptions Tiny => new()
    {
        Model = Variants.Small, Epochs = 2, BatchSize = 16, InputScale = 0.0125f, LogEvery = 2, Seed = 11,
        Schedule = ScheduleKind.Step, StepEpochs = new[] { 1 },
    };

    [Fact]
    public void AFewStepsOfTrainingMakeTheLossFall()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["train"], 256, 4);
        TestData.WriteSyntheticStore(dir["val"], 64, 4, seed: 9);
        using ImageStore train = ImageStore.Open(dir["train"]);
        using ImageStore val = ImageStore.Open(dir["val"]);
        TrainResult r = Trainer.Fit(Tiny with
        {
            Epochs = 3,
            LearningRate = 0.02,
        }, TwoThreads, train, val, dir["run"], resume: false, new SilentProgress());
        var steps = File.ReadLines(dir["run/metrics.jsonl"]).Where(l => l.Contains("\"step\"")
            && l.Contains("\"kind\":\"step\"")).ToArray();
        double first = System.Text.Json.JsonDocument.Parse(steps.First()).RootElement.GetProperty("loss").GetDouble();
        Assert.True(r.Last!.TrainLoss < first * 0.6, $"loss went from {first} to {r.Last.TrainLoss}");
        Assert.True(r.Last.ValTop1Error < 0.5, $"validation error {r.Last.ValTop1Error} on a 4-class problem");
        foreach (string f in new[] { "options.json", "last.ckpt", "best.ckpt", "loss.png", "error.png", "lr.png" })
        {
            Assert.True(File.Exists(dir[$"run/{f}"]), f);
        }
    }

    [Theory]
    [InlineData(ScheduleKind.Step)]
    [InlineData(ScheduleKind.Poly)]
    public void ResumingAfterAStopGivesBitForBitTheUninterruptedRun(ScheduleKind schedule)
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["train"], 72, 4);   // 5 batches of 16 (the last of 8) per epoch
        TestData.WriteSyntheticStore(dir["val"], 16, 4, seed: 3);
        using ImageStore train = ImageStore.Open(dir["train"]);
        using ImageStore val = ImageStore.Open(dir["val"]);
        TrainOptions o = Tiny with { Epochs = 2, Schedule = schedule };
        Trainer.Fit(o, TwoThreads, train, val, dir["whole"], resume: false, new SilentProgress());
        // Stop mid-epoch at step 3 (as a kill would, from the last checkpoint), then resume to the end.
        Trainer.Fit(o with { MaxSteps = 3 }, TwoThreads, train, val, dir["split"], resume: false, new SilentProgress());
        Trainer.Fit(o, TwoThreads, train, val, dir["split"], resume: true, new SilentProgress());

        (AlexNetModel a, RunState sa) = Checkpoint.LoadModel(dir["whole/last.ckpt"]);
        (AlexNetModel b, RunState sb) = Checkpoint.LoadModel(dir["split/last.ckpt"]);
        using (a)
        using (b)
        {
            Assert.Equal(sa.Step, sb.Step);
            Assert.Equal(10, sb.Step);
            foreach ((string name, Tensor ta) in a.state_dict())
            {
                Assert.True(ta.eq(b.state_dict()[name]).all().item<bool>(), $"{name} differs after resuming");
            }
        }
        Assert.Equal(sa.Schedule, sb.Schedule);
    }

    [Fact]
    public void CheckpointsRoundTripAndRefuseDamageAndOtherArchitectures()
    {
        using var dir = new TestData.TempDir();
        Architecture arch = Variants.Get(Variants.Small, 10, 1, 32);
        using var model = new AlexNetModel(arch, seed: 4);
        using var sgd = new PaperSgd(model.parameters(), 0.01, 0.9, 0.0005);
        using (no_grad())
        {
            sgd.Velocity[0].fill_(0.25);
        }
        var state = new RunState(Tiny, arch, 1, 0, 7, new ScheduleState(0.01, 0.2, 0, 0),
            new double[4], 0.2, "", new[] { "a" },
            new float[1 * 28 * 28], 28, 28, Array.Empty<AlexNet.Inference.TensorEntry>());
        string path = dir["c.ckpt"];
        Checkpoint.Save(path, state, model, sgd);

        RunState read = Checkpoint.ReadState(path);
        Assert.Equal(7, read.Step);
        using var copy = new AlexNetModel(arch, seed: 99);
        using var copySgd = new PaperSgd(copy.parameters(), 0.01, 0.9, 0.0005);
        Checkpoint.LoadInto(path, read, copy, copySgd);
        foreach ((string name, Tensor t) in model.state_dict())
        {
            Assert.True(t.eq(copy.state_dict()[name]).all().item<bool>(), name);
        }
        Assert.True(copySgd.Velocity[0].eq(0.25).all().item<bool>());

        using var other = new AlexNetModel(Variants.Get(Variants.Small, 5, 1, 32));
        Assert.Contains("differs",
            Assert.Throws<InvalidDataException>(() => Checkpoint.LoadInto(path, read, other, optimizer: null)).Message);

        byte[] bytes = File.ReadAllBytes(path);
        bytes[bytes.Length / 2] ^= 0x40;
        File.WriteAllBytes(dir["bad.ckpt"], bytes);
        Assert.Contains("damaged",
            Assert.Throws<InvalidDataException>(() => Checkpoint.ReadState(dir["bad.ckpt"])).Message);
        File.WriteAllText(dir["text.ckpt"], "import os; os.system('echo pwned')");
        Assert.Contains("not an alexnet checkpoint",
            Assert.Throws<InvalidDataException>(() => Checkpoint.ReadState(dir["text.ckpt"])).Message);
    }

    [Fact]
    public void ANanLossStopsTheRunAndKeepsTheLastGoodCheckpoint()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["train"], 64, 4);
        TestData.WriteSyntheticStore(dir["val"], 16, 4, seed: 3);
        using ImageStore train = ImageStore.Open(dir["train"]);
        using ImageStore val = ImageStore.Open(dir["val"]);
        Trainer.Fit(Tiny with { Epochs = 1 }, TwoThreads, train, val, dir["run"], resume: false, new SilentProgress());
        byte[] good = File.ReadAllBytes(dir["run/last.ckpt"]);
        // A run with an absurd rate must diverge, say so, and write no checkpoint of the NaN weights.
        var e = Assert.Throws<TrainingDivergedException>(() =>
            Trainer.Fit(Tiny with
            {
                Epochs = 1,
                LearningRate = 1e12,
                InputScale = 1000,
            }, TwoThreads, train, val, dir["fresh"], resume: false, new SilentProgress()));
        Assert.Contains("the loss became", e.Message);
        Assert.Contains("no checkpoint was written", e.Message);   // the fresh run wrote none, and says so
        Assert.Equal(good, File.ReadAllBytes(dir["run/last.ckpt"]));
        Assert.False(File.Exists(dir["fresh/last.ckpt"]));
    }

    [Fact]
    public void TenCropIsTheMeanOfTenSingleViewsAndAnEnsembleOfOneIsTheNet()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["val"], 20, 4);
        using ImageStore val = ImageStore.Open(dir["val"]);
        using var model = new AlexNetModel(Variants.Get(Variants.Small, 4, 1, 32), seed: 2);
        model.eval();
        var aug = new Augmentation(val, AugmentOptions.PaperFor(28) with { Scale = 0.0125f });
        using Tensor ten = Evaluator.Probabilities(new[] { model }, new StoreViews(val, aug, 8), Evaluator.TenViews, 4);
        using Tensor sum = zeros(20, 4);
        using (no_grad())
        {
            foreach (View v in Evaluator.TenViews)
            {
                foreach (Batch b in new BatchLoader(val, aug, new LoaderOptions(20)).TestPass(v))
                {
                    using (b)
                    {
                        sum.add_(model.forward(b.Inputs).softmax(1));
                    }
                }
            }
        }
        Assert.True(ten.allclose(sum / 10, rtol: 1e-5, atol: 1e-6));
        // Flip averaging: the mean of the centre view's and its reflection's softmax.
        using Tensor flip = Evaluator.Probabilities(new[] { model }, new StoreViews(val, aug), Evaluator.FlipViews, 4);
        using Tensor centre = Evaluator.Probabilities(new[] { model },
            new StoreViews(val, aug), new[] { View.Centre }, 4);
        using Tensor mirrored = Evaluator.Probabilities(new[] { model }, new StoreViews(val, aug),
            new[] { View.CentreFlipped }, 4);
        Assert.True(flip.allclose((centre + mirrored) / 2, rtol: 1e-5, atol: 1e-6));
        Assert.False(centre.allclose(mirrored, rtol: 1e-3, atol: 1e-4));
        using Tensor single = Evaluator.Probabilities(new[] { model },
            new StoreViews(val, aug), Evaluator.Views(false), 4);
        using Tensor pair = Evaluator.Probabilities(new[] { model, model },
            new StoreViews(val, aug), Evaluator.Views(false), 4);
        Assert.True(single.allclose(pair, rtol: 1e-6, atol: 1e-7));
        EvalResult r = Evaluator.Score(single, val.Labels, new[] { "a", "b", "c", "d" }, "centre", 1);
        Assert.Equal(20, r.Count);
        Assert.Equal(4, r.PerClassAccuracy.Length);
    }
}
