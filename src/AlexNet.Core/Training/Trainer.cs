// §5 Learning: the training loop. Fit reads top to bottom, one epoch at a time:
//   TrainOneEpoch (for each batch: set ε → forward, loss, backward, the paper's update → log)
//   → Evaluate on the validation set (§6: centre crop) → EndEpoch (schedule, checkpoints, plots).
// One folder per run: options.json, metrics.jsonl, last.ckpt, best.ckpt, plots. How a step runs (the net alone, its
// replicas, §3.2's towers) is the run's engine (StepEngine.cs); the processes it runs among, its group (one, or MPI's
// ranks: Distributed/ProcessGroup.cs); the run's state, TrainingRun.cs. Nothing here names a strategy.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using AlexNet.Data;
using AlexNet.Distributed;
using AlexNet.Evaluation;
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Training;

/// <summary>How the library reports progress; the CLI draws it, tests ignore it.</summary>
public interface ITrainingProgress
{
    void EpochStarted(int epoch, int epochs, int stepsPerEpoch, int stepsDone);
    void Step(StepMetrics metrics);
    void EpochEnded(EpochMetrics metrics);
    void Message(string text);
}

public sealed class SilentProgress : ITrainingProgress
{
    public void EpochStarted(int epoch, int epochs, int stepsPerEpoch, int stepsDone) { }
    public void Step(StepMetrics metrics) { }
    public void EpochEnded(EpochMetrics metrics) { }
    public void Message(string text) { }
}

/// <param name="BestValidationError">+∞ when no epoch has been evaluated yet.</param>
public sealed record TrainResult(string RunDirectory, int Epochs, long Steps, EpochMetrics? Last,
    double BestValidationError, bool Stopped);

/// <summary>The loss became NaN or infinite: the run stops, the last good checkpoint is kept.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

public static class Trainer
{
    public const string OptionsFile = "options.json";
    public const string MetricsFile = MetricsLog.FileName;
    public const string LastCheckpoint = "last.ckpt";
    public const string BestCheckpoint = "best.ckpt";

    /// <summary>
    /// Trains a new run in <paramref name="runDir"/>, or continues the one there when <paramref name="resume"/> is set.
    /// </summary>
    public static TrainResult Fit(TrainOptions options, MachineOptions machine, ImageStore train,
        ImageStore val, string runDir, bool resume,
        ITrainingProgress progress, CancellationToken cancel = default)
    {
        machine.Validate();
        Compute.UseThreads(machine.Threads);
        using TrainingRun run = resume
            ? TrainingRun.Resume(options, machine, train, val, runDir, progress)
            : TrainingRun.Start(options, machine, train, val, runDir, progress);
        for (int epoch = run.EpochsDone + 1; epoch <= run.Options.Epochs && !run.Stopping(cancel); epoch++)
        {
            EpochTotals? totals = TrainOneEpoch(run, epoch, progress, cancel);
            if (totals is null)
            {
                break;   // stopped inside the epoch; last.ckpt holds the position
            }
            // the grouped net validates what was learned (§3.2's towers keep their own weights)
            run.Engine.Publish(run.Model);
            EvalResult? validation = Evaluate(run, run.Model, cancel);
            EvalResult? averaged = run.Ema is null || validation is null ? null
                : Evaluate(run, run.AveragedModel(), cancel);
            if (validation is null || run.Ema is not null && averaged is null)
            {
                // Stopped during validation: the position is the epoch's end, and a resume validates it.
                run.Save(epochsDone: epoch - 1, totals.Sums);
                break;
            }
            progress.EpochEnded(EndEpoch(run, epoch, totals, validation, averaged));
        }
        if (run.Options.ValSplit > 0 && run.EpochsDone == run.Options.Epochs)
        {
            ScoreTestSetOnce(run, progress);
        }
        return run.Result();
    }

    public const string TestResultFile = "test.json";

    /// <summary>
    /// With a held-out split, the run validated and chose on it; the test set is scored here once, when the run is
    /// complete, with the last weights (and their average with --ema), and never again for that run.
    /// </summary>
    private static void ScoreTestSetOnce(TrainingRun run, ITrainingProgress progress)
    {
        string path = Path.Combine(run.Directory, TestResultFile);
        if (File.Exists(path) || !run.IsLeader)
        {
            return;
        }
        (View[] views, string name) = Evaluator.Of(run.Options.ValViews);
        var results = new List<EvalResult>
        {
            Evaluator.Evaluate(new[] { run.Model }, run.Test, run.ValAugmentation, views, name),
        };
        if (run.Ema is not null)
        {
            results.Add(Evaluator.Evaluate(new[] { run.AveragedModel() }, run.Test, run.ValAugmentation, views, name) with
            {
                Views = $"{name}, weight average",
            });
        }
        Json.Write(path, results);
        progress.Message(
            $"Test set {run.Test.Directory}, scored once with the last weights: top-1 " +
            $"error {100 * results[0].Top1Error:F2}%, top-5 {100 * results[0].Top5Error:F2}% ({path}).");
    }

