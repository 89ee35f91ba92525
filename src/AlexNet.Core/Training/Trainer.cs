// §5 Learning: the training loop, top to bottom in visible phases per epoch:
//   set ε → for each batch: forward, softmax cross-entropy, backward, the paper's update → log →
//   evaluate on the validation set → schedule (divide ε by 10 on a plateau) → checkpoint.
// One folder per run: options.json, metrics.jsonl, last.ckpt, best.ckpt, plots.
using System;
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

public sealed record StepMetrics(int Epoch, long Step, int StepInEpoch, int StepsPerEpoch, double Loss, double Top1Error, double Top5Error,
    double LearningRate, double ImagesPerSecond);

public sealed record EpochMetrics(int Epoch, long Step, double TrainLoss, double TrainTop1Error, double TrainTop5Error,
    double ValLoss, double ValTop1Error, double ValTop5Error, double LearningRate, double ImagesPerSecond, double Seconds);

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

public sealed record TrainResult(string RunDirectory, int Epochs, long Steps, EpochMetrics? Last, double BestValidationError, bool Stopped);

/// <summary>The loss became NaN or infinite: the run stops, the last good checkpoint is kept.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

public static class Trainer
{
    public const string OptionsFile = "options.json";
    public const string MetricsFile = "metrics.jsonl";
    public const string LastCheckpoint = "last.ckpt";
    public const string BestCheckpoint = "best.ckpt";

