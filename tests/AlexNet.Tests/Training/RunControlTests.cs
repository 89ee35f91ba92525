using System.Collections.Generic;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using AlexNet.Training;
using Xunit;

namespace AlexNet.Tests.Training;

/// <summary>How a run starts, stops and resumes: limits, ignored options, the run folder, the typed metrics log.</summary>
public class RunControlTests
{
    static readonly MachineOptions TwoThreads = new(2);

    static TrainOptions Tiny => new()
    {
        Model = Variants.Small, Epochs = 2, BatchSize = 16, InputScale = 0.0125f, LogEvery = 2, Seed = 11,
        Schedule = ScheduleKind.Step, StepEpochs = new[] { 1 },
    };

    sealed class Messages : ITrainingProgress
    {
        public List<string> Lines { get; } = new();
        public void EpochStarted(int epoch, int epochs, int stepsPerEpoch, int stepsDone) { }
        public void Step(StepMetrics metrics) { }
        public void EpochEnded(EpochMetrics metrics) { }
        public void Message(string text) => Lines.Add(text);
    }

    [Fact]
    public void ResumingARunAtItsStepLimitRunsNoFurtherStep()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 72, 16);   // 5 steps per epoch
        (ImageStore train, ImageStore val) = (stores.Train, stores.Val);
        TrainResult first = Trainer.Fit(Tiny with { MaxSteps = 3 }, TwoThreads, train, val, dir["run"], resume: false, new SilentProgress());
        Assert.Equal(3, first.Steps);
        Assert.True(first.Stopped);
        Assert.True(double.IsPositiveInfinity(first.BestValidationError));   // no epoch finished: no validation yet
        var messages = new Messages();
        for (int i = 0; i < 2; i++)
        {
            TrainResult again = Trainer.Fit(Tiny with { MaxSteps = 3 }, TwoThreads, train, val, dir["run"], resume: true, messages);
            Assert.Equal(3, again.Steps);
        }
        Assert.Equal(3, Checkpoint.ReadState(dir["run/last.ckpt"]).Step);
        Assert.Contains(messages.Lines, l => l.Contains("already at step 3"));
        // A limit that falls on an epoch's last step still evaluates and checkpoints that epoch.
        TrainResult atEpochEnd = Trainer.Fit(Tiny with { MaxSteps = 5 }, TwoThreads, train, val, dir["run"], resume: true, messages);
        Assert.Equal(5, atEpochEnd.Steps);
        Assert.Equal(1, atEpochEnd.Epochs);
        Assert.Single(MetricsLog.Read(dir["run"]).OfType<EpochMetrics>());
        Assert.True(double.IsFinite(atEpochEnd.BestValidationError));
    }

    [Fact]
    public void ResumeNamesTheOptionsItIgnoresButNotTheMachine()
    {
        TrainOptions saved = Tiny;
        (TrainOptions merged, string[] ignored) = Trainer.ResumedOptions(saved, saved with { LearningRate = 0.5, Epochs = 4, MaxSteps = 9, BatchSize = 32 });
        Assert.Equal(saved with { Epochs = 4, MaxSteps = 9 }, merged);
        Assert.Equal(2, ignored.Length);
        Assert.Contains(ignored, s => s.StartsWith("learningRate 0.5 (run: 0.01)"));
        Assert.Contains(ignored, s => s.StartsWith("batchSize 32 (run: 16)"));
        Assert.Empty(Trainer.ResumedOptions(saved, saved with { Epochs = 1 }).Ignored);   // a shorter --epochs never shortens a run
        Assert.Equal(2, Trainer.ResumedOptions(saved, saved with { Epochs = 1 }).Options.Epochs);
    }

    [Fact]
    public void ANetTooLargeForTheStoreLeavesNoRunFolder()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 16, 16);
        (ImageStore train, ImageStore val) = (stores.Train, stores.Val);
        Assert.Throws<System.ArgumentException>(() =>
            Trainer.Fit(Tiny with { Model = Variants.Paper }, TwoThreads, train, val, dir["run"], resume: false, new SilentProgress()));
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
            List<Prediction> p = Predictor.PredictRecords(model, state, val, new[] { 0, 1, 2, 3 }, top: 3);
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
