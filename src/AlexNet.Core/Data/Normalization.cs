// Not the paper's: torchvision's ImageNet weights were trained on RGB/255 normalised per channel, not on §2's
// centred raw values, so a net imported from them is fed the same (Augmentation.cs applies either).
using System;

namespace AlexNet.Data;

/// <summary>A per-channel mean and standard deviation of RGB values scaled to [0, 1].</summary>
public sealed record Normalization(float[] Mean, float[] Std)
{
    /// <summary>torchvision's (and most ImageNet models'): the ImageNet training set's channel statistics.</summary>
    public static readonly Normalization Imagenet = new(new[] { 0.485f, 0.456f, 0.406f },
        new[] { 0.229f, 0.224f, 0.225f });

    /// <summary>The channel statistics <paramref name="normalization"/> divides by (null: §2's mean image).</summary>
    public static Normalization? For(InputNormalization normalization) =>
        normalization == InputNormalization.Imagenet ? Imagenet : null;

    public void Validate(int channels)
    {
        if (Mean.Length != channels || Std.Length != channels || Array.Exists(Std, s => !(s > 0)))
        {
            throw new ArgumentException(
                $"a per-channel normalisation needs {channels} means and {channels} positive standard deviations; " +
                $"the images have {channels} channel(s) (torchvision's ImageNet normalisation is for RGB).");
        }
    }
}

/// <summary>How a record's 0–255 pixels become the net's input.</summary>
public enum InputNormalization
{
    /// <summary>§2: minus the training set's mean image (per pixel), times InputScale.</summary>
    MeanImage,

    /// <summary>torchvision's ImageNet weights: (x/255 − mean)/std per RGB channel (Normalization.cs).</summary>
    Imagenet,
}

/// <summary>
/// §2's and §4.1's input as a run takes it unless told: TrainOptions' defaults, and so what a checkpoint written before
/// a setting existed was trained with (ModelFile reads such headers without the training code).
/// </summary>
public static class InputDefaults
{
    /// <summary>§4.1's default: 4 px for small images, 0 for ImageNet (AugmentOptions.For).</summary>
    public const int Pad = -1;

    /// <summary>§2: the training set's mean image subtracted.</summary>
    public const bool SubtractMean = true;

    /// <summary>§2's mean image, not torchvision's channel statistics.</summary>
    public const InputNormalization Normalization = InputNormalization.MeanImage;
}
