using System;
using System.Linq;
using AlexNet.Training;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Training;

/// <summary>
/// The options a modern reference trainer has (none of them the paper's), each against a hand computation.
/// </summary>
public class ModernOptionsTests
{
    [Fact]
    public void LabelSmoothingIsTheCrossEntropyAgainstSmoothedTargets()
    {
        float[,] z = { { 2f, 0f, -1f }, { 0.5f, 0.5f, 3f } };
        long[] y = { 0, 1 };
        const double eps = 0.1;
        double expected = 0;
        for (int n = 0; n < 2; n++)
        {
            double[] logits = Enumerable.Range(0, 3).Select(k => (double)z[n, k]).ToArray();
            double lse = Math.Log(logits.Sum(Math.Exp));
            for (int k = 0; k < 3; k++)
            {
                double target = (k == y[n] ? 1 - eps : 0) + eps / 3;   // (1 − ε)·one-hot + ε/K
                expected -= target * (logits[k] - lse);
            }
        }
        expected /= 2;
        using Tensor zt = tensor(z), yt = tensor(y);
        using Tensor smoothed = TrainingStep.Loss(zt, yt, eps);
        using Tensor plain = TrainingStep.Loss(zt, yt);
        Assert.Equal(expected, smoothed.item<float>(), 5);
        Assert.NotEqual(plain.item<float>(), smoothed.item<float>(), 3);
    }

    [Theory]
    [InlineData(ScalarType.Float64)]   // libtorch's operations
    [InlineData(ScalarType.Float32)]   // the fused CPU pass
    public void NesterovFollowsItsRuleByHand(ScalarType dtype)
    {
        // L = ½(w·x − y)²; d = λw + ∂L/∂w; v ← μv − εd; w ← w + μv − εd.
        double x = 2, target = 1, w = 0.5, v = 0, mu = 0.9, lambda = 0.0005;
        using var p = new TorchSharp.Modules.Parameter(tensor(new[] { 0.5 }, dtype));
        using var sgd = new PaperSgd(new[] { p }, 0.1, mu, lambda, nesterov: true);
        foreach (double eps in new[] { 0.1, 0.1, 0.01 })
        {
            sgd.LearningRate = eps;
            sgd.ZeroGrad();
            using (Tensor loss = (p * x - target).pow(2).sum() * 0.5)
            {
                loss.backward();
            }
            sgd.Step();
            double step = -eps * (lambda * w + (w * x - target) * x);
            v = mu * v + step;
            w += mu * v + step;
            Assert.Equal(w, p.to(ScalarType.Float64).item<double>(), dtype == ScalarType.Float64 ? 12 : 6);
        }
    }

    [Fact]
    public void WarmupRisesLinearlyIntoAnySchedule()
    {
        // 4 epochs of 10 steps, warm-up over 1 epoch: ε·(t+1)/10 for t < 10, then the schedule's own ε.
        var step = new LearningRateSchedule(new TrainOptions
        {
            LearningRate = 0.1,
            Epochs = 4,
            WarmupEpochs = 1,
            Schedule = ScheduleKind.Step,
            StepEpochs = new[] { 3 },
        });
        Assert.Equal(0.01, step.BeginStep(0, 40), 12);
        Assert.Equal(0.05, step.BeginStep(4, 40), 12);
        Assert.Equal(0.1, step.BeginStep(9, 40), 12);
        Assert.Equal(0.1, step.BeginStep(10, 40), 12);
        var poly = new LearningRateSchedule(new TrainOptions
        {
            LearningRate = 0.1,
            Epochs = 4,
            WarmupEpochs = 1,
            Schedule = ScheduleKind.Poly,
        });
        // the poly curve, times the warm-up's 5/10
        Assert.Equal(0.1 * (1 - 4 / 40.0) * 5 / 10, poly.BeginStep(4, 40), 12);
        Assert.Equal(0.1 * (1 - 20 / 40.0), poly.BeginStep(20, 40), 12);
    }

    [Fact]
    public void TheQuickStartShortensItsWarmupOnlyBelowThreeEpochs()
    {
        // `quickstart --epochs N`: the recipe's 2 warm-up epochs while ε has an epoch left to fall; 1 or 2 epochs (a
        // smoke test) warm up over the recipe's 2/15 instead of being refused.
        Assert.Equal(Recipes.QuickStart.ToJson(), Recipes.QuickStartFor(15).ToJson());
        Assert.Equal(2, Recipes.QuickStartFor(3).WarmupEpochs);
        Assert.Equal(2 / 15.0, Recipes.QuickStartFor(1).WarmupEpochs, 12);
        Assert.Equal(4 / 15.0, Recipes.QuickStartFor(2).WarmupEpochs, 12);
        foreach (int epochs in Enumerable.Range(1, 16))
        {
            TrainOptions o = Recipes.QuickStartFor(epochs);
            o.Validate();
            var schedule = new LearningRateSchedule(o);
            long steps = 100L * epochs;
            Assert.True(schedule.BeginStep(steps - 1, steps) < 0.05 * 0.02,
                $"{epochs} epochs: ε falls to ~0 by the last step");
        }
    }

