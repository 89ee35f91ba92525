// §5 Learning: the training loop. Fit reads top to bottom, one epoch at a time:
//   TrainOneEpoch (for each batch: set ε → forward, loss, backward, the paper's update → log)
//   → Evaluate on the validation set (§6: centre crop) → EndEpoch (schedule, checkpoints, plots).
// One folder per run: options.json, metrics.jsonl, last.ckpt, best.ckpt, plots.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using TorchSharp;
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

/// <summary>The machine a run happens to use: not part of the run's identity, so a resumed run takes today's.</summary>
/// <param name="Threads">Compute threads (libtorch's and our kernels').</param>
/// <param name="Workers">Background threads that assemble batches; the batches do not depend on how many.</param>
/// <param name="Parallel">Data parallel over MPI (`mpirun -np N`), or null for one process.</param>
/// <param name="Device">Where the net trains: cpu, cuda or cuda:N (Compute.ResolveDevice); the fused kernels run on CPU float32 only.</param>
/// <param name="Towers">§3.2: two devices, e.g. "cpu,cpu" or "cuda:0,cuda:1", each running one tower of the net (TowerNet); null: the grouped net on Device.</param>
public sealed record MachineOptions(int Threads, int Workers = 1, AlexNet.Distributed.DataParallel? Parallel = null, string Device = "cpu",
    string? Towers = null, bool ConcurrentTowers = false, int Replicas = 1)
{
    public static MachineOptions Default => new(Environment.ProcessorCount);

    public void Validate()
    {
        if (Threads < 1 || Workers < 1 || Replicas < 1)
        {
            throw new ArgumentException("--threads, --workers and --replicas must be at least 1.");
        }
        int cores = Environment.ProcessorCount;
        if (Threads > 4 * cores || Workers > 4 * cores || Replicas > 4 * cores)
        {
            throw new ArgumentException($"--threads {Threads}, --workers {Workers} or --replicas {Replicas} is more than this machine serves: it has {cores} " +
                $"cores, so use at most {4 * cores} threads, workers or replicas (the default, {cores} threads, is one per core).");
        }
        if (Towers is not null && Replicas > 1)
        {
            throw new ArgumentException("--towers splits the net, --replicas the batch: choose one.");
        }
        if (Towers is not null && Parallel is not null)
        {
            throw new ArgumentException("--towers splits one net across two devices in one process; it does not combine with data parallel over MPI (run one process).");
        }
    }
}

/// <param name="BestValidationError">+∞ when no epoch has been evaluated yet.</param>
public sealed record TrainResult(string RunDirectory, int Epochs, long Steps, EpochMetrics? Last, double BestValidationError, bool Stopped);

/// <summary>The loss became NaN or infinite: the run stops, the last good checkpoint is kept.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

public static class Trainer
{
    public const string OptionsFile = "options.json";
    public const string MetricsFile = MetricsLog.FileName;
    public const string LastCheckpoint = "last.ckpt";
    public const string BestCheckpoint = "best.ckpt";

