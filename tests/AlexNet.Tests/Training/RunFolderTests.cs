using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using AlexNet.Data;
using AlexNet.Model;
using AlexNet.Training;
using Xunit;

namespace AlexNet.Tests.Training;

/// <summary>
/// The run folder at its edges (#28): defaults that train, a loss that explodes, the lock, a log cut back to the
/// checkpoint and tolerant of a torn line, a resume that refuses other data or another number of processes, and a stop
/// that lands during validation.
/// </summary>
public class RunFolderTests
{
    private static readonly MachineOptions TwoThreads = new(2);

    private static TrainOptions Tiny => new()
    {
        Model = Variants.Small, Epochs = 2, BatchSize = 16, LogEvery = 2, Seed = 11,
        Schedule = ScheduleKind.Step, StepEpochs = new[] { 1 },
    };

    [Fact]
    public void AnInputScaleLeftOutIsTheOneTheNetsInitExpectsAndIsRecorded()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 48, 16);
        Trainer.Fit(Tiny with
        {
            MaxSteps = 2,
        }, TwoThreads, stores.Train, stores.Val, dir["small"], resume: false, new SilentProgress());
        Assert.Equal(Recipes.SmallImageInputScale, Json.Read<TrainOptions>(dir["small/options.json"]).InputScale);
        Assert.Equal(Recipes.SmallImageInputScale, Checkpoint.ReadState(dir["small/last.ckpt"]).Options.InputScale);
        // §5's init was chosen for §2's raw values: a net with it takes scale 1.
        Trainer.Fit(Tiny with
        {
            MaxSteps = 1,
            Init = InitScheme.Paper,
        }, TwoThreads, stores.Train, stores.Val, dir["paper-init"], resume: false,
            new SilentProgress());
        Assert.Equal(1f, Json.Read<TrainOptions>(dir["paper-init/options.json"]).InputScale);
    }

    [Fact]
    public void ALossThatExplodesStopsTheRunAndTheFolderStartsAgain()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 64, 16);
        // The raw 0–255 values into a fan-in-scaled init: the loss runs to ~1e5 before it is NaN.
        var e = Assert.Throws<TrainingDivergedException>(() => Trainer.Fit(Tiny with
        {
            InputScale = 1,
            LogEvery = 1,
        }, TwoThreads, stores.Train,
            stores.Val, dir["run"], resume: false, new SilentProgress()));
        Assert.Contains("no checkpoint was written", e.Message);
        Assert.DoesNotContain("holds the state", e.Message);
        Assert.False(File.Exists(dir["run/last.ckpt"]));
        // --resume says there is nothing to resume; the same command starts it anew and keeps the old log aside.
        Assert.Contains("without --resume", Assert.Throws<FileNotFoundException>(() =>
            Trainer.Fit(Tiny, TwoThreads, stores.Train, stores.Val, dir["run"], resume: true,
            new SilentProgress())).Message);
        var step = new StepMetrics(1, 1, 1, 4, 9e4, 0.75, 0.5, 0.01, 100);   // what such a run may have logged first
        using (var log = new MetricsLog(dir["run"]))
        {
            log.Append(step);
        }
        var messages = new TestData.Messages();
        Trainer.Fit(Tiny with
        {
            MaxSteps = 2,
        }, TwoThreads, stores.Train, stores.Val, dir["run"], resume: false, messages);
        Assert.True(File.Exists(dir["run/last.ckpt"]));
        string aside = Assert.Single(Directory.GetFiles(dir["run"], "metrics-before-*.jsonl"));
        Assert.Contains(messages.Lines, l => l.Contains("starting anew") && l.Contains(aside));
        Assert.Equal(step, Json.Parse<MetricsRecord>(File.ReadAllLines(aside)[0], aside));   // kept, not lost
    }

    [Fact]
    public void ADivergenceAfterACheckpointNamesTheStepItHolds()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 64, 16);
        // Step 1's loss is an untrained net's; its update at this rate explodes, seen at step 2's log line.
        var e = Assert.Throws<TrainingDivergedException>(() => Trainer.Fit(Tiny with
        {
            LearningRate = 1e9,
            LogEvery = 2,
            CheckpointEvery = 1,
        },
            TwoThreads, stores.Train, stores.Val, dir["run"], resume: false, new SilentProgress()));
        Assert.Contains("last.ckpt holds the state of step 1", e.Message);
        Assert.Equal(1, Checkpoint.ReadState(dir["run/last.ckpt"]).Step);
    }

    [Fact]
    public void ASecondProcessIsKeptOutOfALiveRunFolder()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 48, 16);
        Trainer.Fit(Tiny with
        {
            MaxSteps = 2,
        }, TwoThreads, stores.Train, stores.Val, dir["run"], resume: false, new SilentProgress());
        byte[] before = File.ReadAllBytes(dir["run/last.ckpt"]);
        using (RunFolder.Lock(dir["run"], create: false))   // what a live `train` holds
        {
            Assert.Throws<RunFolderInUseException>(() =>
                Trainer.Fit(Tiny with
                {
                    MaxSteps = 3,
                }, TwoThreads, stores.Train, stores.Val, dir["run"], resume: true, new SilentProgress()));
            var e = Assert.Throws<RunFolderInUseException>(() =>
                Trainer.Fit(Tiny, TwoThreads, stores.Train, stores.Val, dir["run"],
                resume: false, new SilentProgress()));
            Assert.Contains("in use by another process", e.Message);
        }
        Assert.Equal(before, File.ReadAllBytes(dir["run/last.ckpt"]));
        // Released with its holder: the run resumes.
        Assert.Equal(3, Trainer.Fit(Tiny with
        {
            MaxSteps = 3,
        }, TwoThreads, stores.Train, stores.Val, dir["run"], resume: true, new SilentProgress()).Steps);
    }

    [Fact]
    public void AResumeCutsTheLogBackToItsCheckpointAndATornLineIsDropped()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 72, 16);   // 5 steps per epoch
        Trainer.Fit(Tiny with
        {
            MaxSteps = 2,
        }, TwoThreads, stores.Train, stores.Val, dir["run"], resume: false, new SilentProgress());
        // A crash after step 4 was logged, the checkpoint still at step 2, and a disk that filled during the next
        // append.
        string log = dir["run/metrics.jsonl"];
        File.AppendAllText(log,
            "{\"kind\":\"step\",\"epoch\":1,\"step\":4,\"stepInEpoch\":4,\"stepsPerEpoch\":5,\"loss\":1,\"top1Error\":0.5," +
            "\"top5Error\":0,\"lr\":0.01,\"imagesPerSecond\":100}\n{\"kind\":\"step\",\"epo");
        // the torn line is left out
        Assert.Equal(new long[] { 2, 4 }, MetricsLog.Read(dir["run"]).OfType<StepMetrics>().Select(s => s.Step));
        var messages = new TestData.Messages();
        Trainer.Fit(Tiny, TwoThreads, stores.Train, stores.Val, dir["run"], resume: true, messages);
        Assert.Contains(messages.Lines, l => l.Contains("1 line(s) logged after the checkpoint's step 2 removed"));
        List<MetricsRecord> records = MetricsLog.Read(dir["run"]);
        long[] steps = records.OfType<StepMetrics>().Select(s => s.Step).ToArray();
        Assert.Equal(steps.Distinct().Order(), steps);   // each step once, in order
        Assert.Equal(new[] { 1, 2 }, records.OfType<EpochMetrics>().Select(m => m.Epoch));
        Assert.EndsWith("\n", File.ReadAllText(log));
    }

    [Fact]
    public void AnAppendAfterATornLineStartsOnALineOfItsOwn()
    {
        using var dir = new TestData.TempDir();
        Directory.CreateDirectory(dir["run"]);
        var step = new StepMetrics(1, 2, 2, 5, 0.5, 0.25, 0.05, 0.01, 900);
        File.WriteAllText(dir["run/metrics.jsonl"], "{\"kind\":\"st");
        using (var log = new MetricsLog(dir["run"]))
        {
            log.Append(step);
        }
        Assert.Equal(new MetricsRecord[] { step }, MetricsLog.Read(dir["run"]));
    }

    [Fact]
    public void AResumeRefusesOtherDataAndAnotherNumberOfProcesses()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 48, 16);
        Trainer.Fit(Tiny with
        {
            MaxSteps = 2,
        }, TwoThreads, stores.Train, stores.Val, dir["run"], resume: false, new SilentProgress());
        RunState saved = Checkpoint.ReadState(dir["run/last.ckpt"]);
        Assert.Equal(1, saved.Ranks);
        Assert.Equal(RunFolder.Fingerprint(stores.Train), saved.TrainData);
        TestData.WriteSyntheticStore(dir["other"], 48, 4, seed: 9);
        using (ImageStore other = ImageStore.Open(dir["other"]))
        {
            var e = Assert.Throws<ArgumentException>(() =>
                Trainer.Fit(Tiny with
                {
                    MaxSteps = 3,
                }, TwoThreads, other, stores.Val, dir["run"], resume: true, new SilentProgress()));
            Assert.Contains("trained on other data", e.Message);
            Assert.Contains(dir["other"], e.Message);
        }
        var ranks = Assert.Throws<ArgumentException>(() => RunFolder.CheckSameRanks(saved with
        {
            Ranks = 2,
        }, 1, dir["run"]));
        Assert.Contains("mpirun -np 2", ranks.Message);
        RunFolder.CheckSameRanks(saved, 1, dir["run"]);
        // a checkpoint of an earlier build: no record, no refusal
        RunFolder.CheckSameData(saved with { TrainData = null }, stores.Val, dir["run"]);
    }

    [Fact]
    public void AStopDuringValidationKeepsTheEpochsTrainingAndTheResumeValidatesIt()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 72, 16);   // 5 steps per epoch
        TrainOptions o = Tiny with { Epochs = 1, LogEvery = 1 };
        TrainResult through = Trainer.Fit(o, TwoThreads, stores.Train, stores.Val, dir["through"],
            resume: false, new SilentProgress());
        using var cts = new CancellationTokenSource();
        var stopAtLastStep = new TestData.Messages
        {
            OnStep = m =>
            {
                if (m.StepInEpoch == m.StepsPerEpoch)
                {
                    cts.Cancel();   // after the epoch's last step, where only the validation is left
                }
            },
        };
        TrainResult stopped = Trainer.Fit(o, TwoThreads, stores.Train, stores.Val, dir["stopped"],
            resume: false, stopAtLastStep, cts.Token);
        Assert.True(stopped.Stopped);
        RunState state = Checkpoint.ReadState(dir["stopped/last.ckpt"]);
        // the epoch trained, not yet validated
        Assert.Equal((0, 5, 5L), (state.Epoch, state.StepInEpoch, state.Step));
        Assert.Empty(MetricsLog.Read(dir["stopped"]).OfType<EpochMetrics>());
        TrainResult resumed = Trainer.Fit(o, TwoThreads, stores.Train, stores.Val, dir["stopped"],
            resume: true, new SilentProgress());
        Assert.Equal(through.BestValidationError, resumed.BestValidationError);
        EpochMetrics a = MetricsLog.Read(dir["through"]).OfType<EpochMetrics>().Single();
        EpochMetrics b = MetricsLog.Read(dir["stopped"]).OfType<EpochMetrics>().Single();
        Assert.Equal((a.TrainLoss, a.ValLoss, a.ValTop1Error), (b.TrainLoss, b.ValLoss, b.ValTop1Error));
    }

    [Fact]
    public void TheEpochAfterAMidEpochResumeCountsOnlyItsOwnImages()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 72, 16);   // 5 steps per epoch
        TrainOptions o = Tiny with { LogEvery = 1 };
        Trainer.Fit(o, TwoThreads, stores.Train, stores.Val, dir["through"], resume: false, new SilentProgress());
        Trainer.Fit(o with
        {
            MaxSteps = 2,
        }, TwoThreads, stores.Train, stores.Val, dir["resumed"], resume: false, new SilentProgress());
        Trainer.Fit(o, TwoThreads, stores.Train, stores.Val, dir["resumed"], resume: true, new SilentProgress());
        EpochMetrics[] a = MetricsLog.Read(dir["through"]).OfType<EpochMetrics>().ToArray();
        EpochMetrics[] b = MetricsLog.Read(dir["resumed"]).OfType<EpochMetrics>().ToArray();
        Assert.Equal(2, b.Length);
        for (int e = 0; e < 2; e++)
        {
            // Epoch 2 once began from epoch 1's carried sums (its loss a mix of both epochs' images).
            Assert.Equal((a[e].TrainLoss, a[e].TrainTop1Error, a[e].ValLoss),
                (b[e].TrainLoss, b[e].TrainTop1Error, b[e].ValLoss));
        }
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(0f)]
    [InlineData(-1f)]
    public void AnInputScaleThatIsNotAPositiveNumberIsRefused(float scale) =>
        Assert.Contains("--input-scale", Assert.Throws<ArgumentException>(() => (Tiny with
        {
            InputScale = scale,
        }).Validate()).Message);

    [Fact]
    public void FlagsBeyondTheMachineOrTheDataAreRefusedBeforeAnyFolder()
    {
        Assert.Contains("--pad", Assert.Throws<ArgumentException>(() => (Tiny with { Pad = -7 }).Validate()).Message);
        Assert.Contains("cores", Assert.Throws<ArgumentException>(() =>
            new MachineOptions(4 * Environment.ProcessorCount + 1).Validate()).Message);
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 48, 16);
        var e = Assert.Throws<ArgumentException>(() =>
            Trainer.Fit(Tiny with
            {
                BatchSize = 100000,
            }, TwoThreads, stores.Train, stores.Val, dir["run"], resume: false, new SilentProgress()));
        Assert.Contains("--batch-size 100000 needs about", e.Message);
        Assert.Contains("use at most", e.Message);
        Assert.False(Directory.Exists(dir["run"]));
    }
}
