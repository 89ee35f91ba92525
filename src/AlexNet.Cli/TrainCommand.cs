using System;
using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using AlexNet.Analysis;
using AlexNet.Data;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using AlexNet.Training;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>
/// `alexnet train`: maps flags onto <see cref="TrainOptions"/> (§5's defaults) and runs <see cref="Trainer.Fit"/>.
/// </summary>
internal static class TrainCommand
{
    private static readonly TrainOptions D = new();

    // Each option shows the paper's default in --help; an option given on the command line overrides a preset.
    private static readonly Option<string?> Data = new("--data", "-d")
    {
        Description = "Prepared data folder holding train/ and val/ stores (alexnet prepare --out).",
    };
    private static readonly Option<string?> TrainStore = new("--train")
    {
        Description = "Training store (instead of --data).",
    };
    private static readonly Option<string?> ValStore = new("--val")
    {
        Description = "Validation store (instead of --data).",
    };
    private static readonly Option<string?> Out = new("--out", "-o")
    {
        Description = "Run folder: options, metrics.jsonl, last/best checkpoints, plots (default runs/<model>-<time>).",
    };
    private static readonly Option<bool> Resume = new("--resume")
    {
        Description = "Continue the run in --out from its last.ckpt (a longer --epochs extends it).",
    };
    private static readonly Option<string?> Preset = new("--preset")
    {
        Description = "JSON file of options (keys as in a run's options.json); flags override it.",
    };
    private static readonly Option<string> ModelName = Cli.ModelOption(D.Model);
    private static readonly Option<int> Epochs = new("--epochs")
    {
        Description = "Epochs (§5: ~90).",
        DefaultValueFactory = _ => D.Epochs,
    };
    private static readonly Option<int> BatchSize = new("--batch-size", "-b")
    {
        Description = "Batch size (§5: 128).",
        DefaultValueFactory = _ => D.BatchSize,
    };
    private static readonly Option<double> Lr = new("--lr")
    {
        Description = "Initial learning rate ε (§5: 0.01).",
        DefaultValueFactory = _ => D.LearningRate,
    };
    private static readonly Option<double> Momentum = new("--momentum")
    {
        Description = "Momentum (§5: 0.9).",
        DefaultValueFactory = _ => D.Momentum,
    };
    private static readonly Option<double> WeightDecay = new("--weight-decay")
    {
        Description = "Weight decay (§5: 0.0005).",
        DefaultValueFactory = _ => D.WeightDecay,
    };
    private static readonly Option<OptimizerKind> Optimizer = new("--optimizer")
    {
        Description = "paper = §5's rule exactly; torch = libtorch's SGD (differs when ε changes).",
        DefaultValueFactory = _ => D.Optimizer,
    };
    private static readonly Option<ScheduleKind> Schedule = new("--schedule")
    {
        Description =
            "plateau = §5: ÷10 when validation error stops improving; step = ÷10 at --step-epochs; poly = Caffe's " +
            "ε₀·(1 − t/T)^power every step.",
        DefaultValueFactory = _ => D.Schedule,
    };
    private static readonly Option<double> Power = new("--power")
    {
        Description = "Poly schedule: the exponent (1 = linear to 0).",
        DefaultValueFactory = _ => D.Power,
    };
    private static readonly Option<int> Patience = new("--patience")
    {
        Description = "Plateau: epochs without improvement before dividing ε.",
        DefaultValueFactory = _ => D.Patience,
    };
    private static readonly Option<int> MaxReductions = new("--max-reductions")
    {
        Description = "Plateau: at most this many divisions (§5: 3).",
        DefaultValueFactory = _ => D.MaxReductions,
    };
    private static readonly Option<string?> StepEpochs = new("--step-epochs")
    {
        Description = "Step schedule: comma-separated epochs after which ε is divided by 10, e.g. 30,60,80.",
    };
    private static readonly Option<InitScheme?> Init = new("--init")
    {
        Description =
            "paper (§5: N(0,0.01²), bias 1 on conv2/4/5, fc6/7), paper-zero-bias, kaiming. Default: the model's " +
            "(small: kaiming).",
    };
    private static readonly Option<Activation> Act = new("--activation")
    {
        Description = "§3.1: relu or tanh.",
        DefaultValueFactory = _ => D.Activation,
    };
    private static readonly Option<bool> NoLrn = new("--no-lrn")
    {
        Description = "Ablation: no local response normalisation (§3.3).",
    };
    private static readonly Option<LrnConvention?> LrnAlpha = new("--lrn-convention")
    {
        Description =
            "§3.3's α: paper = k + α·Σa² as printed (default); code = k + (α/n)·Σa², as the authors' cuda-convnet2 " +
            "(and PyTorch, Caffe) compute it, a fifth of the effect.",
    };
    private static readonly Option<string> Pool = new("--pool")
    {
        Description = "Max-pool window/stride (§3.4: 3/2 overlapping; 2/2 not).",
        DefaultValueFactory = _ => "3/2",
    };
    private static readonly Option<double> Dropout = new("--dropout")
    {
        Description = "Dropout on fc6/fc7 (§4.2: 0.5; 0 = off).",
        DefaultValueFactory = _ => D.Dropout,
    };
    private static readonly Option<bool> NoCrop = new("--no-crop")
    {
        Description = "Ablation: centre crops instead of random ones (§4.1).",
    };
    private static readonly Option<bool> NoFlip = new("--no-flip")
    {
        Description = "Ablation: no horizontal reflections (§4.1).",
    };
    private static readonly Option<double> PcaStd = new("--pca-std")
    {
        Description = "σ of the PCA colour noise αᵢ (§4.1: 0.1; 0 = off).",
        DefaultValueFactory = _ => D.PcaStd,
    };
    private static readonly Option<bool> NoMean = new("--no-mean")
    {
        Description = "Do not subtract the mean image (§2).",
    };
    private static readonly Option<float?> InputScale = new("--input-scale")
    {
        Description =
            "Multiply the centred 0–255 inputs by this (1 = the paper's raw values). Default: what the net's init " +
            "expects: 1 for §5's N(0, 0.01²) (paper, owt), 1/80 for a fan-in-scaled init (small); with --init-from, " +
            "the checkpoint's.",
    };
    private static readonly Option<int?> Crop = new("--crop")
    {
        Description =
            "Side of §4.1's patches (random in training, centre or ten at test). Default: 224 of 256 (7/8); small " +
            "images: the padded image less the shift range.",
    };
    private static readonly Option<int> Pad = new("--pad")
    {
        Description =
            "Small images: zero padding before cropping; the crop is the image plus the padding less the shift range " +
            "(−1 = the default 4).",
        DefaultValueFactory = _ => D.Pad,
    };
    private static readonly Option<string?> RemoveLayer = new("--remove-layer")
    {
        Description = "§7 ablation: drop a middle conv layer (conv3 or conv4).",
    };
    private static readonly Option<long> Seed = new("--seed")
    {
        Description = "Seed of init, shuffling, augmentation and dropout.",
        DefaultValueFactory = _ => D.Seed,
    };
    private static readonly Option<int> Threads = new("--threads")
    {
        Description = "Compute threads (a machine setting: --resume takes today's).",
        DefaultValueFactory = _ => MachineOptions.Default.Threads,
    };
    private static readonly Option<int> Workers = new("--workers")
    {
        Description = "Background threads that assemble batches (a machine setting; the batches do not depend on it).",
        DefaultValueFactory = _ => MachineOptions.Default.Workers,
    };
    private static readonly Option<int> CheckpointEvery = new("--checkpoint-every")
    {
        Description = "Also checkpoint every N steps (0 = at epoch ends).",
        DefaultValueFactory = _ => D.CheckpointEvery,
    };
    private static readonly Option<double> CheckpointMinutes = new("--checkpoint-minutes")
    {
        Description = "Also checkpoint when this many minutes have passed since the last checkpoint (0 = off).",
        DefaultValueFactory = _ => D.CheckpointMinutes,
    };
    private static readonly Option<double> LabelSmoothing = new("--label-smoothing")
    {
        Description = "Not in the paper: label smoothing ε (targets (1 − ε)·one-hot + ε/K).",
        DefaultValueFactory = _ => D.LabelSmoothing,
    };
    private static readonly Option<double> WarmupEpochs = new("--warmup-epochs")
    {
        Description = "Not in the paper: ε rises linearly to the schedule's over these epochs.",
        DefaultValueFactory = _ => D.WarmupEpochs,
    };
    private static readonly Option<bool> Nesterov = new("--nesterov")
    {
        Description = "Not in the paper: Nesterov momentum in §5's form.",
    };
    private static readonly Option<double> ClipGradNorm = new("--clip-grad-norm")
    {
        Description = "Not in the paper: rescale the gradients when their global L2 norm exceeds this (0 = off).",
        DefaultValueFactory = _ => D.ClipGradNorm,
    };
    private static readonly Option<double> Ema = new("--ema")
    {
        Description =
            "Not in the paper: keep a moving average of the weights with this decay (e.g. 0.999), evaluated and " +
            "checkpointed beside them (0 = off).",
        DefaultValueFactory = _ => D.Ema,
    };
    private static readonly Option<int> ValSplit = new("--val-split")
    {
        Description =
            "Hold out this many training images (chosen by --seed) to validate and schedule on; the validation store " +
            "is then the test set, scored once when the run ends (test.json).",
        DefaultValueFactory = _ => D.ValSplit,
    };
    private static readonly Option<string> ValViews = new("--val-views")
    {
        Description =
            "Views each validation averages (and the test scoring with --val-split): centre, ten (§4.1's ten " +
            "patches), or flip (not in the paper: the centre and its reflection).",
        DefaultValueFactory = _ => "centre",
    };
    private static readonly Option<string?> Towers = new("--towers")
    {
        Description =
            "§3.2: each of the net's two towers on its own device, e.g. cpu,cpu or cuda:0,cuda:1, exchanging maps " +
            "only where Figure 2 connects them (paper and small; checkpoints stay the grouped net's; a machine " +
            "setting).",
    };
    private static readonly Option<bool> ConcurrentTowers = new("--concurrent-towers")
    {
        Description = "With --towers: run the two towers' forward work at the same time, --threads split between them.",
    };
    private static readonly Option<int> ReplicasFlag = new("--replicas")
    {
        Description = Cli.ReplicasDescription,
        DefaultValueFactory = _ => 1,
    };
    private static readonly Option<string?> InitFrom = new("--init-from")
    {
        Description =
            "Not in the paper: fine-tune: start from this checkpoint's weights (a run's, or `alexnet import`'s); its " +
            "net, normalisation and input scale unless given; fc8 is re-initialised when the data has other classes.",
    };
    private static readonly Option<string?> Freeze = new("--freeze")
    {
        Description =
            "With --init-from: 'features' keeps conv1–conv5 as they are, so only the classifier (fc6–fc8) learns.",
    };
    private static readonly Option<double> PretrainedLrFactor = new("--pretrained-lr-factor")
    {
        Description =
            "With --init-from: ε of the layers taken from the checkpoint, as a fraction of --lr (a re-initialised fc8 " +
            "keeps --lr).",
        DefaultValueFactory = _ => D.PretrainedLrFactor,
    };
    private static readonly Option<string> Normalize = new("--normalize")
    {
        Description =
            "Input normalisation: mean-image (§2) or imagenet (torchvision's per-channel mean/std, what its weights " +
            "expect). Default: §2's, or the --init-from checkpoint's.",
        DefaultValueFactory = _ => "mean-image",
    };
    private static readonly Option<double> MixupAlpha = new("--mixup-alpha")
    {
        Description =
            "Not in the paper: mixup, images blended with a shuffled copy of the batch, λ ~ Beta(α, α) (0 = off; " +
            "torchvision's recipes use 0.2).",
        DefaultValueFactory = _ => D.MixupAlpha,
    };
    private static readonly Option<double> CutmixAlpha = new("--cutmix-alpha")
    {
        Description =
            "Not in the paper: CutMix, a box of a shuffled copy pasted in, λ ~ Beta(α, α) (0 = off; torchvision's " +
            "recipes use 1.0). With --mixup-alpha too, each batch takes one of them.",
        DefaultValueFactory = _ => D.CutmixAlpha,
    };
    private static readonly Option<string> Device = Cli.DeviceOption();
    private static readonly Option<string> PrecisionFlag = Cli.PrecisionOption();
    private static readonly Option<string?> TensorBoard = new("--tensorboard")
    {
        Description =
            "Not in the paper: also write TensorBoard event files here (metrics.jsonl's scalars; at the end the conv1 " +
            "kernels and a few predictions).",
    };
    private static readonly Option<int> LogEvery = new("--log-every")
    {
        Description = "Steps between metric lines.",
        DefaultValueFactory = _ => D.LogEvery,
    };
    private static readonly Option<int> MaxSteps = new("--max-steps")
    {
        Description = "Stop after this many steps in all (0 = no limit).",
        DefaultValueFactory = _ => D.MaxSteps,
    };

