using System.Collections.Generic;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using AlexNet.Training;
using Xunit;

namespace AlexNet.Tests.Training;

/// <summary>
/// How a run starts, stops and resumes: limits, ignored options, the run folder, the typed metrics log.
/// </summary>
public class RunControlTests
{
    private static readonly MachineOptions TwoThreads = new(2);

    private static TrainOptions Tiny => new()
    {
        Model = Variants.Small, Epochs = 2, BatchSize = 16, InputScale = 0.0125f, LogEvery = 2, Seed = 11,
        Schedule = ScheduleKind.Step, StepEpochs = new[] { 1 },
    };

    [Fact]
    public void ResumingARunAtItsStepLimitRunsNoFurtherStep()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 72, 16);   // 5 steps per epoch
        (ImageStore train, ImageStore val) = (stores.Train, stores.Val);
        TrainResult first = Trainer.Fit(Tiny with
        {
            MaxSteps = 3,
        }, TwoThreads, train, val, dir["run"], resume: false, new SilentProgress());
        Assert.Equal(3, first.Steps);
        Assert.True(first.Stopped);
        Assert.True(double.IsPositiveInfinity(first.BestValidationError));   // no epoch finished: no validation yet
        var messages = new TestData.Messages();
        for (int i = 0; i < 2; i++)
        {
            TrainResult again = Trainer.Fit(Tiny with
            {
                MaxSteps = 3,
            }, TwoThreads, train, val, dir["run"], resume: true, messages);
            Assert.Equal(3, again.Steps);
        }
        Assert.Equal(3, Checkpoint.ReadState(dir["run/last.ckpt"]).Step);
        Assert.Contains(messages.Lines, l => l.Contains("already at step 3"));
        // A limit that falls on an epoch's last step still evaluates and checkpoints that epoch.
        TrainResult atEpochEnd = Trainer.Fit(Tiny with
        {
            MaxSteps = 5,
        }, TwoThreads, train, val, dir["run"], resume: true, messages);
        Assert.Equal(5, atEpochEnd.Steps);
        Assert.Equal(1, atEpochEnd.Epochs);
        Assert.Single(MetricsLog.Read(dir["run"]).OfType<EpochMetrics>());
        Assert.True(double.IsFinite(atEpochEnd.BestValidationError));
    }

    [Fact]
    public void ResumeNamesTheOptionsItIgnoresButNotTheMachine()
    {
        TrainOptions saved = Tiny;
        (TrainOptions merged, string[] ignored) = TrainingRun.ResumedOptions(saved, saved with
        {
            LearningRate = 0.5,
            Epochs = 4,
            MaxSteps = 9,
            BatchSize = 32,
        });
        Assert.Equal(saved with { Epochs = 4, MaxSteps = 9 }, merged);
        Assert.Equal(2, ignored.Length);
        Assert.Contains(ignored, s => s.StartsWith("learningRate 0.5 (run: 0.01)"));
        Assert.Contains(ignored, s => s.StartsWith("batchSize 32 (run: 16)"));
        // A shorter --epochs never shortens a run, and is named with what to use instead.
        Assert.Contains("epochs 1 (run: 2; a run is never shortened, --max-steps stops it early)",
            Assert.Single(TrainingRun.ResumedOptions(saved, saved with { Epochs = 1 }).Ignored));
        Assert.Equal(2, TrainingRun.ResumedOptions(saved, saved with { Epochs = 1 }).Options.Epochs);
    }

    [Fact]
    public void ANetTooLargeForTheStoreLeavesNoRunFolder()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 16, 16);
        (ImageStore train, ImageStore val) = (stores.Train, stores.Val);
        Assert.Throws<System.ArgumentException>(() =>
            Trainer.Fit(Tiny with
            {
                Model = Variants.Paper,
            }, TwoThreads, train, val, dir["run"], resume: false, new SilentProgress()));
        Assert.False(Directory.Exists(dir["run"]));
    }

    [Fact]
    public void MetricsLinesAreTypedAndReadBack()
    {
        using var dir = new TestData.TempDir();
        Directory.CreateDirectory(dir["run"]);
        var step = new StepMetrics(1, 50, 50, 100, 0.5, 0.25, 0.05, 0.01, 900);
        var epoch = new EpochMetrics(1, 100, 0.4, 0.2, 0.04, 0.45, 0.22, 0.05, 0.01, 950, 12.5);
        using (var log = new MetricsLog(dir["run"]))
        {
            log.Append(step);
            log.Append(epoch);
        }
        string[] lines = File.ReadAllLines(dir["run/metrics.jsonl"]);
        Assert.StartsWith("{\"kind\":\"step\",", lines[0]);
        Assert.Contains("\"lr\":0.01", lines[1]);
        Assert.Equal(new MetricsRecord[] { step, epoch }, MetricsLog.Read(dir["run"]));
        File.AppendAllText(dir["run/metrics.jsonl"], "{\"kind\":\"epoch\",\"bogus\":1}\n");
        Assert.Contains("line 3", Assert.Throws<InvalidDataException>(() => MetricsLog.Read(dir["run"])).Message);
    }

    [Fact]
    public void PredictionsOfStoreRecordsCarryTheirTrueClass()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 64, 16);
        (ImageStore train, ImageStore val) = (stores.Train, stores.Val);
        Trainer.Fit(Tiny with { Epochs = 1 }, TwoThreads, train, val, dir["run"], resume: false, new SilentProgress());
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(dir["run/last.ckpt"]);
        using (model)
        {
            List<Prediction> p = Predictor.PredictRecords(model, state.ModelCard, val, new[] { 0, 1, 2, 3 }, top: 3);
            Assert.Equal(new int?[] { 0, 1, 2, 3 }, p.Select(x => x.TrueClass));   // the synthetic store labels i % 4
            Assert.Equal(new[] { "class0", "class1", "class2", "class3" }, p.Select(x => x.TrueName));
            Assert.All(p, x => Assert.Equal(3, x.Top.Length));
            Assert.All(p, x => Assert.True(x.Top[0].Probability >= x.Top[1].Probability));
            AlexNet.Analysis.Figures.Predictions(p, dir["p.png"]);
            Assert.True(new FileInfo(dir["p.png"]).Length > 1000);
        }
        string report = AlexNet.Analysis.RunReport.Write(dir["run"], dir["val"], samples: 4);
        string md = File.ReadAllText(report);
        Assert.Contains("| 0 | class0 |", md);
        Assert.DoesNotContain("alexnet-report", md);   // no temporary files stand in for the images
    }
}

