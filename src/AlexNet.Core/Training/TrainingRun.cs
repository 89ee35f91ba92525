// A training run's state while it lives (§5): the net, its step engine and process group, the optimiser, the schedule,
// the data, the position, and the run folder. Start makes a new run, Resume continues one from last.ckpt with its own
// options (ResumedOptions names what was ignored); Save writes last.ckpt whatever the engine.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading;
using AlexNet.Data;
using AlexNet.Distributed;
using AlexNet.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Training;

/// <summary>
/// The machine a run happens to use: not part of the run's identity, so a resumed run takes today's.
/// </summary>
/// <param name="Threads">Compute threads (libtorch's and our kernels').</param>
/// <param name="Workers">Background threads that assemble batches; the batches do not depend on how many.</param>
/// <param name="Parallel">Data parallel over MPI (`mpirun -np N`), or null for one process.</param>
/// <param name="Device">Where the net trains: cpu, cuda or cuda:N (Compute.ResolveDevice); the fused kernels run on CPU
/// float32 only.</param>
/// <param name="Towers">§3.2: two devices, e.g. "cpu,cpu" or "cuda:0,cuda:1", each running one tower of the net
/// (TowerNet); null: the grouped net on Device.</param>
public sealed record MachineOptions(int Threads, int Workers = 1,
    AlexNet.Distributed.DataParallel? Parallel = null, string Device = "cpu",
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
            throw new ArgumentException(
                $"--threads {Threads}, --workers {Workers} or --replicas {Replicas} is more than this machine " +
                $"serves: it has {cores} " +
                $"cores, so use at most {4 * cores} threads, workers or replicas (the default, {cores} threads, is " +
                "one per core).");
        }
        if (Towers is not null && Replicas > 1)
        {
            throw new ArgumentException("--towers splits the net, --replicas the batch: choose one.");
        }
        if (Towers is not null && Parallel is not null)
        {
            throw new ArgumentException(
                "--towers splits one net across two devices in one process; it does not combine with data parallel " +
                "over MPI (run one process).");
        }
    }
}

/// <summary>
/// Everything a run holds while it trains: the net, the optimiser, the schedule, the data and its position.
/// </summary>
public sealed class TrainingRun : IDisposable
{
    public required TrainOptions Options { get; init; }
    public required string Directory { get; init; }
    public required AlexNetModel Model { get; init; }

    /// <summary>How each step runs (StepEngine.cs): the net alone, its replicas, or §3.2's towers.</summary>
    public required IStepEngine Engine { get; init; }

    /// <summary>What each training step runs forward and backward.</summary>
    public nn.Module<Tensor, Tensor> Net => Engine.Net;

    public required PaperSgd Sgd { get; init; }
    public required LearningRateSchedule Schedule { get; init; }
    public required BatchLoader Loader { get; init; }
    public required ImageStore Train { get; init; }
    /// <summary>
    /// What the run validates on: the val store, or with --val-split the held-out part of the training store.
    /// </summary>
    public required ImageStore Val { get; init; }
    public int[]? ValRecords { get; init; }

    /// <summary>The test set, scored once at the end when a held-out split is the validation set.</summary>
    public required ImageStore Test { get; init; }
    public required Augmentation ValAugmentation { get; init; }
    public required MetricsLog Log { get; init; }
    public WeightEma? Ema { get; init; }
    private AlexNetModel? _averaged;

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

    public string LastPath => Path.Combine(Directory, Trainer.LastCheckpoint);

    /// <summary>The poly schedule's T: all steps of the run (a resume with more --epochs stretches it).</summary>
    public long TotalSteps => (long)Options.Epochs * Loader.BatchesPerEpoch;

    private bool ReachedMaxSteps => Options.MaxSteps > 0 && Step >= Options.MaxSteps;

    /// <summary>The processes the run trains among (ProcessGroup.cs): one, or MPI's ranks.</summary>
    public required IProcessGroup Group { get; init; }

    /// <summary>Rank 0 (or the only process): the one that writes the run folder.</summary>
    public bool IsLeader => Group.IsLeader;

    /// <summary>Every rank stops at the same step: a stop signal seen by any rank stops all.</summary>
    public bool Stopping(CancellationToken cancel) => Group.Any(ReachedMaxSteps || cancel.IsCancellationRequested);

    /// <summary>
    /// Each rank's own stream for dropout and mixing; rank 0's (and a single process's) is the run's seed.
    /// </summary>
    public long RankSeed => RankSeedOf(Options, Group);

    private static long RankSeedOf(TrainOptions o, IProcessGroup group) => o.Seed + 7919L * group.Rank;

