// One immutable record of everything a run's numbers depend on, with the paper's defaults (§5 unless noted).
// It is saved beside every run (options.json) and inside every checkpoint. The machine it runs on (threads,
// workers) is not part of it: MachineOptions.
using System;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;

namespace AlexNet.Training;

public enum ScheduleKind
{
    /// <summary>§5: divide ε by 10 when the validation error stops improving.</summary>
    Plateau,

    /// <summary>Divide ε by 10 at fixed epochs (StepEpochs).</summary>
    Step,

    /// <summary>
    /// Caffe's "poly" policy: every step ε = ε₀·(1 − t/T)^Power over the run's T steps (Power 1: linear to 0).
    /// </summary>
    Poly,
}

public enum OptimizerKind
{
    /// <summary>§5's rule: v ← μv − λεw − ε∂L/∂w; w ← w + v (v carries the old ε when ε changes).</summary>
    Paper,

    /// <summary>libtorch's SGD: v ← μv + (∂L/∂w + λw); w ← w − εv (equal to Paper while ε is constant).</summary>
    Torch,
}

public sealed record TrainOptions
{
    public string Model { get; init; } = Variants.Paper;
    public int Epochs { get; init; } = 90;                 // §5: "roughly 90 cycles"
    public int BatchSize { get; init; } = 128;             // §5
    public double LearningRate { get; init; } = 0.01;      // §5: ε = 0.01
    public double Momentum { get; init; } = 0.9;           // §5
    public double WeightDecay { get; init; } = 0.0005;     // §5
    public OptimizerKind Optimizer { get; init; } = OptimizerKind.Paper;
    public ScheduleKind Schedule { get; init; } = ScheduleKind.Plateau;
    public int Patience { get; init; } = 2;                // epochs without improvement before dividing ε
    public int MaxReductions { get; init; } = 3;           // §5: "reduced three times prior to termination"
    public double LrFactor { get; init; } = 0.1;           // §5: "divided by 10"
    public int[] StepEpochs { get; init; } = Array.Empty<int>();
    public double Power { get; init; } = 1;                // poly schedule's exponent
    public InitScheme? Init { get; init; }                 // null: the variant's default (§5 for paper)
    public Activation Activation { get; init; } = Activation.Relu;   // §3.1
    public bool Lrn { get; init; } = true;                 // §3.3
    // null: α as §3.3 prints it; code: α/n, as the authors' cuda-convnet2 computes it
    public LrnConvention? LrnConvention { get; init; }
    public int PoolWindow { get; init; } = 3;              // §3.4
    public int PoolStride { get; init; } = 2;
    public double Dropout { get; init; } = 0.5;            // §4.2
    public bool RandomCrop { get; init; } = true;          // §4.1
    public bool Flip { get; init; } = true;                // §4.1
    public double PcaStd { get; init; } = 0.1;             // §4.1: αᵢ ~ N(0, 0.1²)
    public bool SubtractMean { get; init; } = InputDefaults.SubtractMean;   // §2
    // × the centred 0–255 values; null: decided when the run starts (Initialization.InputScaleFor: 1, §2's raw values,
    // for §5's init)
    public float? InputScale { get; init; }
    // §2; imagenet: what torchvision's weights expect
    public InputNormalization Normalization { get; init; } = InputDefaults.Normalization;
    // −1: §4.1's default, 4 px for small images (AugmentOptions.PaperFor), 0 for ImageNet
    public int Pad { get; init; } = InputDefaults.Pad;
    // §4.1's patch side; null: 224 of 256, small images side + pad
    public int? Crop { get; init; }
    public string? RemoveLayer { get; init; }              // §7 ablation: drop one middle conv layer
    public long Seed { get; init; } = 1;
    public int CheckpointEvery { get; init; } = 0;          // steps; 0 = at the end of every epoch only
    // also checkpoint when this long has passed since the last (an ImageNet epoch is hours on a CPU); 0 = off
    public double CheckpointMinutes { get; init; } = 30;
    public int LogEvery { get; init; } = 50;                // steps between metric lines (and NaN checks)
    public int MaxSteps { get; init; } = 0;                 // 0 = no limit (tests and smoke runs)
    public int TrainLimit { get; init; } = 0;               // use only the first N training records (0 = all)
    // hold out N training records (chosen by Seed) to validate and select on; the val store is then the test set,
    // scored once at the end
    public int ValSplit { get; init; } = 0;
    // the views each validation (and the test scoring) averages: §4.1's centre or ten, or (not in the paper) the centre
    // and its reflection
    public ViewSet ValViews { get; init; } = ViewSet.Centre;