/// <summary>
/// --val-split: choose on records held out of the training set; the test set is scored once, at the end.
/// </summary>
public class HeldOutSplitTests
{
    [Fact]
    public void TheSplitIsSeededDisjointAndCoversTheStore()
    {
        (int[] train, int[] held) = BatchLoader.Split(100, 20, seed: 3);
        Assert.Equal(20, held.Length);
        Assert.Equal(80, train.Length);
        Assert.Empty(train.Intersect(held));
        Assert.Equal(Enumerable.Range(0, 100), train.Concat(held).Order());
        Assert.Equal(held, BatchLoader.Split(100, 20, seed: 3).HeldOut);
        Assert.NotEqual(held, BatchLoader.Split(100, 20, seed: 4).HeldOut);
        Assert.Throws<System.ArgumentException>(() => BatchLoader.Split(100, 100, seed: 3));
    }

    /// <summary>One epoch of `small` on 80 training records, 24 of them held out by seed 11.</summary>
    private static TrainOptions HeldOut => new()
    {
        Model = Variants.Small, Epochs = 1, BatchSize = 16, InputScale = 0.0125f, LogEvery = 2, Seed = 11,
        Schedule = ScheduleKind.Step, ValSplit = 24,
    };

    [Fact]
    public void ARunValidatesOnTheHeldOutRecordsAndScoresTheTestSetOnce()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 80, 16);
        TrainOptions o = HeldOut;
        TrainResult r = Trainer.Fit(o, new MachineOptions(2), stores.Train, stores.Val, dir["run"],
            resume: false, new SilentProgress());
        // 56 training images: 4 steps of 16 (the last of 8).
        Assert.Equal(4, r.Steps);
        // The epoch's validation is the held-out part: recomputed on those 24 records of the training store, it
        // matches.
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(dir["run/last.ckpt"]);
        using (model)
        {
            (_, int[] held) = BatchLoader.Split(80, 24, 11);
            EvalResult again = Evaluator.Evaluate(new[] { model }, stores.Train,
                TestPipeline.Augmentation(state.ModelCard, 28, 28), Evaluator.Views(false),
                "centre", records: held);
            Assert.Equal(24, again.Count);
            Assert.Equal(r.Last!.ValTop1Error, again.Top1Error, 9);
        }
        var test = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir["run/test.json"])).RootElement;
        Assert.Equal(16, test[0].GetProperty("count").GetInt32());   // the test store, whole
        File.WriteAllText(dir["run/test.json"], "[]");
        Trainer.Fit(o, new MachineOptions(2), stores.Train, stores.Val, dir["run"], resume: true, new SilentProgress());
        Assert.Equal("[]", File.ReadAllText(dir["run/test.json"]));   // scored once: a resume does not score it again
    }

    [Fact]
    public void ValViewsFlipValidatesAndScoresTheTestSetWithTheReflectionAveraged()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 80, 16);
        TrainOptions o = HeldOut with { ValViews = ViewSet.Flip };
        TrainResult r = Trainer.Fit(o, new MachineOptions(2), stores.Train, stores.Val, dir["run"],
            resume: false, new SilentProgress());
        // The modules, as the trainer's validation ran them (the oneDNN engine agrees to ~1e-7, not to 9 places).
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(dir["run/last.ckpt"],
            engine: AlexNet.Model.Kernels.InferenceEngine.Libtorch);
        using (model)
        {
            (_, int[] held) = BatchLoader.Split(80, 24, 11);
            Augmentation aug = TestPipeline.Augmentation(state.ModelCard, 28, 28);
            EvalResult flip = Evaluator.Evaluate(new[] { model }, stores.Train, aug,
                Evaluator.FlipViews, "flip", records: held);
            EvalResult centre = Evaluator.Evaluate(new[] { model }, stores.Train, aug,
                Evaluator.Views(false), "centre", records: held);
            Assert.Equal(flip.Loss, r.Last!.ValLoss, 9);
            Assert.NotEqual(centre.Loss, r.Last!.ValLoss, 6);   // the reflection really entered the average
            Assert.Equal(ViewSet.Flip, state.Options.ValViews);
        }
        var test = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir["run/test.json"])).RootElement;
        Assert.Equal("flip", test[0].GetProperty("views").GetString());
    }
}

