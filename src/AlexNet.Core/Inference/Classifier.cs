// A trained net ready for inference, loaded in one call: its weights and its model card. Prediction (§6.1,
// Figure 4 left: the softmax averaged over §4.1's views), the last hidden layer's features (§6.1's fc7, for
// retrieval) and the decoding of files or in-memory images through §2's preprocessing all read the card alone.
using System;
using System.Collections.Generic;
using System.Linq;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Inference;

public sealed class Classifier : IDisposable
{
    private Classifier(AlexNetModel model, ModelCard card, string source)
    {
        Model = model;
        Card = card;
        Source = source;
        Augmentation = card.TestAugmentation();
    }

    public AlexNetModel Model { get; }
    public ModelCard Card { get; }

    /// <summary>The checkpoint it was loaded from.</summary>
    public string Source { get; }

    /// <summary>§4.1's test-time cut of a record (centre patch and the ten views).</summary>
    public Augmentation Augmentation { get; }

    /// <summary>
    /// Loads a checkpoint of any build (its card is read, or derived from an earlier build's header) for inference.
    /// </summary>
    /// <param name="precision">The products' number format (null: the run's own, or float32 where bf16 is
    /// slow).</param>
    /// <param name="device">Where the net runs (null: the CPU).</param>
    /// <param name="averagedWeights">The run's weight average (--ema) instead of its weights.</param>
    /// <param name="engine">What runs inference on the CPU (Model/Kernels/OneDnnNet.cs).</param>
    public static Classifier Load(string checkpoint, Precision? precision = null, Device? device = null,
        bool averagedWeights = false,
        AlexNet.Model.Kernels.InferenceEngine engine = AlexNet.Model.Kernels.InferenceEngine.Auto)
    {
        (AlexNetModel model, ModelCard card) = ModelFile.Load(checkpoint, averagedWeights, device, precision, engine);
        // libtorch is loaded now; a caller that never set threads would see NNPACK's warnings
        Compute.DisableNnpack();
        return new Classifier(model, card, checkpoint);
    }

    /// <summary>A file through §2's preprocessing at the card's record size and channels.</summary>
    public byte[] Read(string file) => Predictor.LoadRecord(file, Card);

    /// <summary>
    /// An encoded image in memory (JPEG, PNG, WebP, BMP, GIF) through §2's preprocessing; larger than <paramref
    /// name="maxPixels"/> is refused before decoding.
    /// </summary>
    public byte[] Decode(byte[] encoded, long maxPixels = ImageDecoder.MaxPixels) =>
        Predictor.DecodeRecord(encoded, Card.RecordSize, Card.Channels, maxPixels);

    /// <summary>
    /// The top <paramref name="top"/> classes of each record, the softmax averaged over <paramref name="views"/>
    /// (default §4.1's ten).
    /// </summary>
    public List<Prediction> Predict(byte[][] records, string[] sources, int top, IReadOnlyList<View>? views = null) =>
        Predictor.PredictRecords(Model, Card, records, sources, top, views);

    /// <summary>Softmax averaged over <paramref name="views"/>: N×K, row-major.</summary>
    public float[] Probabilities(IReadOnlyList<byte[]> records, IReadOnlyList<View> views)
    {
        using Tensor p = Evaluator.Probabilities(new[] { Model }, new RecordViews(records, Augmentation), views,
            Card.Classes);
        return p.data<float>().ToArray();
    }

    /// <summary>
    /// §6.1: the activations of <paramref name="layer"/> (fc7 by default) for the centre view of each record, N×D.
    /// </summary>
    public float[] Features(IReadOnlyList<byte[]> records, string layer = "fc7")
    {
        int length = Augmentation.OutputLength;
        var input = new float[records.Count * length];
        for (int i = 0; i < records.Count; i++)
        {
            Augmentation.Test(records[i], input.AsSpan(i * length, length), View.Centre);
        }
        Model.eval();
        using var _ = no_grad();
        using Tensor x = tensor(input,
            new long[] { records.Count, Card.Channels, Augmentation.Crop, Augmentation.Crop });
        using Tensor f = Model.ForwardTo(x, layer).flatten(1).cpu().contiguous();
        return f.data<float>().ToArray();
    }

    public void Dispose() => Model.Dispose();
}