    // Not in the paper: what a modern reference trainer offers. All off by default, so the defaults stay §5's recipe.
    public double LabelSmoothing { get; init; } = 0;        // targets (1 − ε)·one-hot + ε/K (Szegedy et al. 2016)
    // ε rises linearly from ε/T to the schedule's over these epochs (Goyal et al. 2017)
    public double WarmupEpochs { get; init; } = 0;
    public bool Nesterov { get; init; } = false;            // Nesterov momentum (Sutskever et al. 2013) in §5's form
    // rescale ∂L/∂w when its global L2 norm exceeds this; 0 = off
    public double ClipGradNorm { get; init; } = 0;
    // decay of a moving average of the weights (Polyak); 0 = off
    public double Ema { get; init; } = 0;
    public double MixupAlpha { get; init; } = 0;            // mixup's Beta(α, α) (Zhang et al. 2018); 0 = off
    // CutMix's Beta(α, α) (Yun et al. 2019); 0 = off; with both, one of them per batch
    public double CutmixAlpha { get; init; } = 0;
    // bf16: the conv and FC products in bfloat16 from float32 weights (Precision.cs)
    public Precision Precision { get; init; } = Precision.Fp32;

    // Fine-tuning (not in the paper): start from a checkpoint's weights (an imported torchvision net, or a run of
    // ours).
    // checkpoint whose weights start the run; fc8 too when the classes match
    public string? InitFrom { get; init; }
    // conv1–conv5 keep their weights; only the classifier learns
    public bool FreezeFeatures { get; init; } = false;
    // ε of the layers taken from InitFrom, as a fraction of ε (fc8 re-initialised keeps ε)
    public double PretrainedLrFactor { get; init; } = 1;

    /// <summary>InputScale, or where it is left out the one the net's init expects
    /// (Initialization.InputScaleFor).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public float ResolvedInputScale => InputScale ?? Initialization.InputScaleFor(Init ?? Variants.Get(Model).Init);

    /// <summary>§4.1's crops for records of height×width, with the ablation switches of the options.</summary>
    public AugmentOptions Augment(int height, int width) => AugmentOptions.For(height, width, Pad, Crop) with
    {
        RandomCrop = RandomCrop,
        Flip = Flip,
        PcaStd = PcaStd,
        SubtractMean = SubtractMean,
        Scale = ResolvedInputScale,
        ChannelNorm = AlexNet.Data.Normalization.For(Normalization),
    };

    public string ToJson() => AlexNet.Json.Serialize(this);

    /// <summary>Reads options (a preset or a run's options.json); an unknown key is an error.</summary>
    public static TrainOptions FromJson(string json, string source) => AlexNet.Json.Parse<TrainOptions>(json, source);