    /// <summary>Trains a new run in <paramref name="runDir"/>, or continues the one there when <paramref name="resume"/> is set.</summary>
    public static TrainResult Fit(TrainOptions options, ImageStore train, ImageStore val, string runDir, bool resume,
        ITrainingProgress progress, CancellationToken cancel = default)
    {
        options.Validate();
        Compute.UseThreads(options.Threads);
        string lastPath = Path.Combine(runDir, LastCheckpoint);
        RunState? saved = null;
        if (resume)
        {
            saved = Checkpoint.ReadState(lastPath);
            // The run's own options rule, except a longer --epochs or a new step limit.
            options = saved.Options with { Epochs = Math.Max(saved.Options.Epochs, options.Epochs), MaxSteps = options.MaxSteps };
        }
        CheckData(train, val);
        AugmentOptions augment = AugmentOptionsFor(options, train);
        if (!resume)
        {
            PrepareRunDirectory(runDir);   // only once the data and options are known to fit: a bad flag leaves no folder
        }

        Architecture arch = options.Architecture(train.ClassCount, train.Channels, augment.Crop);
        using var model = new AlexNetModel(arch, options.Seed);
        using var sgd = new PaperSgd(model.parameters(), options.LearningRate, options.Momentum, options.WeightDecay, options.Optimizer);
        var schedule = new LearningRateSchedule(options, saved?.Schedule);
        int epochsDone = 0, stepInEpoch = 0;
        long step = 0;
        double best = double.PositiveInfinity;
        double[] carried = new double[4];
        if (saved is not null)
        {
            Checkpoint.LoadInto(lastPath, saved, model, sgd);
            (epochsDone, stepInEpoch, step, best, carried) = (saved.Epoch, saved.StepInEpoch, saved.Step, saved.BestValidationError, saved.EpochAccumulators);
            using Tensor rng = tensor(Convert.FromBase64String(saved.RngState));
            torch.random.set_rng_state(rng);
            progress.Message($"Resumed {runDir} at epoch {epochsDone + 1}, step {step}.");
        }
        else
        {
            torch.random.manual_seed(options.Seed);   // dropout masks (§4.2) draw from libtorch's generator
            AtomicFile.WriteAllText(Path.Combine(runDir, OptionsFile), options.ToJson());
        }

        var trainAug = new Augmentation(train, augment);
        var valAug = new Augmentation(val.Channels, val.Height, val.Width, train.Mean, train.Manifest.Pca, augment);
        var loader = new BatchLoader(train, trainAug, new LoaderOptions(options.BatchSize, options.Workers, Limit: options.TrainLimit));
        using var metricsLog = new StreamWriter(Path.Combine(runDir, MetricsFile), append: true);
        string[] classNames = train.Manifest.Classes.Select(c => c.Name).ToArray();
        RunState State(int epoch, int inEpoch, double[] acc) => new(options, arch, epoch, inEpoch, step, schedule.State, acc, best,
            RngState(), classNames, train.Mean, train.Height, train.Width,
            Array.Empty<TensorEntry>());

        EpochMetrics? last = null;
        long totalSteps = (long)options.Epochs * loader.BatchesPerEpoch;   // the poly schedule's T (a resume with more --epochs stretches it)
        for (int epoch = epochsDone + 1; epoch <= options.Epochs; epoch++)
        {
            // Set ε for this epoch (§5: one rate for all layers).
            sgd.LearningRate = schedule.LearningRate;
            model.train();
            progress.EpochStarted(epoch, options.Epochs, loader.BatchesPerEpoch, stepInEpoch);
            var epochClock = Stopwatch.StartNew();
            var windowClock = Stopwatch.StartNew();
            long windowImages = 0;
            using Tensor acc = tensor(carried);                 // loss sum, top-1 hits, top-5 hits, images
            using Tensor window = zeros(4, ScalarType.Float64);
            double[] AccValues() => acc.data<double>().ToArray();

            foreach (Batch batch in loader.TrainEpoch(options.Seed, epoch, stepInEpoch, cancel))
            {
                using (batch)
                using (NewDisposeScope())
                {
                    // Forward, softmax cross-entropy (§3.5's "multinomial logistic regression"), backward, update.
                    Tensor logits = model.forward(batch.Inputs);
                    Tensor loss = nn.functional.cross_entropy(logits, batch.Labels);
                    sgd.ZeroGrad();
                    loss.backward();
                    if (schedule.PerStep)
                    {
                        sgd.LearningRate = schedule.BeginStep(step, totalSteps);
                    }
                    sgd.Step();
                    (Tensor top1, Tensor top5) = TopK.Correct(logits.detach(), batch.Labels);
                    Tensor row = stack(new[] { loss.detach().to(ScalarType.Float64) * batch.Count, top1.to(ScalarType.Float64),
                        top5.to(ScalarType.Float64), tensor((double)batch.Count) });
                    acc.add_(row);
                    window.add_(row);
                }
                Compute.ReleaseStepGarbage();
                step++;
                stepInEpoch++;
                windowImages += batch.Count;

                if (step % options.LogEvery == 0 || stepInEpoch == loader.BatchesPerEpoch)
                {
                    // Scalars leave the device only here.
                    double[] w = window.data<double>().ToArray();
                    window.zero_();
                    CheckFinite(w[0], epoch, step, runDir);
                    var m = new StepMetrics(epoch, step, stepInEpoch, loader.BatchesPerEpoch, w[0] / w[3], 1 - w[1] / w[3], 1 - w[2] / w[3],
                        sgd.LearningRate, windowImages / windowClock.Elapsed.TotalSeconds);
                    windowClock.Restart();
                    windowImages = 0;
                    WriteLine(metricsLog, new { kind = "step", m.Epoch, m.Step, m.Loss, m.Top1Error, m.Top5Error, lr = m.LearningRate, m.ImagesPerSecond });
                    progress.Step(m);
                }
                bool limit = options.MaxSteps > 0 && step >= options.MaxSteps;
                if ((options.CheckpointEvery > 0 && step % options.CheckpointEvery == 0 || limit || cancel.IsCancellationRequested)
                    && stepInEpoch < loader.BatchesPerEpoch)
                {
                    double[] a = AccValues();
                    CheckFinite(a[0], epoch, step, runDir);
                    Checkpoint.Save(lastPath, State(epoch - 1, stepInEpoch, a), model, sgd);
                }
                if (limit || cancel.IsCancellationRequested)
                {
                    return new TrainResult(runDir, epoch - 1, step, last, best, Stopped: true);
                }
            }

            // End of epoch: training averages, validation error (§6: centre crop), schedule, checkpoints.
            double[] t = AccValues();
            CheckFinite(t[0], epoch, step, runDir);
            double trainSeconds = epochClock.Elapsed.TotalSeconds;
            EvalResult v = Evaluator.Evaluate(new[] { model }, val, valAug, tenCrop: false, batchSize: Math.Max(options.BatchSize, 256), cancel: cancel);
            double lr = sgd.LearningRate;
            schedule.EndEpoch(epoch, v.Top1Error);
            bool improved = v.Top1Error < best;
            best = Math.Min(best, v.Top1Error);
            last = new EpochMetrics(epoch, step, t[0] / t[3], 1 - t[1] / t[3], 1 - t[2] / t[3], v.Loss, v.Top1Error, v.Top5Error, lr,
                t[3] / trainSeconds, epochClock.Elapsed.TotalSeconds);
            WriteLine(metricsLog, new { kind = "epoch", last.Epoch, last.Step, last.TrainLoss, last.TrainTop1Error, last.TrainTop5Error,
                last.ValLoss, last.ValTop1Error, last.ValTop5Error, lr, last.ImagesPerSecond, last.Seconds });
            carried = new double[4];
            stepInEpoch = 0;
            Checkpoint.Save(lastPath, State(epoch, 0, carried), model, sgd);
            if (improved)
            {
                File.Copy(lastPath, Path.Combine(runDir, BestCheckpoint), overwrite: true);
            }
            progress.EpochEnded(last);
            RunPlots.Write(runDir);
            if (options.MaxSteps > 0 && step >= options.MaxSteps)
            {
                return new TrainResult(runDir, epoch, step, last, best, Stopped: true);
            }
        }
        return new TrainResult(runDir, options.Epochs, step, last, best, Stopped: false);
    }