/// <summary>A run from before LrnParams.Towers (its LRN spanned both towers' maps) resumes as it was trained.</summary>
public class PreTowerRunTests
{
    [Fact]
    public void ARunWhoseLrnSpannedTheTowersResumesWithIt()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 48, 16);
        var o = new TrainOptions
        {
            Model = Variants.Small,
            Epochs = 1,
            BatchSize = 16,
            InputScale = 0.0125f,
            LogEvery = 2,
            Seed = 3,
            Schedule = ScheduleKind.Step,
        };
        Trainer.Fit(o, new MachineOptions(2), stores.Train, stores.Val, dir["run"],
            resume: false, new SilentProgress());
        // Rewrite its checkpoint as the build before would have: the same weights under an LRN of one tower.
        string last = dir["run/last.ckpt"];
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(last);
        Architecture old = state.Architecture with { Lrn = state.Architecture.Lrn! with { Towers = 1 } };
        using (model)
        using (var before = new AlexNetModel(old, seed: 0))
        {
            before.load_state_dict(model.state_dict());
            Checkpoint.Save(last, state with { Architecture = old }, before, optimizer: null);
        }
        TrainResult r = Trainer.Fit(o with
        {
            Epochs = 2,
        }, new MachineOptions(2), stores.Train, stores.Val, dir["run"], resume: true, new SilentProgress());
        Assert.Equal(2, r.Epochs);
        Assert.Equal(1, Checkpoint.ReadState(last).Architecture.Lrn!.Towers);
    }
}