    /// <summary>Trains a new run in <paramref name="runDir"/>, or continues the one there when <paramref name="resume"/> is set.</summary>
    public static TrainResult Fit(TrainOptions options, MachineOptions machine, ImageStore train, ImageStore val, string runDir, bool resume,
        ITrainingProgress progress, CancellationToken cancel = default)
    {
        machine.Validate();
        Compute.UseThreads(machine.Threads);
        using Run run = resume ? Run.Resume(options, machine, train, val, runDir, progress) : Run.Start(options, machine, train, val, runDir, progress);
        for (int epoch = run.EpochsDone + 1; epoch <= run.Options.Epochs && !run.Stopping(cancel); epoch++)
        {
            EpochTotals? totals = TrainOneEpoch(run, epoch, progress, cancel);
            if (totals is null)
            {
                break;   // stopped inside the epoch; last.ckpt holds the position
            }
            run.Towers?.WriteInto(run.Model);   // the grouped net validates what the towers learned
            EvalResult? validation = Evaluate(run, run.Model, cancel);
            EvalResult? averaged = run.Ema is null || validation is null ? null : Evaluate(run, run.AveragedModel(), cancel);
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
    static void ScoreTestSetOnce(Run run, ITrainingProgress progress)
    {
        string path = Path.Combine(run.Directory, TestResultFile);
        if (File.Exists(path) || !run.IsLeader)
        {
            return;
        }
        (View[] views, string name) = Evaluator.Of(run.Options.ValViews);
        var results = new List<EvalResult> { Evaluator.Evaluate(new[] { run.Model }, run.Test, run.ValAugmentation, views, name) };
        if (run.Ema is not null)
        {
            results.Add(Evaluator.Evaluate(new[] { run.AveragedModel() }, run.Test, run.ValAugmentation, views, name) with { Views = $"{name}, weight average" });
        }
        Json.Write(path, results);
        progress.Message($"Test set {run.Test.Directory}, scored once with the last weights: top-1 error {100 * results[0].Top1Error:F2}%, top-5 {100 * results[0].Top5Error:F2}% ({path}).");
    }

    /// <summary>
    /// The run's own options rule on resume, except a longer <c>Epochs</c> and a new <c>MaxSteps</c>. Returns them and
    /// every other option in <paramref name="requested"/> that differs from the run's (ignored), as "name value (run: value)";
    /// a shorter <c>Epochs</c> is named there too (a run is never shortened: --max-steps stops it early).
    /// </summary>
    public static (TrainOptions Options, string[] Ignored) ResumedOptions(TrainOptions saved, TrainOptions requested)
    {
        requested = requested with { InputScale = requested.InputScale ?? saved.InputScale };   // not given: the run's
        TrainOptions merged = saved with { Epochs = Math.Max(saved.Epochs, requested.Epochs), MaxSteps = requested.MaxSteps };
        JsonElement mine = JsonSerializer.SerializeToElement(merged, Json.Options);
        JsonElement theirs = JsonSerializer.SerializeToElement(requested with { Epochs = Math.Max(merged.Epochs, requested.Epochs) }, Json.Options);
        var names = mine.EnumerateObject().Select(p => p.Name).Union(theirs.EnumerateObject().Select(p => p.Name));
        string Value(JsonElement e, string name) => e.TryGetProperty(name, out JsonElement v) ? v.GetRawText() : "null";
        var ignored = names.Where(n => Value(mine, n) != Value(theirs, n))
            .Select(n => $"{n} {Value(theirs, n)} (run: {Value(mine, n)})").ToList();
        if (requested.Epochs < saved.Epochs)
        {
            ignored.Add($"epochs {requested.Epochs} (run: {saved.Epochs}; a run is never shortened, --max-steps stops it early)");
        }
        return (merged, ignored.ToArray());
    }

    /// <summary>One pass over the training set from the run's position; null when the run stopped inside the epoch.</summary>
    static EpochTotals? TrainOneEpoch(Run run, int epoch, ITrainingProgress progress, CancellationToken cancel)
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
                    var parallel = run.Parallel;
                    Action? reduce = parallel is null ? null : () => parallel.AverageGradients(run.Sgd.Parameters, (double)batch.Count / batch.GlobalCount);
                    if (batch.Count == 0)
                    {
                        TrainingStep.RunEmpty(run.Sgd, reduce!, o.ClipGradNorm);   // a rank whose share of a short last batch is empty
                    }
                    else
                    {
                        Mix? mix = Mixing.Apply(batch.Inputs, batch.Labels, o.MixupAlpha, o.CutmixAlpha, RankSeed(o, run.Parallel), run.Step);
                        (Tensor loss, Tensor logits) = run.Replicas is { } replicas
                            ? replicas.Run(run.Sgd, batch.Inputs, batch.Labels, o.LabelSmoothing, o.ClipGradNorm, reduce, mix)
                            : TrainingStep.Run(run.Net, run.Sgd, batch.Inputs, batch.Labels, o.LabelSmoothing, o.ClipGradNorm, reduce, mix);
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
                run.Parallel?.Sum(w);   // every rank's images
                windowSums.zero_();
                CheckLoss(w, epoch, run);
                var m = new StepMetrics(epoch, run.Step, run.StepInEpoch, perEpoch, w[0] / w[3], 1 - w[1] / w[3], 1 - w[2] / w[3],
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
                due = run.Parallel?.Any(due) ?? due;   // rank 0's clock decides for all: the sums below are a collective
                if (stop || due)
                {
                    double[] sums = epochSums.data<double>().ToArray();
                    run.Parallel?.Sum(sums);
                    CheckLoss(sums, epoch, run);
                    run.Save(epochsDone: epoch - 1, sums);
                }
                if (stop)
                {
                    return null;
                }
            }
        }
        double[] e = epochSums.data<double>().ToArray();
        double[] t = { e[0], e[1], e[2], e[3], e[3] - carriedImages };   // and the images this process trained (none when resumed at its end)
        run.Parallel?.Sum(t);
        CheckLoss(t, epoch, run);
        double rate = t[4] > 0 ? t[4] / epochClock.Elapsed.TotalSeconds : double.NaN;
        return new EpochTotals(t[0] / t[3], 1 - t[1] / t[3], 1 - t[2] / t[3], rate, epochClock, t[..4]);
    }

    /// <summary>A batch's loss sum, top-1 and top-5 hits and image count, as one float64 row.</summary>
    static Tensor Sums(Tensor loss, Tensor logits, Batch batch)
    {
        (Tensor top1, Tensor top5) = TopK.Correct(logits, batch.Labels);
        return stack(new[] { loss.cpu().to(ScalarType.Float64) * batch.Count, top1.cpu().to(ScalarType.Float64),
            top5.cpu().to(ScalarType.Float64), tensor((double)batch.Count) });
    }

    /// <summary>§6 on the validation set with the run's views; null when a stop signal came first (on any rank).</summary>
    static EvalResult? Evaluate(Run run, AlexNetModel model, CancellationToken cancel)
    {
        (View[] views, string name) = Evaluator.Of(run.Options.ValViews);
        // The net itself on the replicas' lanes, as it trains (the weight average has no replicas).
        Func<AlexNetModel, Tensor, Tensor>? forward = run.Replicas is { } replicas && model == run.Model ? (_, x) => replicas.Infer(x) : null;
        EvalResult? Score(int[]? records)
        {
            try
            {
                return Evaluator.Evaluate(new[] { model }, run.Val, run.ValAugmentation, views, name,
                    batchSize: Math.Max(run.Options.BatchSize, 256), cancel: cancel, records: records, forward: forward);
            }
            catch (OperationCanceledException)
            {
                return null;   // a validation can take minutes; a scheduler's stop must not wait for it
            }
        }
        if (run.Parallel is not { } parallel)
        {
            return Score(run.ValRecords);
        }
        // Sharded: each rank scores its slice of the validation records; the sums are added.
        int[] all = run.ValRecords ?? Enumerable.Range(0, run.Val.Count).ToArray();
        (int from, int to) = AlexNet.Distributed.DataParallel.Share(all.Length, parallel.Rank, parallel.Ranks);
        EvalResult? mine = to > from ? Score(all[from..to]) : null;
        if (parallel.Any(to > from && mine is null))
        {
            return null;   // every rank abandons the validation together: the sums below are a collective
        }
        double[] sums = mine is null ? new double[4] : new[] { mine.Loss * mine.Count, mine.Top1Error * mine.Count, mine.Top5Error * mine.Count, mine.Count };
        parallel.Sum(sums);
        return new EvalResult((int)sums[3], sums[0] / sums[3], sums[1] / sums[3], sums[2] / sums[3], name, 1,
            Array.Empty<double>(), Array.Empty<ConfusedPair>());
    }

    /// <summary>The schedule learns the validation error (§5); the epoch is logged and checkpointed, best.ckpt kept, the curves redrawn.</summary>
    static EpochMetrics EndEpoch(Run run, int epoch, EpochTotals train, EvalResult validation, EvalResult? averaged)
    {
        double lr = run.Sgd.LearningRate;
        run.Schedule.EndEpoch(epoch, validation.Top1Error);
        bool improved = validation.Top1Error < run.Best;
        run.Best = Math.Min(run.Best, validation.Top1Error);
        var m = new EpochMetrics(epoch, run.Step, train.Loss, train.Top1Error, train.Top5Error, validation.Loss, validation.Top1Error,
            validation.Top5Error, lr, train.ImagesPerSecond, train.Clock.Elapsed.TotalSeconds, averaged?.Top1Error, averaged?.Top5Error);
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

    /// <summary>Each rank's own stream for dropout and mixing; rank 0's (and a single process's) is the run's seed.</summary>
    static long RankSeed(TrainOptions o, AlexNet.Distributed.DataParallel? parallel) => o.Seed + 7919L * (parallel?.Rank ?? 0);

    /// <param name="Sums">Loss sum, top-1 hits, top-5 hits, images: what a checkpoint at the epoch's end carries.</param>
    sealed record EpochTotals(double Loss, double Top1Error, double Top5Error, double ImagesPerSecond, Stopwatch Clock, double[] Sums);

    /// <summary>Everything a run holds while it trains: the net, the optimiser, the schedule, the data and its position.</summary>
    sealed class Run : IDisposable
    {
        public required TrainOptions Options { get; init; }
        public required string Directory { get; init; }
        public required AlexNetModel Model { get; init; }

        /// <summary>With --towers, §3.2's two towers: they train (Sgd holds their parameters); Model gets their weights before each validation and checkpoint.</summary>
        public TowerNet? Towers { get; init; }

        /// <summary>What each training step runs forward and backward: the towers, or the grouped net.</summary>
        public nn.Module<Tensor, Tensor> Net => Towers is null ? Model : Towers;

        /// <summary>Not in the paper: each batch split across copies of the net on their own threads (--replicas), or null.</summary>
        public Replicas? Replicas { get; init; }

        public required PaperSgd Sgd { get; init; }
        public required LearningRateSchedule Schedule { get; init; }
        public required BatchLoader Loader { get; init; }
        public required ImageStore Train { get; init; }
        /// <summary>What the run validates on: the val store, or with --val-split the held-out part of the training store.</summary>
        public required ImageStore Val { get; init; }
        public int[]? ValRecords { get; init; }

        /// <summary>The test set, scored once at the end when a held-out split is the validation set.</summary>
        public required ImageStore Test { get; init; }
        public required Augmentation ValAugmentation { get; init; }
        public required MetricsLog Log { get; init; }
        public WeightEma? Ema { get; init; }
        AlexNetModel? _averaged;

        /// <summary>A second net holding the weight average, for evaluating it.</summary>
        public AlexNetModel AveragedModel()
        {
            if (_averaged is null)
            {
                _averaged = new AlexNetModel(Model.Architecture, Options.Seed).to(Model.Device);
                _averaged.Precision = Model.Precision;
            }
            Ema!.CopyTo(_averaged);
            return _averaged;
        }

        public int EpochsDone { get; set; }
        public int StepInEpoch { get; set; }
        public long Step { get; set; }
        public double Best { get; set; } = double.PositiveInfinity;
        public double[] Carried { get; set; } = new double[4];
        public EpochMetrics? Last { get; set; }

        /// <summary>Time since last.ckpt was written (for --checkpoint-minutes).</summary>
        public Stopwatch SinceSave { get; } = Stopwatch.StartNew();

        /// <summary>The step last.ckpt holds, or null while this run has written none.</summary>
        public long? SavedStep { get; set; }

        /// <summary>The run folder's lock (rank 0, or the only process), held while the run lives.</summary>
        public RunFolder? Folder { get; set; }

        /// <summary>The training store's RunFolder.Fingerprint, saved in every checkpoint.</summary>
        public required string TrainData { get; init; }

        public string LastPath => Path.Combine(Directory, LastCheckpoint);

        /// <summary>The poly schedule's T: all steps of the run (a resume with more --epochs stretches it).</summary>
        public long TotalSteps => (long)Options.Epochs * Loader.BatchesPerEpoch;

        bool ReachedMaxSteps => Options.MaxSteps > 0 && Step >= Options.MaxSteps;

        /// <summary>Data parallel over MPI, or null.</summary>
        public AlexNet.Distributed.DataParallel? Parallel { get; init; }

        /// <summary>Rank 0 (or the only process): the one that writes the run folder.</summary>
        public bool IsLeader => Parallel?.IsLeader ?? true;

        /// <summary>Every rank stops at the same step: a stop signal seen by any rank stops all.</summary>
        public bool Stopping(CancellationToken cancel)
        {
            bool stop = ReachedMaxSteps || cancel.IsCancellationRequested;
            return Parallel?.Any(stop) ?? stop;
        }

        public static Run Start(TrainOptions options, MachineOptions machine, ImageStore train, ImageStore val, string runDir, ITrainingProgress progress)
        {
            options.Validate();
            bool leader = machine.Parallel?.IsLeader ?? true;
            RunFolder? folder = null;
            string? aside = null;
            void Prepare()
            {
                folder = RunFolder.Lock(runDir, create: true);
                aside = folder.PrepareForNewRun();
            }
            Run run;
            try
            {
                run = Create(options, machine, train, val, runDir, schedule: null, leader ? Prepare : null);
            }
            catch
            {
                folder?.Dispose();
                throw;
            }
            run.Folder = folder;
            // Dropout masks (§4.2) draw from libtorch's generator; each rank its own stream, rank 0 the single process's.
            torch.random.manual_seed(RankSeed(options, machine.Parallel));
            if (leader)
            {
                Json.Write(Path.Combine(runDir, OptionsFile), run.Options);
            }
            if (aside is not null)
            {
                progress.Message($"{runDir} held the log of a run that stopped before its first checkpoint: kept as {aside}; starting anew.");
            }
            return run;
        }

        public static Run Resume(TrainOptions requested, MachineOptions machine, ImageStore train, ImageStore val, string runDir,
            ITrainingProgress progress)
        {
            bool leader = machine.Parallel?.IsLeader ?? true;
            if (!System.IO.Directory.Exists(runDir))
            {
                throw new DirectoryNotFoundException($"{runDir} does not exist: --resume continues a run folder (leave --resume out to start one).");
            }
            RunFolder? folder = leader ? RunFolder.Lock(runDir, create: false) : null;
            try
            {
                return Resume(requested, machine, train, val, runDir, progress, folder);
            }
            catch
            {
                folder?.Dispose();
                throw;
            }
        }

        static Run Resume(TrainOptions requested, MachineOptions machine, ImageStore train, ImageStore val, string runDir,
            ITrainingProgress progress, RunFolder? folder)
        {
            string lastPath = folder?.CheckpointToResume() ?? Path.Combine(runDir, LastCheckpoint);
            RunState saved = Checkpoint.ReadState(lastPath);
            RunFolder.CheckSameRanks(saved, machine.Parallel?.Ranks ?? 1, runDir);
            RunFolder.CheckSameData(saved, train, runDir);
            (TrainOptions options, string[] ignored) = ResumedOptions(saved.Options, requested);
            if (ignored.Length > 0)
            {
                progress.Message($"--resume continues {runDir} with its own options; ignored: {string.Join(", ", ignored)}.");
            }
            if (folder is not null)
            {
                int dropped = MetricsLog.CutBackTo(runDir, saved.Epoch, saved.Step);
                if (dropped > 0)
                {
                    progress.Message($"{MetricsFile}: {dropped} line(s) logged after the checkpoint's step {saved.Step} removed; those steps run again.");
                }
                Json.Write(Path.Combine(runDir, OptionsFile), options);   // a later bare --resume continues what this one said
            }
            Run run = Create(options, machine, train, val, runDir, saved.Schedule, prepare: null, saved.Architecture);
            run.Folder = folder;
            run.SavedStep = saved.Step;
            if (run.Towers is null)
            {
                Checkpoint.LoadInto(lastPath, saved, run.Model, run.Sgd, run.Ema);
            }
            else
            {
                // The checkpoint is the grouped net's: its weights and momentum are read in that layout, then split to the towers.
                Tensor[] velocity = run.Model.parameters().Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
                Checkpoint.LoadInto(lastPath, saved, run.Model, velocity, run.Ema);
                run.Towers.ReadFrom(run.Model);
                run.Towers.SplitInto(run.Model, velocity, run.Sgd.Velocity);
                foreach (Tensor v in velocity)
                {
                    v.Dispose();
                }
            }
            run.EpochsDone = saved.Epoch;
            run.StepInEpoch = saved.StepInEpoch;
            run.Step = saved.Step;
            run.Best = saved.BestValidationError;
            run.Carried = run.IsLeader ? saved.EpochAccumulators : new double[4];   // the saved sums are all ranks'; rank 0 carries them
            using Tensor rng = tensor(Convert.FromBase64String(saved.RngState));
            torch.random.set_rng_state(rng);
            if (machine.Parallel is { Rank: > 0 } p)
            {
                torch.random.manual_seed(RankSeed(options, p) + run.Step);   // the other ranks' dropout streams, fixed by the position
            }
            machine.Parallel?.Broadcast(run.Model);
            progress.Message(run.ReachedMaxSteps
                ? $"{runDir} is already at step {run.Step} of --max-steps {options.MaxSteps}: nothing to do (raise --max-steps to go on)."
                : $"Resumed {runDir} at epoch {run.EpochsDone + 1}, step {run.Step}.");
            return run;
        }

        /// <summary>Checks the data and builds the net before <paramref name="prepare"/> makes the folder: a bad flag leaves none behind.</summary>
        /// <param name="resumed">A resumed run's saved net: it keeps its LRN (a run from before LrnParams.Towers normalises across the towers).</param>
        static Run Create(TrainOptions options, MachineOptions machine, ImageStore train, ImageStore val, string runDir, ScheduleState? schedule,
            Action? prepare, Architecture? resumed = null)
        {
            CheckData(train, val);
            LowPrecision.Check(options.Precision, Compute.ResolveDevice(machine.Device));
            machine.Parallel?.Agree("the options and data", $"{options.ToJson()} train {train.Count}×{train.Height} val {val.Count}×{val.Height} resume {schedule is not null}");
            AugmentOptions augment = options.Augment(train.Height, train.Width);
            RunState? source = options.InitFrom is string init ? Checkpoint.ReadState(init) : null;
            Architecture arch = source is null
                ? options.Architecture(train.ClassCount, train.Channels, augment.Crop)
                : FineTuning.Architecture(options, source, train.ClassCount, train.Channels, augment.Crop);
            // Not given: the fine-tuned checkpoint's scale, or the one the net's init expects (Recipes.InputScaleFor).
            options = options with { InputScale = options.InputScale ?? source?.Options.InputScale ?? Recipes.InputScaleFor(arch.Init) };
            augment = options.Augment(train.Height, train.Width);
            CheckBatchFits(options.BatchSize, arch);
            if (resumed is not null && Json.Serialize(arch with { Lrn = resumed.Lrn }) == Json.Serialize(resumed))
            {
                arch = resumed;
            }
            (int[]? trainRecords, int[]? heldOut) = options.ValSplit > 0 ? BatchLoader.Split(train.Count, options.ValSplit, options.Seed) : (null, null);
            if (machine.Towers is string placement)
            {
                if (options.Ema > 0 || options.FreezeFeatures || options.PretrainedLrFactor != 1)
                {
                    throw new ArgumentException("--towers trains every weight at one ε without a weight average: leave out --ema, --freeze and --pretrained-lr-factor.");
                }
                TowerNet.Check(arch, placement);
            }
            prepare?.Invoke();
            var model = new AlexNetModel(arch, options.Seed);
            model.to(Compute.ResolveDevice(machine.Device));   // before the optimiser: its momentum buffers are made beside the weights
            model.Precision = options.Precision;
            // A resumed run's weights come from its own last.ckpt; only a new one starts from InitFrom's.
            ISet<string> pretrained = source is not null && schedule is null
                ? FineTuning.LoadPretrained(options.InitFrom!, source, model)
                : FineTuning.PretrainedKeys(model, source);
            (TorchSharp.Modules.Parameter[] learned, double[] factors) = FineTuning.Parameters(model, options, pretrained);
            machine.Parallel?.Broadcast(model);   // rank 0's initial weights everywhere (DDP's first step)
            TowerNet? towers = null;
            if (machine.Towers is string devices)
            {
                towers = TowerNet.Place(model, devices, machine.Threads, machine.ConcurrentTowers);
                learned = towers.parameters().ToArray();
                factors = Enumerable.Repeat(1.0, learned.Length).ToArray();
            }
            return new Run
            {
                Options = options,
                Directory = runDir,
                Model = model,
                Towers = towers,
                Replicas = machine.Replicas > 1 ? new Replicas(model, machine.Replicas, machine.Threads) : null,
                Sgd = new PaperSgd(learned, options.LearningRate, options.Momentum, options.WeightDecay, options.Optimizer, options.Nesterov, rateFactors: factors),
                Schedule = new LearningRateSchedule(options, schedule),
                Loader = new BatchLoader(train, new Augmentation(train, augment),
                    new LoaderOptions(options.BatchSize, machine.Workers, Limit: options.TrainLimit, Records: trainRecords,
                        Rank: machine.Parallel?.Rank ?? 0, Ranks: machine.Parallel?.Ranks ?? 1)),
                Train = train,
                Val = heldOut is null ? val : train,
                ValRecords = heldOut,
                Test = val,
                ValAugmentation = new Augmentation(val.Channels, val.Height, val.Width, train.Mean, train.Manifest.Pca, augment),
                Log = machine.Parallel is { IsLeader: false } ? MetricsLog.Discard() : new MetricsLog(runDir),
                Parallel = machine.Parallel,
                Ema = options.Ema > 0 ? new WeightEma(model, options.Ema) : null,
                TrainData = RunFolder.Fingerprint(train),
            };
        }

        public void Save(int epochsDone, double[] epochSums)
        {
            if (!IsLeader)
            {
                return;
            }
            var state = new RunState(Options, Model.Architecture, epochsDone, StepInEpoch, Step, Schedule.State, epochSums, Best,
                RngState(), Train.Manifest.Classes.Select(c => c.Name).ToArray(), Train.Mean, Train.Height, Train.Width,
                Array.Empty<TensorEntry>(), Parallel?.Ranks ?? 1, TrainData);
            if (Towers is null)
            {
                Checkpoint.Save(LastPath, state, Model, Sgd, Ema);
            }
            else
            {
                Towers.WriteInto(Model);
                Tensor[] velocity = Towers.Join(Model, Sgd.Velocity);   // the grouped net's layout: the checkpoint is interchangeable
                Checkpoint.Save(LastPath, state, Model, velocity, Ema);
                foreach (Tensor v in velocity)
                {
                    v.Dispose();
                }
            }
            SinceSave.Restart();
            SavedStep = Step;
        }

        public TrainResult Result() => new(Directory, EpochsDone, Step, Last, Best, Stopped: EpochsDone < Options.Epochs);

        public void Dispose()
        {
            Ema?.Dispose();
            _averaged?.Dispose();
            Log.Dispose();
            Sgd.Dispose();
            Towers?.Dispose();
            Replicas?.Dispose();
            Model.Dispose();
            Folder?.Dispose();
        }
    }

    static string RngState()
    {
        using Tensor state = torch.random.get_rng_state();
        return Convert.ToBase64String(state.bytes.ToArray());
    }

    /// <summary>
    /// A batch whose activations cannot fit in this machine's memory would be killed mid-step by the kernel: refused
    /// first. Each layer's output is kept for the backward pass and gets a gradient of its size, and the fused and
    /// oneDNN kernels take about as much again as workspace: ~4 floats per output value.
    /// </summary>
    static void CheckBatchFits(int batchSize, Architecture arch)
    {
        long perImage = ModelSummary.Of(arch).Rows.Sum(r => (long)r.Channels * r.Height * r.Width) * sizeof(float) * 4;
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (perImage * batchSize > available)
        {
            throw new ArgumentException($"--batch-size {batchSize} needs about {perImage * (double)batchSize / (1L << 30):F0} GB for the activations of " +
                $"{arch.Variant} at {arch.InputSize}×{arch.InputSize}; this machine has {available / (double)(1L << 30):F0} GB: use at most {available / perImage}.");
        }
    }

    static void CheckData(ImageStore train, ImageStore val)
    {
        if (train.Channels != val.Channels || train.Height != val.Height || train.Width != val.Width || train.ClassCount != val.ClassCount)
        {
            throw new ArgumentException($"the validation store {val.Directory} ({val.Channels}×{val.Height}×{val.Width}, {val.ClassCount} classes) " +
                $"does not match the training store {train.Directory} ({train.Channels}×{train.Height}×{train.Width}, {train.ClassCount} classes).");
        }
    }

    /// <summary>
    /// A loss per image above this many times a uniform guess's (ln K) is a run that has exploded, even where it is
    /// not yet NaN (seen: 2.8e6 with 90% error, at an input scale too large for the net's init).
    /// </summary>
    public const double ExplodedLossFactor = 20;

    /// <summary>Stops the run when the loss of <paramref name="sums"/> (loss sum, hits, hits, images) is NaN, infinite or exploded.</summary>
    static void CheckLoss(double[] sums, int epoch, Run run)
    {
        double loss = sums[3] > 0 ? sums[0] / sums[3] : sums[0];
        double limit = ExplodedLossFactor * Math.Log(Math.Max(2, run.Model.Architecture.Classes));
        if (double.IsFinite(loss) && loss <= limit)
        {
            return;
        }
        string what = double.IsNaN(loss) ? "NaN" : double.IsInfinity(loss) ? "infinite" : $"{loss:G3} (over {ExplodedLossFactor}× a uniform guess's ln K = {limit:F1})";
        string kept = run.SavedStep is long saved
            ? $"{run.LastPath} holds the state of step {saved}, before it (a resume would repeat this: its options are the run's)"
            : $"no checkpoint was written, so running the same command again starts {run.Directory} anew";
        throw new TrainingDivergedException($"the loss became {what} by step {run.Step} (epoch {epoch}); training stopped, and {kept}. " +
            $"Start a run with a lower --lr (now {run.Options.LearningRate}) or a smaller --input-scale (now {run.Options.InputScale}), or check the data.");
    }
}