    public static TrainingRun Start(TrainOptions options, MachineOptions machine, ImageStore train, ImageStore val,
        string runDir, ITrainingProgress progress)
    {
        options.Validate();
        bool leader = GroupOf(machine).IsLeader;
        RunFolder? folder = null;
        string? aside = null;
        void Prepare()
        {
            folder = RunFolder.Lock(runDir, create: true);
            aside = folder.PrepareForNewRun();
        }
        TrainingRun run;
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
        torch.random.manual_seed(RankSeedOf(options, GroupOf(machine)));
        if (leader)
        {
            Json.Write(Path.Combine(runDir, Trainer.OptionsFile), run.Options);
        }
        if (aside is not null)
        {
            progress.Message(
                $"{runDir} held the log of a run that stopped before its first checkpoint: kept as {aside}; starting " +
                "anew.");
        }
        return run;
    }

    public static TrainingRun Resume(TrainOptions requested, MachineOptions machine, ImageStore train,
        ImageStore val, string runDir,
        ITrainingProgress progress)
    {
        bool leader = GroupOf(machine).IsLeader;
        if (!System.IO.Directory.Exists(runDir))
        {
            throw new DirectoryNotFoundException(
                $"{runDir} does not exist: --resume continues a run folder (leave --resume out to start one).");
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

    private static TrainingRun Resume(TrainOptions requested, MachineOptions machine, ImageStore train,
        ImageStore val, string runDir,
        ITrainingProgress progress, RunFolder? folder)
    {
        string lastPath = folder?.CheckpointToResume() ?? Path.Combine(runDir, Trainer.LastCheckpoint);
        RunState saved = Checkpoint.ReadState(lastPath);
        RunFolder.CheckSameRanks(saved, GroupOf(machine).Ranks, runDir);
        RunFolder.CheckSameData(saved, train, runDir);
        (TrainOptions options, string[] ignored) = ResumedOptions(saved.Options, requested);
        if (ignored.Length > 0)
        {
            progress.Message(
                $"--resume continues {runDir} with its own options; ignored: {string.Join(", ", ignored)}.");
        }
        if (folder is not null)
        {
            int dropped = MetricsLog.CutBackTo(runDir, saved.Epoch, saved.Step);
            if (dropped > 0)
            {
                progress.Message(
                    $"{Trainer.MetricsFile}: {dropped} line(s) logged after the checkpoint's step {saved.Step} " +
                    "removed; those steps run again.");
            }
            // a later bare --resume continues what this one said
            Json.Write(Path.Combine(runDir, Trainer.OptionsFile), options);
        }
        TrainingRun run = Create(options, machine, train, val, runDir, saved.Schedule,
            prepare: null, saved.Architecture);
        run.Folder = folder;
        run.SavedStep = saved.Step;
        run.Engine.Load(lastPath, saved, run.Model, run.Sgd, run.Ema);
        run.EpochsDone = saved.Epoch;
        run.StepInEpoch = saved.StepInEpoch;
        run.Step = saved.Step;
        run.Best = saved.BestValidationError;
        // the saved sums are all ranks'; rank 0 carries them
        run.Carried = run.IsLeader ? saved.EpochAccumulators : new double[4];
        using Tensor rng = tensor(Convert.FromBase64String(saved.RngState));
        torch.random.set_rng_state(rng);
        if (run.Group.Rank > 0)
        {
            // the other ranks' dropout streams, fixed by the position
            torch.random.manual_seed(run.RankSeed + run.Step);
        }
        run.Group.Broadcast(run.Model);
        progress.Message(run.ReachedMaxSteps
            ? $"{runDir} is already at step {run.Step} of --max-steps {options.MaxSteps}: nothing to do (raise " +
            "--max-steps to go on)."
            : $"Resumed {runDir} at epoch {run.EpochsDone + 1}, step {run.Step}.");
        return run;
    }

    /// <summary>
    /// Checks the data and builds the net before <paramref name="prepare"/> makes the folder: a bad flag leaves none
    /// behind.
    /// </summary>
    /// <param name="resumed">A resumed run's saved net: it keeps its LRN (a run from before LrnParams.Towers normalises
    /// across the towers).</param>
    private static TrainingRun Create(TrainOptions options, MachineOptions machine, ImageStore train, ImageStore val,
        string runDir, ScheduleState? schedule,
        Action? prepare, Architecture? resumed = null)
    {
        CheckData(train, val);
        LowPrecision.Check(options.Precision, Compute.ResolveDevice(machine.Device));
        IProcessGroup group = GroupOf(machine);
        group.Agree("the options and data",
            $"{options.ToJson()} train {train.Count}×{train.Height} val {val.Count}×{val.Height} " +
            $"resume {schedule is not null}");
        AugmentOptions augment = options.Augment(train.Height, train.Width);
        RunState? source = options.InitFrom is string init ? Checkpoint.ReadState(init) : null;
        Architecture arch = source is null
            ? options.Architecture(train.ClassCount, train.Channels, augment.Crop)
            : FineTuning.Architecture(options, source, train.ClassCount, train.Channels, augment.Crop);
        // Not given: the fine-tuned checkpoint's scale, or the one the net's init expects
        // (Initialization.InputScaleFor).
        options = options with
        {
            InputScale = options.InputScale ?? source?.Options.InputScale ?? Initialization.InputScaleFor(arch.Init),
        };
        augment = options.Augment(train.Height, train.Width);
        CheckBatchFits(options.BatchSize, arch);
        if (resumed is not null && Json.Serialize(arch with { Lrn = resumed.Lrn }) == Json.Serialize(resumed))
        {
            arch = resumed;
        }
        (int[]? trainRecords, int[]? heldOut) = options.ValSplit > 0 ? BatchLoader.Split(train.Count,
            options.ValSplit, options.Seed) : (null, null);
        if (machine.Towers is string placement)
        {
            if (options.Ema > 0 || options.FreezeFeatures || options.PretrainedLrFactor != 1)
            {
                throw new ArgumentException(
                    "--towers trains every weight at one ε without a weight average: leave out --ema, --freeze and " +
                    "--pretrained-lr-factor.");
            }
            TowerNet.Check(arch, placement);
        }
        prepare?.Invoke();
        var model = new AlexNetModel(arch, options.Seed);
        // before the optimiser: its momentum buffers are made beside the weights
        model.to(Compute.ResolveDevice(machine.Device));
        model.Precision = options.Precision;
        // A resumed run's weights come from its own last.ckpt; only a new one starts from InitFrom's.
        ISet<string> pretrained = source is not null && schedule is null
            ? FineTuning.LoadPretrained(options.InitFrom!, source, model)
            : FineTuning.PretrainedKeys(model, source);
        (TorchSharp.Modules.Parameter[] learned, double[] factors) = FineTuning.Parameters(model, options, pretrained);
        group.Broadcast(model);   // rank 0's initial weights everywhere (DDP's first step)
        TowerNet? towers = null;
        if (machine.Towers is string devices)
        {
            towers = TowerNet.Place(model, devices, machine.Threads, machine.ConcurrentTowers);
            learned = towers.parameters().ToArray();
            factors = Enumerable.Repeat(1.0, learned.Length).ToArray();
        }
        return new TrainingRun
        {
            Options = options,
            Directory = runDir,
            Model = model,
            Engine = StepEngine.For(model, towers, machine.Replicas, machine.Threads),
            Sgd = new PaperSgd(learned, options.LearningRate, options.Momentum, options.WeightDecay, options.Optimizer,
                options.Nesterov, rateFactors: factors),
            Schedule = new LearningRateSchedule(options, schedule),
            Loader = new BatchLoader(train, new Augmentation(train, augment),
                new LoaderOptions(options.BatchSize, machine.Workers, Limit: options.TrainLimit, Records: trainRecords,
                    Rank: group.Rank, Ranks: group.Ranks)),
            Train = train,
            Val = heldOut is null ? val : train,
            ValRecords = heldOut,
            Test = val,
            ValAugmentation = new Augmentation(val.Channels, val.Height, val.Width,
                train.Mean, train.Manifest.Pca, augment),
            Log = group.IsLeader ? new MetricsLog(runDir) : MetricsLog.Discard(),
            Group = group,
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
        var state = new RunState(Options, Model.Architecture, epochsDone, StepInEpoch, Step,
            Schedule.State, epochSums, Best,
            RngState(), Train.Manifest.Classes.Select(c => c.Name).ToArray(), Train.Mean, Train.Height, Train.Width,
            Array.Empty<AlexNet.Inference.TensorEntry>(), Group.Ranks, TrainData);
        Engine.Save(LastPath, state, Model, Sgd, Ema);
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
        Engine.Dispose();
        Model.Dispose();
        Folder?.Dispose();
    }

    private static string RngState()
    {
        using Tensor state = torch.random.get_rng_state();
        return Convert.ToBase64String(state.bytes.ToArray());
    }

    /// <summary>
    /// A batch whose activations cannot fit in this machine's memory would be killed mid-step by the kernel: refused
    /// first. Each layer's output is kept for the backward pass and gets a gradient of its size, and the fused and
    /// oneDNN kernels take about as much again as workspace: ~4 floats per output value.
    /// </summary>
    private static void CheckBatchFits(int batchSize, Architecture arch)
    {
        long perImage = ModelSummary.Of(arch).Rows.Sum(r => (long)r.Channels * r.Height * r.Width) * sizeof(float) * 4;
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (perImage * batchSize > available)
        {
            throw new ArgumentException(
                $"--batch-size {batchSize} needs about {perImage * (double)batchSize / (1L << 30):F0} GB for the " +
                "activations of " +
                $"{arch.Variant} at {arch.InputSize}×{arch.InputSize}; this machine " +
                $"has {available / (double)(1L << 30):F0} GB: use at most {available / perImage}.");
        }
    }

    private static void CheckData(ImageStore train, ImageStore val)
    {
        if (train.Channels != val.Channels || train.Height != val.Height || train.Width != val.Width
            || train.ClassCount != val.ClassCount)
        {
            throw new ArgumentException(
                $"the validation store {val.Directory} ({val.Channels}×{val.Height}×{val.Width}, {val.ClassCount} " +
                "classes) " +
                $"does not match the training store {train.Directory} " +
                $"({train.Channels}×{train.Height}×{train.Width}, {train.ClassCount} classes).");
        }
    }

    /// <summary>
    /// A loss per image above this many times a uniform guess's (ln K) is a run that has exploded, even where it is
    /// not yet NaN (seen: 2.8e6 with 90% error, at an input scale too large for the net's init).
    /// </summary>
    public const double ExplodedLossFactor = 20;

    /// <summary>
    /// Stops the run when the loss of <paramref name="sums"/> (loss sum, hits, hits, images) is NaN, infinite or
    /// exploded.
    /// </summary>
    public void CheckLoss(double[] sums, int epoch)
    {
        double loss = sums[3] > 0 ? sums[0] / sums[3] : sums[0];
        double limit = ExplodedLossFactor * Math.Log(Math.Max(2, Model.Architecture.Classes));
        if (double.IsFinite(loss) && loss <= limit)
        {
            return;
        }
        string what = double.IsNaN(loss) ? "NaN" : double.IsInfinity(loss) ? "infinite"
            : $"{loss:G3} (over {ExplodedLossFactor}× a uniform guess's ln K = {limit:F1})";
        string kept = SavedStep is long saved
            ? $"{LastPath} holds the state of step {saved}, before it (a resume would repeat this: its options are " +
            "the run's)"
            : $"no checkpoint was written, so running the same command again starts {Directory} anew";
        throw new TrainingDivergedException(
            $"the loss became {what} by step {Step} (epoch {epoch}); training stopped, and {kept}. " +
            $"Start a run with a lower --lr (now {Options.LearningRate}) or a smaller --input-scale " +
            $"(now {Options.InputScale}), or check the data.");
    }

    private static IProcessGroup GroupOf(MachineOptions machine) =>
        (IProcessGroup?)machine.Parallel ?? LocalGroup.Instance;

    /// <summary> The run's own options rule on resume, except a longer <c>Epochs</c> and a new <c>MaxSteps</c>. Returns
    /// them and every other option in <paramref name="requested"/> that differs from the run's (ignored), as "name
    /// value (run: value)"; a shorter <c>Epochs</c> is named there too (a run is never shortened: --max-steps stops it
    /// early).
    /// </summary>
    public static (TrainOptions Options, string[] Ignored) ResumedOptions(TrainOptions saved, TrainOptions requested)
    {
        requested = requested with { InputScale = requested.InputScale ?? saved.InputScale };   // not given: the run's
        TrainOptions merged = saved with
        {
            Epochs = Math.Max(saved.Epochs, requested.Epochs),
            MaxSteps = requested.MaxSteps,
        };
        JsonElement mine = JsonSerializer.SerializeToElement(merged, Json.Options);
        JsonElement theirs = JsonSerializer.SerializeToElement(requested with
        {
            Epochs = Math.Max(merged.Epochs, requested.Epochs),
        }, Json.Options);
        var names = mine.EnumerateObject().Select(p => p.Name).Union(theirs.EnumerateObject().Select(p => p.Name));
        string Value(JsonElement e, string name) => e.TryGetProperty(name, out JsonElement v) ? v.GetRawText() : "null";
        var ignored = names.Where(n => Value(mine, n) != Value(theirs, n))
            .Select(n => $"{n} {Value(theirs, n)} (run: {Value(mine, n)})").ToList();
        if (requested.Epochs < saved.Epochs)
        {
            ignored.Add($"epochs {requested.Epochs} (run: {saved.Epochs}; a run is never shortened, --max-steps " +
                "stops it early)");
        }
        return (merged, ignored.ToArray());
    }
}