    public static Command Create()
    {
        var command =
            new Command("train", "Train a network with §5's SGD, schedule and checkpoints, one folder per run.")
        {
            Data, TrainStore, ValStore, Out, Resume, Preset, ModelName, Epochs, BatchSize, Lr, Momentum,
                WeightDecay, Optimizer, Schedule, Power,
            Patience, MaxReductions, StepEpochs, Init, Act, NoLrn, LrnAlpha, Pool, Dropout, NoCrop, NoFlip, PcaStd,
                NoMean, InputScale, Pad, Crop, RemoveLayer,
            Seed, Threads, Workers, CheckpointEvery, CheckpointMinutes, LogEvery, MaxSteps, LabelSmoothing,
                WarmupEpochs, Nesterov, ClipGradNorm, Ema, ValSplit, ValViews, Towers, ConcurrentTowers, ReplicasFlag,
            InitFrom, Freeze, PretrainedLrFactor, Normalize, TensorBoard, MixupAlpha,
                CutmixAlpha, Device, PrecisionFlag,
        };
        Freeze.AcceptOnlyFromAmong("features");
        Normalize.AcceptOnlyFromAmong("mean-image", "imagenet");
        ValViews.AcceptOnlyFromAmong("centre", "ten", "flip");
        command.SetAction(r => Distributed(parallel => Cli.Run(() =>
        {
            bool resume = r.GetValue(Resume);
            string? given = r.GetValue(Out);
            if (resume && given is null)
            {
                throw new UserError("--resume continues the run in --out: say which (e.g. --out runs/paper).");
            }
            if (parallel is not null && given is null)
            {
                throw new UserError(
                    "with mpirun, give --out: every rank must name the same run folder (rank 0 writes it).");
            }
            string runDir = given ?? Path.Combine("runs", $"{r.GetValue(ModelName)}-{DateTime.Now:yyyyMMdd-HHmmss}");
            TrainOptions o = Options(r, resume ? Path.Combine(runDir, Trainer.OptionsFile) : null);
            (string trainDir, string valDir) = Stores(r.GetValue(Data), r.GetValue(TrainStore), r.GetValue(ValStore));
            Compute.ResolveDevice(r.GetValue(Device)!);   // a bad --device fails before any data is read
            var machine = new MachineOptions(r.GetValue(Threads), r.GetValue(Workers), parallel, r.GetValue(Device)!,
                r.GetValue(Towers), r.GetValue(ConcurrentTowers),
                r.GetValue(ReplicasFlag));
            return Execute(o, machine, trainDir, valDir, runDir, resume,
                ResumeCommand(r, runDir, parallel), r.GetValue(TensorBoard));
        })));
        return command;
    }