    [Fact]
    public void ClippingScalesTheGradientsToTheGlobalNorm()
    {
        using var a = new TorchSharp.Modules.Parameter(zeros(2));
        using var b = new TorchSharp.Modules.Parameter(zeros(1));
        using (Tensor loss = (a * tensor(new[] { 3f, 0f })).sum() + (b * tensor(new[] { 4f })).sum())
        {
            loss.backward();   // gradients (3, 0) and (4): global norm 5
        }
        Assert.Equal(5, TrainingStep.ClipGradients(new[] { a, b }, 1.0), 5);
        Assert.Equal(new[] { 0.6f, 0f }, a.grad!.data<float>().ToArray().Select(v => MathF.Round(v, 5)));
        Assert.Equal(0.8f, b.grad!.item<float>(), 5);
        Assert.Equal(1, TrainingStep.ClipGradients(new[] { a, b }, 10.0), 5);   // under the limit: unchanged
        Assert.Equal(0.8f, b.grad!.item<float>(), 5);
    }

    [Fact]
    public void TheOptionsAreOffByDefaultAndSavedWithTheRun()
    {
        var d = new TrainOptions();
        Assert.Equal((0.0, 0.0, false, 0.0), (d.LabelSmoothing, d.WarmupEpochs, d.Nesterov, d.ClipGradNorm));
        var o = d with { LabelSmoothing = 0.1, WarmupEpochs = 2, Nesterov = true, ClipGradNorm = 5 };
        Assert.Equal(o.ToJson(), TrainOptions.FromJson(o.ToJson(), "test").ToJson());
        Assert.Contains("\"nesterov\": true", o.ToJson());
        Assert.Throws<ArgumentException>(() => (d with { LabelSmoothing = 1 }).Validate());
        Assert.Throws<ArgumentException>(() => (d with { WarmupEpochs = 91 }).Validate());
    }
}

/// <summary>--ema: the average by hand, and a run that checkpoints, resumes and evaluates it.</summary>
public class WeightEmaTests
{
    [Fact]
    public void TheAverageFollowsItsRecurrenceByHand()
    {
        using var model = new AlexNet.Model.AlexNetModel(
            AlexNet.Model.Variants.Get(AlexNet.Model.Variants.Figure1, 10, 1, 32), seed: 1);
        TorchSharp.Modules.Parameter w = model.parameters().First();
        float w0 = w.detach().flatten()[0].item<float>();
        using var ema = new WeightEma(model, decay: 0.9);
        double e = w0;
        foreach (float shift in new[] { 1f, -2f, 0.5f })
        {
            using (no_grad())
            {
                w.add_(shift);
            }
            ema.Update();
            e = 0.9 * e + 0.1 * w.detach().flatten()[0].item<float>();   // e ← d·e + (1 − d)·w
            Assert.Equal(e, ema.Averages.First().Average.flatten()[0].item<float>(), 5);
        }
        using var copy = new AlexNet.Model.AlexNetModel(model.Architecture, seed: 2);
        ema.CopyTo(copy);
        Assert.Equal(e, copy.parameters().First().detach().flatten()[0].item<float>(), 5);
    }

    [Fact]
    public void ARunWithEmaEvaluatesCheckpointsAndResumesIt()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 72, 16);
        var o = new TrainOptions
        {
            Model = AlexNet.Model.Variants.Small, Epochs = 2, BatchSize = 16,
            InputScale = 0.0125f, LogEvery = 2, Seed = 11,
            Schedule = ScheduleKind.Step, StepEpochs = new[] { 1 }, Ema = 0.9,
        };
        var machine = new MachineOptions(2);
        TrainResult whole = Trainer.Fit(o, machine, stores.Train, stores.Val, dir["whole"],
            resume: false, new SilentProgress());
        Assert.NotNull(whole.Last!.EmaValTop1Error);
        Trainer.Fit(o with
        {
            MaxSteps = 3,
        }, machine, stores.Train, stores.Val, dir["split"], resume: false, new SilentProgress());
        Trainer.Fit(o, machine, stores.Train, stores.Val, dir["split"], resume: true, new SilentProgress());
        (AlexNet.Model.AlexNetModel a, _) = Checkpoint.LoadModel(dir["whole/last.ckpt"], averagedWeights: true);
        (AlexNet.Model.AlexNetModel b, _) = Checkpoint.LoadModel(dir["split/last.ckpt"], averagedWeights: true);
        (AlexNet.Model.AlexNetModel plain, _) = Checkpoint.LoadModel(dir["whole/last.ckpt"]);
        using (a)
        using (b)
        using (plain)
        {
            foreach ((string name, Tensor t) in a.state_dict())
            {
                Assert.True(t.eq(b.state_dict()[name]).all().item<bool>(),
                    $"{name}: the average differs after resuming");
            }
            Assert.False(a.state_dict()["features.0.weight"].allclose(plain.state_dict()["features.0.weight"]));
        }
        Assert.Equal(0, AlexNet.Cli.App.Run(new[] { "eval", "-c", dir["whole/last.ckpt"], "-d", dir["val"], "--views",
            "centre", "--weights", "ema" }));
        TrainResult without = Trainer.Fit(o with
        {
            Ema = 0,
            Epochs = 1,
        }, machine, stores.Train, stores.Val, dir["plain"], resume: false, new SilentProgress());
        Assert.Null(without.Last!.EmaValTop1Error);
        Assert.Contains("--ema", Assert.Throws<System.IO.InvalidDataException>(() =>
            Checkpoint.LoadModel(dir["plain/last.ckpt"], averagedWeights: true)).Message);
    }
}
