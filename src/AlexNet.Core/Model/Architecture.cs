// §3.5 The overall architecture, as data: one record per learned layer, so that the builder, the summary
// table, the ablations and the tests all read the same description of the net.
//
// Shapes: N = batch, C = channels, H×W = spatial size; every tensor in the net is N×C×H×W until fc6.
using System;
using System.Collections.Immutable;
using System.Linq;
using System.Text.Json.Serialization;

namespace AlexNet.Model;

/// <summary>The non-linearity after every conv and FC layer (§3.1: ReLU; tanh for Figure 1).</summary>
public enum Activation
{
    Relu,
    Tanh,
}

/// <summary>How weights and biases start (§5).</summary>
public enum InitScheme
{
    /// <summary>§5: weights ~ N(0, 0.01²); bias 1 on conv2, conv4, conv5, fc6, fc7; 0 elsewhere.</summary>
    Paper,

    /// <summary>§5's N(0, 0.01²) weights with every bias 0 (Caffe's reference net: bias 1 can stall).</summary>
    PaperZeroBias,

    /// <summary>
    /// He et al. 2015: N(0, 2/fan_in), biases 0. Trains the scaled-down nets where N(0, 0.01²) does not.
    /// </summary>
    Kaiming,
}

/// <summary>How α scales §3.3's sum of squares: the printed formula, or the authors' own code.</summary>
public enum LrnConvention
{
    /// <summary>§3.3 as printed: k + α Σ a² (the default: the paper is what this project reproduces).</summary>
    Paper,

    /// <summary>
    /// Krizhevsky's cuda-convnet2 (layer.py divides the cross-map scale by size; the ImageNet config gives scale
    /// 0.0001, size 5), as PyTorch and Caffe compute it: k + (α/n) Σ a², a fifth of the printed effect at n = 5.
    /// </summary>
    Code,
}

/// <summary>
/// §3.3: b = a / (k + α Σ a²)^β over n adjacent channels, α as the paper writes it (not divided by n).
/// </summary>
/// <param name="Towers">§3.2: the net's towers; each normalises its own kernel maps (its GPU holds no others), so the n
/// adjacent channels never cross from one tower's half of the maps into the other's. 1: all channels are
/// adjacent.</param>
/// <param name="Convention">Whether α multiplies the sum as printed (null: the paper's, and left out of the files), or
/// α/n as the authors' code does.</param>
public sealed record LrnParams(int Size = 5, double Alpha = 1e-4, double Beta = 0.75, double K = 2.0, int Towers = 1,
    LrnConvention? Convention = null)
{
    /// <summary>What multiplies Σ a² in the denominator: α, or α/n under the authors' code's convention.</summary>
    [JsonIgnore]
    public double SumScale => Convention == LrnConvention.Code ? Alpha / Size : Alpha;

    /// <summary>libtorch, Caffe and ONNX divide their α by n inside the sum, so the sum's scale is that α/n.</summary>
    [JsonIgnore]
    public double TorchAlpha => SumScale * Size;

    /// <summary>For messages: which sum, over which maps.</summary>
    public string Describe() =>
        $"n = {Size}, k = {K}, β " +
        $"= {Beta}, {(Convention == LrnConvention.Code ? $"(α/n)·Σa² with α = {Alpha} (the authors' code)" : $"α·Σa² with α = {Alpha} (as printed)")}" +
        (Towers > 1 ? $", within each of {Towers} towers' maps" : ", across all maps");

    /// <summary>
    /// Any n ≥ 1: an even n takes PyTorch's window, one more channel below than above (LrnKernel.cs).
    /// </summary>
    public void Validate()
    {
        if (Size < 1 || K < 0 || Alpha < 0 || Beta < 0 || Towers < 1)
        {
            throw new ArgumentException(
                $"LRN needs n ≥ 1, k ≥ 0, α ≥ 0, β ≥ 0 and at least one tower; got n={Size}, k={K}, α={Alpha}, " +
                $"β={Beta}, towers={Towers}.");
        }
    }
}

/// <summary>One convolutional stage of Figure 2: conv → activation → optional LRN → optional max-pool.</summary>
/// <param name="Groups">2 = the two towers of §3.2 (each half reads only the maps on its own GPU).</param>
/// <param name="BiasOne">§5: this layer's bias starts at 1 under <see cref="InitScheme.Paper"/>.</param>
public sealed record ConvLayer(string Name, int Kernels, int Size, int Stride, int Padding, int Groups,
    bool Lrn, bool Pool, bool BiasOne);

/// <summary>A hidden fully connected layer (fc6, fc7): linear → activation → dropout (§4.2).</summary>
public sealed record FcLayer(string Name, int Units, bool BiasOne);

/// <summary>
/// An immutable description of one network. The variants in <see cref="Variants"/> build these; the ablations
/// change one field with <c>with</c>.
/// </summary>
public sealed record Architecture(
    string Variant,
    int InputChannels,
    int InputSize,
    int Classes,
    ImmutableArray<ConvLayer> Convs,
    ImmutableArray<FcLayer> Hidden,
    Activation Activation,
    LrnParams? Lrn,
    int PoolWindow,
    int PoolStride,
    double Dropout,
    InitScheme Init,
    bool TorchvisionLayout)
{
    /// <summary>Spatial size after each conv stage (and its pool), and the flattened fc6 input.</summary>
    public (int Size, int Channels)[] ConvOutputs()
    {
        var result = new (int, int)[Convs.Length];
        int size = InputSize;
        int channels = InputChannels;
        for (int i = 0; i < Convs.Length; i++)
        {
            ConvLayer c = Convs[i];
            if (channels % c.Groups != 0 || c.Kernels % c.Groups != 0)
            {
                throw new ArgumentException(
                    $"{c.Name}: {channels} input maps and {c.Kernels} kernels cannot be split into {c.Groups} towers.");
            }
            if (c.Lrn && Lrn is not null && c.Kernels % Lrn.Towers != 0)
            {
                throw new ArgumentException($"{c.Name}: {c.Kernels} maps cannot be normalised in {Lrn.Towers} towers.");
            }
            size = Shapes.OutputSize(size, c.Size, c.Stride, c.Padding);
            if (c.Pool)
            {
                size = Shapes.PooledSize(size, PoolWindow, PoolStride);
            }
            if (size < 1)
            {
                throw new ArgumentException(
                    $"Input {InputSize}×{InputSize} is too small for {Variant}: {c.Name}'s output would be empty.");
            }
            channels = c.Kernels;
            result[i] = (size, channels);
        }
        return result;
    }

    /// <summary>fc6's input width: C×H×W after the last pool (6×6×256 = 9216 for the paper's net).</summary>
    [JsonIgnore]
    public int FlattenedFeatures
    {
        get
        {
            (int size, int channels) = ConvOutputs().Last();
            // The torchvision layout pools adaptively to 6×6 before fc6 whatever the input size.
            return TorchvisionLayout ? channels * 36 : channels * size * size;
        }
    }

    public void Validate()
    {
        if (InputChannels < 1 || Classes < 2 || InputSize < 1)
        {
            throw new ArgumentException(
                $"{Variant}: need at least 1 input channel, 2 classes and a positive input size.");
        }
        if (Dropout is < 0 or >= 1)
        {
            throw new ArgumentException($"dropout probability must be in [0, 1), got {Dropout}.");
        }
        _ = ConvOutputs();
    }
}