    /// <summary>
    /// Under mpirun, the job's MPI group around the command (AlexNet.Distributed.Job); one process otherwise.
    /// </summary>
    private static int Distributed(Func<AlexNet.Distributed.DataParallel?, int> body)
    {
        try
        {
            return AlexNet.Distributed.Job.Run(body, Console.Error);
        }
        catch (AlexNet.Distributed.JobStartException e)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]error:[/] {e.Message}");
            return Cli.Failure;
        }
    }

    /// <summary>
    /// Trains (or resumes) a run; Ctrl-C or SIGTERM stops it after the current step with last.ckpt written (exit
    /// 130/143).
    /// </summary>
    /// <param name="tensorBoard">Also write TensorBoard event files to this folder, or null.</param>
    public static int Execute(TrainOptions o, MachineOptions machine, string trainDir, string valDir, string runDir,
        bool resume, string resumeCommand,
        string? tensorBoard = null)
    {
        using ImageStore train = ImageStore.Open(trainDir);
        using ImageStore val = ImageStore.Open(valDir);
        if (machine.Parallel is { IsLeader: false })
        {
            // Rank 0 reports for the job; the others train quietly, and stop where it does (mpirun forwards the signal
            // to all).
            using var quietStop = new StopSignal();
            try
            {
                Trainer.Fit(o, machine, train, val, runDir, resume, new SilentProgress(), quietStop.Token);
            }
            catch (TrainingDivergedException)
            {
                return Cli.Failure;   // every rank sees the same summed loss; rank 0 says why
            }
            return machine.Parallel.Max(quietStop.ExitCode ?? 0);   // the job's code: a signal any rank took
        }
        var progress = new ConsoleProgress();
        string ranks = machine.Parallel is { } p ? $", {p.Ranks} ranks ({p.Flavour}) × batch {o.BatchSize}" : "";
        AnsiConsole.MarkupLineInterpolated(
            $"Training {o.Model} on {train.Count} images ({train.Height}×{train.Width}×{train.Channels}, {train.ClassCount} classes){ranks} → {runDir}");
        if (machine.Parallel?.StopAdvice() is string advice)
        {
            AnsiConsole.MarkupLineInterpolated($"[yellow]note:[/] {advice}");
        }
        if (OneDnnFeatures.RunNote(machine.Replicas) is string kernels)
        {
            AnsiConsole.MarkupLineInterpolated($"[yellow]note:[/] {kernels}");
        }
        using var stop = new StopSignal();
        TrainResult result;
        try
        {
            TensorBoardLog? board = tensorBoard is null ? null : new TensorBoardLog(tensorBoard, progress);
            result = progress.Run(() => Trainer.Fit(o, machine, train, val, runDir, resume,
                board is null ? progress : board, stop.Token));
            if (board is not null && File.Exists(Path.Combine(runDir, Trainer.LastCheckpoint)))
            {
                // kernels.png, predictions.png
                RunReport.Write(runDir, valDir, checkpoint: Path.Combine(runDir, Trainer.LastCheckpoint));
                board.AddPictures(runDir, result.Steps);
                AnsiConsole.MarkupLineInterpolated(
                    $"TensorBoard: {board.Directory} (tensorboard --logdir {board.Directory})");
            }
        }
        catch (TrainingDivergedException e)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]error:[/] {e.Message}");
            return Cli.Failure;
        }
        string best = double.IsFinite(result.BestValidationError) ? ConsoleProgress.Pct(result.BestValidationError)
            : "none yet (no epoch finished)";
        // every rank ends with the job's code
        int code = machine.Parallel?.Max(stop.ExitCode ?? 0) ?? stop.ExitCode ?? 0;
        if (code != 0)
        {
            AnsiConsole.MarkupLineInterpolated(
                $"Stopped at step {result.Steps}: {Path.Combine(runDir, Trainer.LastCheckpoint)} holds the position. Continue with:");
            AnsiConsole.MarkupLineInterpolated($"  {resumeCommand}");
            return code;
        }
        AnsiConsole.MarkupLineInterpolated(
            $"Done: {result.Steps} steps; best validation top-1 error {best}; run folder {runDir}");
        if (machine.Parallel is { } group)
        {
            AnsiConsole.MarkupLineInterpolated(
                $"Gradient allreduce on rank 0: {group.ReduceSeconds:F2} s in all ({group.Ranks} ranks, {group.Flavour}).");
        }
        return 0;
    }

    /// <summary>The command line that continues this run: the same arguments with --resume and --out.</summary>
    private static string ResumeCommand(ParseResult r, string runDir, AlexNet.Distributed.DataParallel? parallel)
    {
        var args = r.Tokens.Where(t => t.Type != TokenType.Command).Select(t => t.Value).ToList();
        if (!args.Contains("--resume"))
        {
            args.Add("--resume");
        }
        if (r.GetValue(Out) is null)
        {
            args.AddRange(new[] { "--out", runDir });
        }
        // A data-parallel run resumes with as many processes (RunFolder.CheckSameRanks), under the same launcher.
        string launcher = parallel is null ? ""
            : $"{(parallel.Flavour == "MPICH" ? "mpiexec.mpich" : "mpirun")} -np {parallel.Ranks} ";
        return launcher + "alexnet train " + string.Join(" ",
            args.Select(a => a.Contains(' ', StringComparison.Ordinal) ? $"'{a}'" : a));
    }

    public static (string Train, string Val) Stores(string? data, string? train, string? val)
    {
        if (data is not null)
        {
            return (Path.Combine(data, "train"), Path.Combine(data, "val"));
        }
        if (train is null || val is null)
        {
            throw new UserError(
                "say where the data is: --data DIR (with train/ and val/ from `alexnet prepare`), or --train STORE " +
                "--val STORE.");
        }
        return (train, val);
    }

    /// <summary>
    /// One flag of `train` and the option it sets; <paramref name="Example"/> sets it away from its default, <paramref
    /// name="Took"/> sees that.
    /// </summary>
    internal sealed record Flag(Option Option, Func<TrainOptions, ParseResult, TrainOptions> Apply, string[] Example,
        Func<TrainOptions, bool> Took);

    /// <summary>
    /// A flag applied only when given on the command line (a preset's or the run's own value stands otherwise).
    /// </summary>
    private static Flag Bind<T>(Option<T> option, Func<TrainOptions, T, TrainOptions> set, string example,
        Func<TrainOptions, bool> took) =>
        new(option, (o, r) => r.GetResult(option) is { Implicit: false } ? set(o, r.GetValue(option)!) : o,
            typeof(T) == typeof(bool) ? new[] { option.Name } : new[] { option.Name, example }, took);

    /// <summary> Every flag that sets <see cref="TrainOptions"/>, in the order they apply (--step-epochs after
    /// --schedule: it implies the step schedule). The machine's, the data's and the run folder's flags are the others
    /// (MachineFlags); a test walks both.
    /// </summary>
    internal static readonly Flag[] Flags =
    {
        Bind(ModelName, (o, v) => o with { Model = v }, "paper-1gpu", o => o.Model == "paper-1gpu"),
        Bind(Epochs, (o, v) => o with { Epochs = v }, "3", o => o.Epochs == 3),
        Bind(BatchSize, (o, v) => o with { BatchSize = v }, "32", o => o.BatchSize == 32),
        Bind(Lr, (o, v) => o with { LearningRate = v }, "0.05", o => o.LearningRate == 0.05),
        Bind(Momentum, (o, v) => o with { Momentum = v }, "0.5", o => o.Momentum == 0.5),
        Bind(WeightDecay, (o, v) => o with { WeightDecay = v }, "0.001", o => o.WeightDecay == 0.001),
        Bind(Optimizer, (o, v) => o with { Optimizer = v }, "torch", o => o.Optimizer == OptimizerKind.Torch),
        Bind(Schedule, (o, v) => o with { Schedule = v }, "poly", o => o.Schedule == ScheduleKind.Poly),
        Bind(Power, (o, v) => o with { Power = v }, "2", o => o.Power == 2),
        Bind(Patience, (o, v) => o with { Patience = v }, "4", o => o.Patience == 4),
        Bind(MaxReductions, (o, v) => o with { MaxReductions = v }, "1", o => o.MaxReductions == 1),
        Bind(StepEpochs, (o, v) => o with
        {
            StepEpochs = Cli.Ints(v!, "--step-epochs"),
            Schedule = ScheduleKind.Step,
        }, "30,60",
            o => o.StepEpochs is [30, 60] && o.Schedule == ScheduleKind.Step),
        Bind(Init, (o, v) => o with { Init = v }, "kaiming", o => o.Init == InitScheme.Kaiming),
        Bind(Act, (o, v) => o with { Activation = v }, "tanh", o => o.Activation == Activation.Tanh),
        Bind(NoLrn, (o, v) => v ? o with { Lrn = false } : o, "", o => !o.Lrn),
        Bind(LrnAlpha, (o, v) => o with { LrnConvention = v }, "code", o => o.LrnConvention == LrnConvention.Code),
        Bind(Pool, (o, v) => PoolOf(o, v), "2/2", o => o.PoolWindow == 2 && o.PoolStride == 2),
        Bind(Dropout, (o, v) => o with { Dropout = v }, "0.3", o => o.Dropout == 0.3),
        Bind(NoCrop, (o, v) => v ? o with { RandomCrop = false } : o, "", o => !o.RandomCrop),
        Bind(NoFlip, (o, v) => v ? o with { Flip = false } : o, "", o => !o.Flip),
        Bind(PcaStd, (o, v) => o with { PcaStd = v }, "0", o => o.PcaStd == 0),
        Bind(NoMean, (o, v) => v ? o with { SubtractMean = false } : o, "", o => !o.SubtractMean),
        Bind(InputScale, (o, v) => o with { InputScale = v }, "0.5", o => o.InputScale == 0.5f),
        Bind(Pad, (o, v) => o with { Pad = v }, "2", o => o.Pad == 2),
        Bind(Crop, (o, v) => o with { Crop = v }, "200", o => o.Crop == 200),
        Bind(RemoveLayer, (o, v) => o with { RemoveLayer = v }, "conv3", o => o.RemoveLayer == "conv3"),
        Bind(Seed, (o, v) => o with { Seed = v }, "9", o => o.Seed == 9),
        Bind(CheckpointEvery, (o, v) => o with { CheckpointEvery = v }, "7", o => o.CheckpointEvery == 7),
        Bind(CheckpointMinutes, (o, v) => o with { CheckpointMinutes = v }, "5", o => o.CheckpointMinutes == 5),
        Bind(LogEvery, (o, v) => o with { LogEvery = v }, "3", o => o.LogEvery == 3),
        Bind(LabelSmoothing, (o, v) => o with { LabelSmoothing = v }, "0.1", o => o.LabelSmoothing == 0.1),
        Bind(WarmupEpochs, (o, v) => o with { WarmupEpochs = v }, "2", o => o.WarmupEpochs == 2),
        Bind(Nesterov, (o, v) => v ? o with { Nesterov = true } : o, "", o => o.Nesterov),
        Bind(ClipGradNorm, (o, v) => o with { ClipGradNorm = v }, "5", o => o.ClipGradNorm == 5),
        Bind(Ema, (o, v) => o with { Ema = v }, "0.999", o => o.Ema == 0.999),
        Bind(MixupAlpha, (o, v) => o with { MixupAlpha = v }, "0.2", o => o.MixupAlpha == 0.2),
        Bind(CutmixAlpha, (o, v) => o with { CutmixAlpha = v }, "1", o => o.CutmixAlpha == 1),
        Bind(PrecisionFlag, (o, v) => o with
        {
            Precision = LowPrecision.Parse(v!),
        }, "bf16", o => o.Precision == Precision.Bf16),
        Bind(ValSplit, (o, v) => o with { ValSplit = v }, "100", o => o.ValSplit == 100),
        Bind(ValViews, (o, v) => o with
        {
            ValViews = Enum.Parse<AlexNet.Evaluation.ViewSet>(v!, ignoreCase: true),
        }, "flip",
            o => o.ValViews == AlexNet.Evaluation.ViewSet.Flip),
        Bind(InitFrom, (o, v) => o with
        {
            InitFrom = v,
        }, "", o => o.InitFrom is not null),   // walked with a real checkpoint
        Bind(Freeze, (o, v) => v is null ? o : o with { FreezeFeatures = true }, "features", o => o.FreezeFeatures),
        Bind(PretrainedLrFactor, (o, v) => o with { PretrainedLrFactor = v }, "0.1", o => o.PretrainedLrFactor == 0.1),
        Bind(Normalize, (o, v) => o with
        {
            Normalization = v == "imagenet" ? InputNormalization.Imagenet : InputNormalization.MeanImage,
        }, "imagenet",
            o => o.Normalization == InputNormalization.Imagenet),
        Bind(MaxSteps, (o, v) => o with { MaxSteps = v }, "9", o => o.MaxSteps == 9),
    };

    /// <summary>
    /// The flags that set no option of the run: where its data and folder are, and how the machine runs it.
    /// </summary>
    internal static readonly Option[] MachineFlags =
    {
        Data, TrainStore, ValStore, Out, Resume, Preset, Threads, Workers, Towers, ConcurrentTowers,
            ReplicasFlag, Device, TensorBoard,
    };

    private static TrainOptions PoolOf(TrainOptions o, string? text)
    {
        int[] p = Cli.Ints(text!.Replace('/', ','), "--pool");
        if (p.Length != 2)
        {
            throw new ArgumentException("--pool takes WINDOW/STRIDE, e.g. 3/2.");
        }
        return o with { PoolWindow = p[0], PoolStride = p[1] };
    }

    /// <summary>
    /// The flags given, over a preset, or over the run's own options.json when resuming (so only flags given on this
    /// command line can differ from the run's, and the trainer names those it ignores).
    /// </summary>
    internal static TrainOptions Options(ParseResult r, string? runOptions)
    {
        string? basis = r.GetValue(Preset) ?? (runOptions is not null && File.Exists(runOptions) ? runOptions : null);
        TrainOptions o = basis is not null
            ? TrainOptions.FromJson(File.Exists(basis) ? File.ReadAllText(basis)
            : throw new FileNotFoundException($"preset {basis} does not exist.", basis), basis)
            : new TrainOptions();
        bool Given(Option opt) => r.GetResult(opt) is { Implicit: false };
        foreach (Flag flag in Flags)
        {
            o = flag.Apply(o, r);
        }

        if (r.GetValue(InitFrom) is string init)
        {
            // Fine-tuning: the checkpoint's net and input conventions, unless the command line says otherwise.
            o = FineTuning.Inherit(o, init, keepModel: Given(ModelName), keepNormalization: Given(Normalize),
                keepInputScale: Given(InputScale));
        }

        o.Validate();
        _ = Variants.Get(o.Model, 10, 1, null);   // an unknown model fails here, before any data is read
        return o;
    }
}
