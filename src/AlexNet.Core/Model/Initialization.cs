// §5 "We initialized the weights in each layer from a zero-mean Gaussian distribution with standard
// deviation 0.01. We initialized the neuron biases in the second, fourth, and fifth convolutional layers,
// as well as in the fully-connected hidden layers, with the constant 1 ... [it] accelerates the early
// stages of learning by providing the ReLUs with positive inputs."
using System;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Model;

public static class Initialization
{
    public const double PaperStd = 0.01;

    /// <summary>The centred 0–255 values × 1/80 (≈ 1/σ of the pixels): the input a fan-in-scaled init
    /// expects.</summary>
    public const float FanInInputScale = 0.0125f;

    /// <summary>
    /// The input scale a net takes when none is given, from its init: a fan-in-scaled init (He et al.) expects
    /// inputs of unit variance, so the centred 0–255 values (σ ≈ 60–90) are multiplied by 1/80; §5's N(0, 0.01²) was
    /// chosen for §2's raw values, scale 1.
    /// </summary>
    public static float InputScaleFor(InitScheme init) => init == InitScheme.Kaiming ? FanInInputScale : 1f;

    /// <summary> Initialises one learned layer. <paramref name="biasOne"/> marks conv2/4/5, fc6, fc7; <paramref
    /// name="output"/> marks fc8, whose outputs go to the softmax rather than through a ReLU.
    /// </summary>
    public static void Apply(Tensor weight, Tensor bias, bool biasOne, InitScheme scheme,
        Generator generator, bool output = false)
    {
        using var _ = no_grad();
        switch (scheme)
        {
            case InitScheme.Paper:
                weight.normal_(0, PaperStd, generator);
                bias.fill_(biasOne ? 1.0 : 0.0);
                break;
            case InitScheme.PaperZeroBias:
                weight.normal_(0, PaperStd, generator);
                bias.zero_();
                break;
            case InitScheme.Kaiming:
                // fan_in = (C_in / groups)·kh·kw, the inputs one output neuron actually sees. He et al.'s gain 2 makes
                // up for the half of its inputs a ReLU zeroes; fc8 feeds the softmax, not a ReLU, so it takes gain 1 —
                // with gain 2 there, Figure 1's four-layer ReLU net started at loss ~4.3 instead of ln 10 ≈ 2.3
                // (docs/results).
                long fanIn = weight.numel() / weight.shape[0];
                weight.normal_(0, Math.Sqrt((output ? 1.0 : 2.0) / fanIn), generator);
                bias.zero_();
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(scheme), scheme, null);
        }
    }
}
