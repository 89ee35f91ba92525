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
