// §6 from checkpoints: the nets of an ensemble, the test-time input pipeline a checkpoint implies (§2's mean
// image of its training set, §4.1's test geometry), the data to evaluate, and the evaluation itself.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using AlexNet.Data;
using AlexNet.Inference;
using AlexNet.Model;

namespace AlexNet.Evaluation;

/// <summary>
/// Which of §4.1's test views to score: the centre patch, the average over ten, or both; or (not in the paper) the
/// centre and its reflection.
/// </summary>
public enum ViewSet
{
    Centre,
    Ten,
    Both,
    Flip,
}

/// <summary>
/// One net, or §6's ensemble of several, loaded from checkpoints that agree on classes, record size and channels.
/// </summary>
public sealed class Ensemble : IDisposable
{
    private readonly List<AlexNetModel> _models;

    private Ensemble(List<AlexNetModel> models, ModelCard card, string first)
    {
        _models = models;
        Card = card;
        FirstCheckpoint = first;
    }

    public IReadOnlyList<AlexNetModel> Models => _models;

    /// <summary>What the nets are: the first checkpoint's model card (the others agree on classes and input).</summary>
    public ModelCard Card { get; }

    public string FirstCheckpoint { get; }

    /// <param name="averagedWeights">Each run's weight average (--ema) instead of its weights.</param>
    /// <param name="device">Where the nets run (null: the CPU).</param>
    /// <param name="precision">The products' number format (null: each run's own).</param>
    /// <param name="engine">What runs inference on the CPU (Model/Kernels/OneDnnNet.cs).</param>
    public static Ensemble Load(IReadOnlyList<string> checkpoints, bool averagedWeights = false,
        TorchSharp.torch.Device? device = null, Precision? precision = null,
        AlexNet.Model.Kernels.InferenceEngine engine = AlexNet.Model.Kernels.InferenceEngine.Auto)
    {
        if (checkpoints.Count == 0)
        {
            throw new ArgumentException("give a --checkpoint (or --ensemble C1 C2 …).");
        }
        var models = new List<AlexNetModel>();
        try
        {
            ModelCard? first = null;
            foreach (string c in checkpoints)
            {
                (AlexNetModel m, ModelCard card) = ModelFile.Load(c, averagedWeights, device, precision, engine);
                models.Add(m);
                first ??= card;
                if (card.Classes != first.Classes || card.RecordSize != first.RecordSize
                    || card.Channels != first.Channels)
                {
                    throw new ArgumentException(
                        $"{c} does not fit in an ensemble with {checkpoints[0]}: classes, input size and channels " +
                        "must agree.");
                }
            }
            return new Ensemble(models, first!, checkpoints[0]);
        }
        catch
        {
            models.ForEach(m => m.Dispose());
            throw;
        }
    }

    /// <summary>§4.1's test-time geometry and §2's mean image, both from the checkpoint's training set.</summary>
    public Augmentation TestAugmentation(int height, int width) => TestPipeline.Augmentation(Card, height, width);

    public void Dispose() => _models.ForEach(m => m.Dispose());
}

public static class TestPipeline
{
    /// <summary>
    /// §4.1's test-time geometry and §2's mean image, both from the checkpoint's training set (no PCA noise at test).
    /// </summary>
    public static Augmentation Augmentation(ModelCard card, int height, int width)
    {
        if (height != card.RecordSize || width != card.RecordSize)
        {
            throw new ArgumentException(
                $"the data is {height}×{width}, the network was trained on {card.RecordSize}×{card.RecordSize} " +
                $"records; prepare it with --size {card.RecordSize}.");
        }
        return card.TestAugmentation();
    }

    /// <summary> A prepared store, or an ImageNet-style folder ROOT/&lt;class&gt;/&lt;image&gt; prepared once (§2, at
    /// the checkpoint's record size) into a cache under the temporary folder, named by the folder's full path.
    /// </summary>
    public static ImageStore OpenData(string data, ModelCard card, Action<string>? message = null)
    {
        if (ImageStore.IsComplete(data))
        {
            return ImageStore.Open(data);
        }
        if (Directory.Exists(data) && Directory.GetDirectories(data).Length > 0
            && !File.Exists(Path.Combine(data, "progress.json")))
        {
            string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(data))))[..16];
            string store = Path.Combine(Path.GetTempPath(), "alexnet-eval-" + hash);
            if (!ImageStore.IsComplete(store))
            {
                message?.Invoke($"Preparing {data} into {store} …");
                FolderPreparer.Prepare(ImageFolder.FromClassFolders(data), store,
                    card.RecordSize, Environment.ProcessorCount);
            }
            return ImageStore.Open(store);
        }
        return ImageStore.Open(data);   // gives the store's own clear error
    }

    /// <summary>§6 for `alexnet eval`: the ensemble on a store or folder, one result per view set asked for.</summary>
    public static List<EvalResult> Evaluate(Ensemble nets, string data, ViewSet views, int batchSize,
        Action<string>? message = null)
    {
        ModelCard card = nets.Card;
        using ImageStore store = OpenData(data, card, message);
        if (store.ClassCount != card.Classes || store.Channels != card.Channels)
        {
            throw new ArgumentException(
                $"{data} has {store.ClassCount} classes and {store.Channels} channels; the network " +
                $"expects {card.Classes} and {card.Channels}.");
        }
        Augmentation aug = nets.TestAugmentation(store.Height, store.Width);
        var results = new List<EvalResult>();
        foreach (ViewSet one in views is ViewSet.Both ? new[] { ViewSet.Centre, ViewSet.Ten } : new[] { views })
        {
            (View[] v, string name) = Evaluator.Of(one);
            results.Add(Evaluator.Evaluate(nets.Models, store, aug, v, name, batchSize));
        }
        return results;
    }
}
