// The named networks. `paper` is §3.5 exactly; the others are the nets people compare it with.
using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;

namespace AlexNet.Model;

public static class Variants
{
    public const string Paper = "paper";
    public const string Paper1Gpu = "paper-1gpu";
    public const string Owt = "owt";
    public const string Small = "small";
    public const string Small1Gpu = "small-1gpu";
    public const string Figure1 = "fig1";

    /// <summary>Each variant's one-line provenance, in the order `--help` lists them.</summary>
    public static readonly IReadOnlyList<(string Name, string Description)> All = new[]
    {
        (Paper, "§3.5: the two-tower net of Figure 2 (conv2/4/5 grouped), 224×224 input, 60,965,224 parameters."),
        (Paper1Gpu, "§3.2's one-GPU baseline: half the kernels in conv1–conv4, conv5 and the FC layers full size."),
        (Owt, "\"One weird trick\" (arXiv 1404.5997): single tower 64-192-384-256-256, torchvision's `alexnet`."),
        (Small, "The paper's 8-layer design scaled for 28–32 px images (Fashion-MNIST, CIFAR-10): the quick start's " +
            "net."),
        (Small1Gpu, "`small` as §3.2's one-GPU baseline: half the kernels in conv1–conv4, no towers (the `towers` " +
            "ablation)."),
        (Figure1, "§3.1 Figure 1's four-layer CNN (cuda-convnet's layers-80sec: conv 32-32-64 5×5, 3/2 pools, one " +
            "FC): relu-vs-tanh."),
    };

    public static Architecture Get(string name, int classes = 1000, int inputChannels = 3, int? inputSize = null)
    {
        Architecture arch = name switch
        {
            Paper => PaperNet(classes, inputChannels, inputSize ?? 224),
            Paper1Gpu => PaperOneGpu(classes, inputChannels, inputSize ?? 224),
            Owt => OneWeirdTrick(classes, inputChannels, inputSize ?? 224),
            Small => SmallNet(classes, inputChannels, inputSize ?? 28),
            Small1Gpu => SmallOneGpu(classes, inputChannels, inputSize ?? 28),
            Figure1 => FourLayer(classes, inputChannels, inputSize ?? 32),
            _ => throw new ArgumentException(
                $"Unknown model '{name}'. Known: {string.Join(", ", All.Select(v => v.Name))}."),
        };
        arch.Validate();
        return arch;
    }

    /// <summary>
    /// §3.5, Figure 2. Input 224×224 with conv1 padding 2: (224 + 4 − 11)/4 + 1 = 55, as the figure's 55×55×96,
    /// keeping the paper's 224 crops (Caffe instead feeds 227 unpadded; both give 55).
    /// </summary>
    private static Architecture PaperNet(int classes, int channels, int size) => new(
        Paper, channels, size, classes,
        ImmutableArray.Create(
            new ConvLayer("conv1", 96, 11, 4, 2, 1, Lrn: true, Pool: true, BiasOne: false),
            new ConvLayer("conv2", 256, 5, 1, 2, 2, Lrn: true, Pool: true, BiasOne: true),
            new ConvLayer("conv3", 384, 3, 1, 1, 1, Lrn: false, Pool: false, BiasOne: false),
            new ConvLayer("conv4", 384, 3, 1, 1, 2, Lrn: false, Pool: false, BiasOne: true),
            new ConvLayer("conv5", 256, 3, 1, 1, 2, Lrn: false, Pool: true, BiasOne: true)),
        ImmutableArray.Create(new FcLayer("fc6", 4096, BiasOne: true), new FcLayer("fc7", 4096, BiasOne: true)),
        Activation.Relu, new LrnParams(Towers: 2), PoolWindow: 3, PoolStride: 2, Dropout: 0.5, InitScheme.Paper,
        TorchvisionLayout: false);

    /// <summary>
    /// §3.2: "a net with half as many kernels in each convolutional layer trained on one GPU" (conv5 and FC full).
    /// </summary>
    private static Architecture PaperOneGpu(int classes, int channels,
        int size) => PaperNet(classes, channels, size) with
        {
            Variant = Paper1Gpu,
            Lrn = new LrnParams(),
            Convs = ImmutableArray.Create(
            new ConvLayer("conv1", 48, 11, 4, 2, 1, Lrn: true, Pool: true, BiasOne: false),
            new ConvLayer("conv2", 128, 5, 1, 2, 1, Lrn: true, Pool: true, BiasOne: true),
            new ConvLayer("conv3", 192, 3, 1, 1, 1, Lrn: false, Pool: false, BiasOne: false),
            new ConvLayer("conv4", 192, 3, 1, 1, 1, Lrn: false, Pool: false, BiasOne: true),
            new ConvLayer("conv5", 256, 3, 1, 1, 1, Lrn: false, Pool: true, BiasOne: true)),
        };