    public void Validate()
    {
        Check(Epochs >= 1, "--epochs must be at least 1");
        Check(Precision != AlexNet.Model.Precision.Int8,
            "--precision int8 is for inference: train in fp32 or bf16, then `alexnet quantize` the checkpoint");
        Check(BatchSize >= 1, "--batch-size must be at least 1");
        Check(LearningRate > 0 && double.IsFinite(LearningRate), "--lr must be a positive number");
        Check(Momentum is >= 0 and < 1, "--momentum must be in [0, 1)");
        Check(WeightDecay >= 0, "--weight-decay must be ≥ 0");
        Check(Dropout is >= 0 and < 1, "--dropout must be in [0, 1)");
        Check(LrFactor is > 0 and < 1, "--lr-factor must be in (0, 1)");
        Check(Patience >= 1, "--patience must be at least 1");
        Check(Power > 0 && double.IsFinite(Power), "--power must be a positive number");
        Check(LogEvery >= 1, "--log-every must be at least 1");
        Check(CheckpointEvery >= 0 && MaxSteps >= 0, "--checkpoint-every and --max-steps must be ≥ 0");
        Check(CheckpointMinutes >= 0 && double.IsFinite(CheckpointMinutes), "--checkpoint-minutes must be ≥ 0");
        Check(LabelSmoothing is >= 0 and < 1, "--label-smoothing must be in [0, 1)");
        Check(WarmupEpochs >= 0 && WarmupEpochs <= Epochs, "--warmup-epochs must be between 0 and --epochs");
        Check(ClipGradNorm >= 0 && double.IsFinite(ClipGradNorm), "--clip-grad-norm must be ≥ 0");
        Check(ValSplit >= 0, "--val-split must be ≥ 0");
        Check(ValViews is not ViewSet.Both, "--val-views takes one of centre, ten or flip");
        Check(MixupAlpha >= 0 && CutmixAlpha >= 0 && double.IsFinite(MixupAlpha + CutmixAlpha),
            "--mixup-alpha and --cutmix-alpha must be ≥ 0");
        Check(Ema is >= 0 and < 1, "--ema must be in [0, 1) (0 = off; e.g. 0.999)");
        Check(PcaStd >= 0 && double.IsFinite(PcaStd), "--pca-std must be ≥ 0");
        Check(InputScale is null || float.IsFinite(InputScale.Value) && InputScale > 0,
            "--input-scale must be a positive number (e.g. 0.0125 = 1/80 for 0–255 pixels)");
        Check(Pad >= -1, "--pad must be ≥ 0 (or −1 for the default)");
        Check(PretrainedLrFactor is >= 0 and <= 1 && double.IsFinite(PretrainedLrFactor),
            "--pretrained-lr-factor must be in [0, 1]");
        Check(InitFrom is not null || (!FreezeFeatures && PretrainedLrFactor == 1),
            "--freeze and --pretrained-lr-factor need --init-from CKPT");
        Check(Crop is null or >= 1, "--crop must be at least 1");
        Check(PoolWindow >= 1 && PoolStride >= 1, "pooling window and stride must be at least 1");
        Check(RemoveLayer is null or "conv3" or "conv4", "--remove-layer takes conv3 or conv4 (the middle layers, §7)");
    }

    private static void Check(bool ok, string message)
    {
        if (!ok)
        {
            throw new ArgumentException(message);
        }
    }

    /// <summary>The network these options describe, for a data set of the given shape.</summary>
    public Architecture Architecture(int classes, int channels, int inputSize)
    {
        Architecture arch = Variants.Get(Model, classes, channels, inputSize);
        arch = arch with
        {
            Activation = Activation,
            Lrn = !Lrn ? null : LrnConvention is { } convention && arch.Lrn is { } lrn ? lrn with
            {
                Convention = convention,
            } : arch.Lrn,
            PoolWindow = PoolWindow,
            PoolStride = PoolStride,
            Dropout = Dropout,
            Init = Init ?? arch.Init,
        };
        if (RemoveLayer is not null)
        {
            // §7: conv4's input becomes conv2's output (or conv5's conv3's); groups are kept.
            int at = arch.Convs.FindIndex(c => c.Name == RemoveLayer);
            arch = arch with { Convs = arch.Convs.RemoveAt(at) };
        }
        arch.Validate();
        return arch;
    }
}

internal static class ImmutableArrayExtensions
{
    public static int FindIndex<T>(this System.Collections.Immutable.ImmutableArray<T> a, Func<T, bool> match)
    {
        for (int i = 0; i < a.Length; i++)
        {
            if (match(a[i]))
            {
                return i;
            }
        }
        return -1;
    }
}
