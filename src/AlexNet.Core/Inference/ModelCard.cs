// What a trained net is, apart from how it was trained: its architecture (§3.5), its classes with their names, and
// the test-time input pipeline it expects (§2's records and mean image, §4.1's centre patch and ten views, the
// input scale or torchvision's per-channel normalisation). Every checkpoint and every ONNX file carries one, and
// evaluation, prediction, features, export, serving and fine-tuning read nothing else about the net.
using System;
using System.Text.Json.Serialization;
using AlexNet.Data;
using AlexNet.Model;

namespace AlexNet.Inference;

/// <summary>§2 and §4.1 at test time: how a file becomes the net's input.</summary>
/// <param name="Normalization">§2's mean image times InputScale, or torchvision's per-channel statistics.</param>
/// <param name="Channels">3 (RGB) or 1 (grayscale, ITU-R 601 luma).</param>
/// <param name="RecordSize">Side of the square §2 records: the central square of a file rescaled to it.</param>
/// <param name="Crop">Side of the §4.1 patches fed to the net.</param>
/// <param name="Pad">Zero padding of the record before cropping (small images).</param>
/// <param name="SubtractMean">false only for the mean-subtraction ablation.</param>
/// <param name="InputScale">Multiplies the centred 0–255 values.</param>
/// <param name="ChannelMean">torchvision's per-channel mean of RGB/255 (Normalization Imagenet), else null.</param>
/// <param name="ChannelStd">Its per-channel standard deviation, else null.</param>
public sealed record Preprocessing(InputNormalization Normalization, int Channels, int RecordSize, int Crop, int Pad,
    bool SubtractMean, float InputScale, float[]? ChannelMean, float[]? ChannelStd)
{
    /// <summary>The test-time settings: no random crop, reflection or colour noise.</summary>
    public AugmentOptions Augment() =>
        new(Crop, Pad, RandomCrop: false, Flip: false, PcaStd: 0, SubtractMean, InputScale,
        ChannelMean is null || ChannelStd is null ? null : new Normalization(ChannelMean, ChannelStd));

    /// <summary>From the options a net was trained with, for its records' side.</summary>
    public static Preprocessing Of(AugmentOptions a, InputNormalization normalization, int channels, int recordSize) =>
        new(normalization, channels, recordSize, a.Crop, a.Pad, a.SubtractMean, a.Scale, a.ChannelNorm?.Mean,
        a.ChannelNorm?.Std);
}

/// <summary>
/// A trained net's identity: architecture, named classes and preprocessing. Training state is not part of it.
/// </summary>
/// <param name="MeanImage">§2's mean image of the training records (C×R×R, planar), or empty under per-channel
/// normalisation.</param>
/// <param name="Int8">The int8 calibration (`alexnet quantize`), or null for a net not quantized.</param>
public sealed record ModelCard(Architecture Architecture, string[] ClassNames, Preprocessing Preprocessing,
    float[] MeanImage,
    Int8Quantization? Int8 = null)
{
    public int Classes => Architecture.Classes;
    public int Channels => Architecture.InputChannels;
    public int RecordSize => Preprocessing.RecordSize;

    /// <summary>One line for people: net, classes, input, normalisation, LRN.</summary>
    [JsonIgnore]
    public string Summary =>
        $"{Architecture.Variant}, {Classes} classes, {Channels}×{Preprocessing.Crop}² views of {RecordSize}² " +
        "records, " +
        (Preprocessing.Normalization == InputNormalization.Imagenet ? "torchvision's per-channel normalisation"
            : $"§2's mean image × {Preprocessing.InputScale:G4}") +
        $", LRN {(Architecture.Lrn is { } lrn ? lrn.Describe() : "none")}";

    /// <summary>
    /// The card of a net trained on <paramref name="storeHeight"/>×<paramref name="storeWidth"/> records with the
    /// run's <paramref name="pad"/>, <paramref name="crop"/> and input settings (what a checkpoint without a card
    /// implies).
    /// </summary>
    public static ModelCard Derive(Architecture architecture, string[] classNames, float[] meanImage, int storeHeight,
        int storeWidth, int pad, int? crop,
        bool subtractMean, float inputScale, InputNormalization normalization)
    {
        AugmentOptions a = AugmentOptions.For(storeHeight, storeWidth, pad, crop) with
        {
            SubtractMean = subtractMean,
            Scale = inputScale,
            ChannelNorm = Normalization.For(normalization),
        };
        return new ModelCard(architecture, classNames,
            Preprocessing.Of(a, normalization, architecture.InputChannels, storeHeight), meanImage);
    }

    /// <summary>
    /// §4.1's test-time pipeline for this net: the mean image, the centre patch and the ten views (no PCA noise at
    /// test).
    /// </summary>
    public Augmentation TestAugmentation() =>
        new(Channels, RecordSize, RecordSize, MeanImage, PcaStats.None(Channels), Preprocessing.Augment());

    /// <summary>Refuses a card whose parts do not fit together (a damaged or hand-edited header).</summary>
    public void Validate(string source)
    {
        bool meanImage = Preprocessing.Normalization == InputNormalization.MeanImage && Preprocessing.SubtractMean;
        if (Preprocessing.Channels != Channels || (meanImage && MeanImage.Length != Channels * RecordSize * RecordSize))
        {
            throw new System.IO.InvalidDataException(
                $"{source}: its model card does not fit together ({Channels} channels, a mean image " +
                $"of {MeanImage.Length} " +
                $"values for {RecordSize}² records). Use another checkpoint, or export it again.");
        }
    }
}
