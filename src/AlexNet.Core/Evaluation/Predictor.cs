// §6.1, Figure 4 (left): the five most probable classes of an image, its softmax averaged over §4.1's ten
// views (Evaluator.Probabilities, the same average `alexnet eval` takes), or the centre crop alone as torchvision
// classifies. Files go through §2's
// preprocessing at the checkpoint's record size; store records are used as they are, with their true class.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json.Serialization;
using AlexNet.Data;
using AlexNet.Inference;
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Evaluation;

public sealed record ClassScore(int Index, string Name, double Probability);

/// <param name="Source">The file, or the store record ("STORE:INDEX").</param>
/// <param name="TrueClass">The correct class where known (store records), as Figure 4 labels each image.</param>
/// <param name="Record">The §2 record the net saw (planar bytes), for drawing.</param>
public sealed record Prediction(string Source, int? TrueClass, string? TrueName, ClassScore[] Top,
    [property: JsonIgnore] byte[] Record, [property: JsonIgnore] int Side, [property: JsonIgnore] int Channels);

/// <summary>A file that could not be classified, and why (the others still are).</summary>
public sealed record FileFailure(string File, string Reason);

public static class Predictor
{
    /// <summary>
    /// Image files: the top <paramref name="top"/> classes of each, averaged over <paramref name="views"/> (default
    /// §4.1's ten).
    /// </summary>
    public static List<Prediction> PredictFiles(AlexNetModel model, ModelCard card,
        IReadOnlyList<string> files, int top,
        IReadOnlyList<View>? views = null)
    {
        byte[][] records = files.Select(f => LoadRecord(f, card)).ToArray();
        return Predict(model, card, records, top, files.ToArray(), trueClasses: null, views);
    }

    /// <summary>Records already read (LoadRecords), named by <paramref name="sources"/>.</summary>
    public static List<Prediction> PredictRecords(AlexNetModel model, ModelCard card,
        byte[][] records, string[] sources, int top,
        IReadOnlyList<View>? views = null) => Predict(model, card, records, top, sources, trueClasses: null, views);

    /// <summary>
    /// Files through §2's preprocessing, each on its own: one that is missing or cannot be decoded is listed in the
    /// failures with the reason, and the rest are read.
    /// </summary>
    public static (byte[][] Records, string[] Files, List<FileFailure> Failures) LoadRecords(
        IReadOnlyList<string> files, int side, int channels)
    {
        var records = new List<byte[]>();
        var read = new List<string>();
        var failures = new List<FileFailure>();
        foreach (string file in files)
        {
            try
            {
                records.Add(LoadRecord(file, side, channels));
                read.Add(file);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                failures.Add(new FileFailure(file, e.Message));
            }
        }
        return (records.ToArray(), read.ToArray(), failures);
    }

    /// <summary>Records of a store, labelled with their true classes.</summary>
    public static List<Prediction> PredictRecords(AlexNetModel model, ModelCard card, ImageStore store,
        IReadOnlyList<int> indices, int top)
    {
        byte[][] records = indices.Select(i => store.Record(i).ToArray()).ToArray();
        string[] sources = indices.Select(i => $"{store.Directory}:{i}").ToArray();
        return Predict(model, card, records, top, sources, indices.Select(i => store.Labels[i]).ToArray());
    }

    private static List<Prediction> Predict(AlexNetModel model, ModelCard card, byte[][] records, int top,
        string[] sources, int[]? trueClasses,
        IReadOnlyList<View>? views = null)
    {
        if (records.Length == 0)
        {
            return new List<Prediction>();
        }
        using Tensor p = Evaluator.Probabilities(new[] { model }, new RecordViews(records, card.TestAugmentation()),
            views ?? Evaluator.TenViews, card.Classes);
        float[] all = p.data<float>().ToArray();
        int k = card.Classes;
        var result = new List<Prediction>();
        for (int n = 0; n < records.Length; n++)
        {
            int row = n;
            ClassScore[] best = Best(c => all[row * k + c], k, card.ClassNames, top);
            int? truth = trueClasses?[n];
            result.Add(new Prediction(sources[n], truth,
                truth is int t ? Evaluator.Name(card.ClassNames, t) : null, best, records[n],
                card.RecordSize, card.Channels));
        }
        return result;
    }

    /// <summary>
    /// The <paramref name="top"/> most probable of <paramref name="k"/> classes, most probable first.
    /// </summary>
    public static ClassScore[] Best(Func<int, double> probability, int k, string[] names, int top) =>
        Enumerable.Range(0, k).OrderByDescending(probability).Take(Math.Min(top, k))
            .Select(c => new ClassScore(c, Evaluator.Name(names, c), probability(c))).ToArray();

    /// <summary>
    /// A file through §2's preprocessing, at the record size (and channels) the checkpoint was trained on.
    /// </summary>
    public static byte[] LoadRecord(string file, ModelCard card) => LoadRecord(file, card.RecordSize, card.Channels);

    /// <summary>
    /// A file through §2's preprocessing: the central square rescaled to <paramref name="side"/>², RGB or gray.
    /// </summary>
    public static byte[] LoadRecord(string file, int side, int channels)
    {
        if (!File.Exists(file))
        {
            throw new FileNotFoundException($"{file} does not exist.", file);
        }
        try
        {
            return ToChannels(ImageDecoder.CentreSquare(file, side), side, channels);
        }
        catch (ImageRejectedException e)
        {
            throw new InvalidDataException($"{file}: {e.Message}. Pass a JPEG, PNG, WebP, BMP or GIF image.");
        }
    }

    /// <summary>
    /// An encoded image in memory (a request's body) through §2's preprocessing; one over <paramref name="maxPixels"/>
    /// is refused before decoding.
    /// </summary>
    public static byte[] DecodeRecord(byte[] encoded, int side, int channels, long maxPixels = ImageDecoder.MaxPixels)
    {
        if (encoded.Length == 0)
        {
            throw new ImageRejectedException("empty image (0 bytes)");
        }
        return ToChannels(ImageDecoder.CentreSquare(encoded, side, maxPixels), side, channels);
    }

    /// <summary>Planar RGB as the net's channels: as it is, or its luma for nets trained on grayscale data.</summary>
    private static byte[] ToChannels(byte[] planarRgb, int side, int channels) =>
        channels == 1 ? ToGray(planarRgb, side * side) : planarRgb;

    /// <summary>ITU-R 601 luma, for nets trained on grayscale data.</summary>
    private static byte[] ToGray(byte[] planarRgb, int plane)
    {
        var gray = new byte[plane];
        for (int i = 0; i < plane; i++)
        {
            gray[i] = (byte)Math.Round(0.299 * planarRgb[i] + 0.587 * planarRgb[plane + i] +
                0.114 * planarRgb[2 * plane + i]);
        }
        return gray;
    }
}