    /// <summary>
    /// Krizhevsky 2014, torchvision's `alexnet`: no LRN, no groups, dropout before fc6 and fc7, adaptive 6×6 pool.
    /// Module indices match torchvision's state_dict (features.0 … classifier.6) so its weights load.
    /// </summary>
    private static Architecture OneWeirdTrick(int classes, int channels, int size) => new(
        Owt, channels, size, classes,
        ImmutableArray.Create(
            new ConvLayer("conv1", 64, 11, 4, 2, 1, Lrn: false, Pool: true, BiasOne: false),
            new ConvLayer("conv2", 192, 5, 1, 2, 1, Lrn: false, Pool: true, BiasOne: true),
            new ConvLayer("conv3", 384, 3, 1, 1, 1, Lrn: false, Pool: false, BiasOne: false),
            new ConvLayer("conv4", 256, 3, 1, 1, 1, Lrn: false, Pool: false, BiasOne: true),
            new ConvLayer("conv5", 256, 3, 1, 1, 1, Lrn: false, Pool: true, BiasOne: true)),
        ImmutableArray.Create(new FcLayer("fc6", 4096, BiasOne: true), new FcLayer("fc7", 4096, BiasOne: true)),
        Activation.Relu, Lrn: null, PoolWindow: 3, PoolStride: 2, Dropout: 0.5, InitScheme.Paper,
        TorchvisionLayout: true);

    /// <summary>
    /// The same 8-layer design for 28–32 px inputs: conv1 5×5 stride 1 (the paper's 11×11/4 exists to shrink
    /// 224 px; a 28 px image has nothing to shrink), unpadded like Caffe's conv1 on 227 px, widths about a third
    /// of the paper's (32-64-96-96-64), LRN after conv1 and conv2, overlapping 3/2 pooling after conv1, conv2,
    /// conv5, grouped conv2/4/5, fc6/fc7 of 512 with dropout. At 28 px: 28 → 24 → 11 → 5 → 2, so fc6 reads
    /// 2×2×64 = 256 features and every pool covers its whole map (a padded conv1 gave 28 → 13 → 6, whose last
    /// pool skips conv5's last row and column, for 1.4× the work: docs/results.md).
    /// Init is He's fan-in scaled normal: N(0, 0.01²) leaves this net's loss stuck at ln 10 (docs/paper-map.md).
    /// </summary>
    private static Architecture SmallNet(int classes, int channels, int size) => new(
        Small, channels, size, classes,
        ImmutableArray.Create(
            new ConvLayer("conv1", 32, 5, 1, 0, 1, Lrn: true, Pool: true, BiasOne: false),
            new ConvLayer("conv2", 64, 5, 1, 2, 2, Lrn: true, Pool: true, BiasOne: true),
            new ConvLayer("conv3", 96, 3, 1, 1, 1, Lrn: false, Pool: false, BiasOne: false),
            new ConvLayer("conv4", 96, 3, 1, 1, 2, Lrn: false, Pool: false, BiasOne: true),
            new ConvLayer("conv5", 64, 3, 1, 1, 2, Lrn: false, Pool: true, BiasOne: true)),
        ImmutableArray.Create(new FcLayer("fc6", 512, BiasOne: true), new FcLayer("fc7", 512, BiasOne: true)),
        Activation.Relu, new LrnParams(Towers: 2), PoolWindow: 3, PoolStride: 2, Dropout: 0.5, InitScheme.Kaiming,
        TorchvisionLayout: false);

    /// <summary>
    /// §3.2's comparison at small scale: half the kernels in conv1–conv4 on "one GPU", conv5 and FC full size.
    /// </summary>
    private static Architecture SmallOneGpu(int classes, int channels,
        int size) => SmallNet(classes, channels, size) with
        {
            Variant = Small1Gpu,
            Lrn = new LrnParams(),
            Convs = ImmutableArray.Create(
            new ConvLayer("conv1", 16, 5, 1, 0, 1, Lrn: true, Pool: true, BiasOne: false),
            new ConvLayer("conv2", 32, 5, 1, 2, 1, Lrn: true, Pool: true, BiasOne: true),
            new ConvLayer("conv3", 48, 3, 1, 1, 1, Lrn: false, Pool: false, BiasOne: false),
            new ConvLayer("conv4", 48, 3, 1, 1, 1, Lrn: false, Pool: false, BiasOne: true),
            new ConvLayer("conv5", 64, 3, 1, 1, 1, Lrn: false, Pool: true, BiasOne: true)),
        };

    /// <summary>
    /// Figure 1's "four-layer convolutional neural network" on CIFAR-10: the paper does not list it; this is
    /// cuda-convnet's layers-80sec net of the same author and year (three 5×5 conv layers of 32, 32, 64 maps,
    /// each followed by a 3/2 max-pool, and one fully connected layer). No LRN, no dropout: Figure 1 used
    /// "no regularization of any kind".
    /// </summary>
    private static Architecture FourLayer(int classes, int channels, int size) => new(
        Figure1, channels, size, classes,
        ImmutableArray.Create(
            new ConvLayer("conv1", 32, 5, 1, 2, 1, Lrn: false, Pool: true, BiasOne: false),
            new ConvLayer("conv2", 32, 5, 1, 2, 1, Lrn: false, Pool: true, BiasOne: false),
            new ConvLayer("conv3", 64, 5, 1, 2, 1, Lrn: false, Pool: true, BiasOne: false)),
        ImmutableArray<FcLayer>.Empty,
        Activation.Relu, Lrn: null, PoolWindow: 3, PoolStride: 2, Dropout: 0,
        InitScheme.Kaiming, TorchvisionLayout: false);
}