    /// <summary>
    /// One pass over the training set from the run's position; null when the run stopped inside the epoch.
    /// </summary>
    public static EpochTotals? TrainOneEpoch(TrainingRun run, int epoch,
        ITrainingProgress progress, CancellationToken cancel)
    {
        TrainOptions o = run.Options;
        int perEpoch = run.Loader.BatchesPerEpoch;
        run.Net.train();
        progress.EpochStarted(epoch, o.Epochs, perEpoch, run.StepInEpoch);
        var epochClock = Stopwatch.StartNew();
        var windowClock = Stopwatch.StartNew();
        using Tensor epochSums = tensor(run.Carried);           // loss sum, top-1 hits, top-5 hits, images
        double carriedImages = run.Carried[3];                  // trained before a resume: not in this epoch's img/s
        run.Carried = new double[4];                            // the next epoch starts from nothing
        using Tensor windowSums = zeros(4, ScalarType.Float64);
        // The loader is not given the token: a stop is taken between steps, where the position can be saved.
        foreach (Batch batch in run.Loader.TrainEpoch(o.Seed, epoch, run.StepInEpoch))
        {
            using (batch)
            {
                run.Sgd.LearningRate = run.Schedule.BeginStep(run.Step, run.TotalSteps);   // §5: ε for this update
                using (NewDisposeScope())
                {
                    var settings = new StepSettings(o.LabelSmoothing, o.ClipGradNorm,
                        () => run.Group.AverageGradients(run.Sgd.Parameters, (double)batch.Count / batch.GlobalCount));
                    if (batch.Count == 0)
                    {
                        // a rank whose share of a short last batch is empty
                        TrainingStep.RunEmpty(run.Sgd, settings.ReduceGradients, o.ClipGradNorm);
                    }
                    else
                    {
                        Mix? mix = Mixing.Apply(batch.Inputs, batch.Labels, o.MixupAlpha,
                            o.CutmixAlpha, run.RankSeed, run.Step);
                        (Tensor loss, Tensor logits) = run.Engine.Step(run.Sgd,
                            batch.Inputs, batch.Labels, settings, mix);
                        Tensor row = Sums(loss, logits, batch);
                        epochSums.add_(row);
                        windowSums.add_(row);
                    }
                    run.Ema?.Update();
                }
                Compute.ReleaseCustomFunctionWrappers();
            }
            run.Step++;
            run.StepInEpoch++;

            if (run.Step % o.LogEvery == 0 || run.StepInEpoch == perEpoch)
            {
                // Scalars leave the device only here.
                double[] w = windowSums.data<double>().ToArray();
                run.Group.Sum(w);   // every rank's images
                windowSums.zero_();
                run.CheckLoss(w, epoch);
                var m = new StepMetrics(epoch, run.Step, run.StepInEpoch, perEpoch, w[0] / w[3],
                    1 - w[1] / w[3], 1 - w[2] / w[3],
                    run.Sgd.LearningRate, w[3] / windowClock.Elapsed.TotalSeconds);   // all ranks' images
                windowClock.Restart();
                run.Log.Append(m);
                progress.Step(m);
            }
            if (run.StepInEpoch < perEpoch)
            {
                bool stop = run.Stopping(cancel);
                bool due = o.CheckpointEvery > 0 && run.Step % o.CheckpointEvery == 0
                    || o.CheckpointMinutes > 0 && run.SinceSave.Elapsed.TotalMinutes >= o.CheckpointMinutes;
                due = run.Group.Any(due);   // rank 0's clock decides for all: the sums below are a collective
                if (stop || due)
                {
                    double[] sums = epochSums.data<double>().ToArray();
                    run.Group.Sum(sums);
                    run.CheckLoss(sums, epoch);
                    run.Save(epochsDone: epoch - 1, sums);
                }
                if (stop)
                {
                    return null;
                }
            }
        }
        double[] e = epochSums.data<double>().ToArray();
        // and the images this process trained (none when resumed at its end)
        double[] t = { e[0], e[1], e[2], e[3], e[3] - carriedImages };
        run.Group.Sum(t);
        run.CheckLoss(t, epoch);
        double rate = t[4] > 0 ? t[4] / epochClock.Elapsed.TotalSeconds : double.NaN;
        return new EpochTotals(t[0] / t[3], 1 - t[1] / t[3], 1 - t[2] / t[3], rate, epochClock, t[..4]);
    }