    /// <summary>§4.1's crops for the store's size, with the ablation switches of the options.</summary>
    public static AugmentOptions AugmentOptionsFor(TrainOptions o, ImageStore train) => AugmentOptionsFor(o, train.Height, train.Width);

    public static AugmentOptions AugmentOptionsFor(TrainOptions o, int height, int width)
    {
        int stored = Math.Min(height, width);
        AugmentOptions a = AugmentOptions.PaperFor(stored);
        if (o.Pad >= 0 && stored < 64)
        {
            a = a with { Pad = o.Pad, Crop = stored + o.Pad };   // small images: the crop is the padded image less the shift range
        }
        if (o.Crop is int crop)
        {
            if (crop > a.LargestCrop(height, width))
            {
                throw new ArgumentException($"--crop {crop} does not fit the {height}×{width} images padded by {a.Pad}: use at most {a.LargestCrop(height, width)}.");
            }
            a = a with { Crop = crop };
        }
        return a with
        {
            RandomCrop = o.RandomCrop,
            Flip = o.Flip,
            PcaStd = o.PcaStd,
            SubtractMean = o.SubtractMean,
            Scale = o.InputScale,
        };
    }

    static string RngState()
    {
        using Tensor state = torch.random.get_rng_state();
        return Convert.ToBase64String(state.bytes.ToArray());
    }

    static void PrepareRunDirectory(string runDir)
    {
        if (File.Exists(Path.Combine(runDir, LastCheckpoint)) || File.Exists(Path.Combine(runDir, MetricsFile)))
        {
            throw new IOException($"{runDir} already holds a run; pass --resume to continue it, or choose another --out (nothing was overwritten).");
        }
        Directory.CreateDirectory(runDir);
    }

    static void CheckData(ImageStore train, ImageStore val)
    {
        if (train.Channels != val.Channels || train.Height != val.Height || train.Width != val.Width || train.ClassCount != val.ClassCount)
        {
            throw new ArgumentException($"the validation store {val.Directory} ({val.Channels}×{val.Height}×{val.Width}, {val.ClassCount} classes) " +
                $"does not match the training store {train.Directory} ({train.Channels}×{train.Height}×{train.Width}, {train.ClassCount} classes).");
        }
    }

    static void CheckFinite(double lossSum, int epoch, long step, string runDir)
    {
        if (!double.IsFinite(lossSum))
        {
            throw new TrainingDivergedException($"the loss became {(double.IsNaN(lossSum) ? "NaN" : "infinite")} by step {step} (epoch {epoch}); " +
                $"training stopped. {Path.Combine(runDir, LastCheckpoint)} still holds the last good state. Lower --lr, or check the data.");
        }
    }

    static void WriteLine(StreamWriter log, object record)
    {
        log.WriteLine(JsonSerializer.Serialize(record, MetricsJson));
        log.Flush();
    }

    internal static readonly JsonSerializerOptions MetricsJson = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };
}