    /// <summary>A batch's loss sum, top-1 and top-5 hits and image count, as one float64 row.</summary>
    private static Tensor Sums(Tensor loss, Tensor logits, Batch batch)
    {
        (Tensor top1, Tensor top5) = TopK.Correct(logits, batch.Labels);
        return stack(new[] { loss.cpu().to(ScalarType.Float64) * batch.Count, top1.cpu().to(ScalarType.Float64),
            top5.cpu().to(ScalarType.Float64), tensor((double)batch.Count) });
    }

    /// <summary>
    /// §6 on the validation set with the run's views; null when a stop signal came first (on any rank).
    /// </summary>
    public static EvalResult? Evaluate(TrainingRun run, AlexNetModel model, CancellationToken cancel)
    {
        (View[] views, string name) = Evaluator.Of(run.Options.ValViews);
        Func<AlexNetModel, Tensor, Tensor>? forward = run.Engine.Forward(model);
        EvalResult? Score(int[]? records)
        {
            try
            {
                return Evaluator.Evaluate(new[] { model }, run.Val, run.ValAugmentation, views, name,
                    batchSize: Math.Max(run.Options.BatchSize, 256), cancel: cancel,
                    records: records, forward: forward);
            }
            catch (OperationCanceledException)
            {
                return null;   // a validation can take minutes; a scheduler's stop must not wait for it
            }
        }
        IProcessGroup group = run.Group;
        if (group.Ranks == 1)
        {
            return Score(run.ValRecords);   // the full result, per-class errors and confusions included
        }
        // Sharded: each rank scores its slice of the validation records; the sums are added.
        int[] all = run.ValRecords ?? Enumerable.Range(0, run.Val.Count).ToArray();
        (int from, int to) = DataParallel.Share(all.Length, group.Rank, group.Ranks);
        EvalResult? mine = to > from ? Score(all[from..to]) : null;
        if (group.Any(to > from && mine is null))
        {
            return null;   // every rank abandons the validation together: the sums below are a collective
        }
        double[] sums = mine is null ? new double[4] : new[] { mine.Loss * mine.Count, mine.Top1Error * mine.Count,
            mine.Top5Error * mine.Count, mine.Count };
        group.Sum(sums);
        return new EvalResult((int)sums[3], sums[0] / sums[3], sums[1] / sums[3], sums[2] / sums[3], name, 1,
            Array.Empty<double>(), Array.Empty<ConfusedPair>());
    }

    /// <summary>
    /// The schedule learns the validation error (§5); the epoch is logged and checkpointed, best.ckpt kept, the curves
    /// redrawn.
    /// </summary>
    private static EpochMetrics EndEpoch(TrainingRun run, int epoch, EpochTotals train,
        EvalResult validation, EvalResult? averaged)
    {
        double lr = run.Sgd.LearningRate;
        run.Schedule.EndEpoch(epoch, validation.Top1Error);
        bool improved = validation.Top1Error < run.Best;
        run.Best = Math.Min(run.Best, validation.Top1Error);
        var m = new EpochMetrics(epoch, run.Step, train.Loss, train.Top1Error, train.Top5Error,
            validation.Loss, validation.Top1Error,
            validation.Top5Error, lr, train.ImagesPerSecond, train.Clock.Elapsed.TotalSeconds,
            averaged?.Top1Error, averaged?.Top5Error);
        run.Log.Append(m);
        run.StepInEpoch = 0;
        run.EpochsDone = epoch;
        run.Save(epochsDone: epoch, new double[4]);
        if (run.IsLeader)
        {
            if (improved)
            {
                File.Copy(run.LastPath, Path.Combine(run.Directory, BestCheckpoint), overwrite: true);
            }
            RunPlots.Write(run.Directory);
        }
        run.Last = m;
        return m;
    }

    /// <param name="Sums">Loss sum, top-1 hits, top-5 hits, images: what a checkpoint at the epoch's end
    /// carries.</param>
    public sealed record EpochTotals(double Loss, double Top1Error, double Top5Error, double ImagesPerSecond,
        Stopwatch Clock, double[] Sums);
}
