// §6 evaluation: top-1/top-5 error on the centre crop or averaged over §4.1's ten views, and §6's
// ensembles ("averaging the predictions of ... CNNs"): softmax outputs are averaged over views and nets.
// Stores (`alexnet eval`) and single files (`alexnet predict`) go through the same average.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using AlexNet.Data;
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Evaluation;

public sealed record ConfusedPair(int True, string TrueName, int Predicted, string PredictedName, int Count);

public sealed record EvalResult(
    int Count,
    double Loss,
    double Top1Error,
    double Top5Error,
    string Views,
    int Models,
    double[] PerClassAccuracy,
    ConfusedPair[] MostConfused);

/// <summary>The network inputs of one view of every image, batch by batch in image order.</summary>
public interface IViewSource
{
    int Count { get; }

    /// <summary>
    /// (index of the batch's first image, its inputs); each tensor is disposed by the caller's scope.
    /// </summary>
    IEnumerable<(int Start, Tensor Inputs)> Pass(View view, CancellationToken cancel);
}

/// <summary>
/// A store's records (or those of <paramref name="records"/>, in order) through the background loader.
/// </summary>
public sealed class StoreViews(ImageStore store, Augmentation augmentation, int batchSize = 256, int workers = 1,
    int[]? records = null) : IViewSource
{
    public int Count => records?.Length ?? store.Count;

    public IEnumerable<(int Start, Tensor Inputs)> Pass(View view, CancellationToken cancel)
    {
        var loader = new BatchLoader(store, augmentation, new LoaderOptions(batchSize, workers, Records: records));
        int position = 0;
        foreach (Batch batch in loader.TestPass(view, cancel))
        {
            using (batch)
            {
                yield return (position, batch.Inputs);
                position += batch.Count;
            }
        }
    }
}

/// <summary>A few records in memory (files to predict, a report's samples), as one batch.</summary>
public sealed class RecordViews(IReadOnlyList<byte[]> records, Augmentation augmentation) : IViewSource
{
    public int Count => records.Count;

    public IEnumerable<(int Start, Tensor Inputs)> Pass(View view, CancellationToken cancel)
    {
        int length = augmentation.OutputLength;
        var inputs = new float[records.Count * length];
        for (int i = 0; i < records.Count; i++)
        {
            augmentation.Test(records[i], inputs.AsSpan(i * length, length), view);
        }
        using Tensor x = tensor(inputs,
            new long[] { records.Count, augmentation.Channels, augmentation.Crop, augmentation.Crop });
        yield return (0, x);
    }
}

public static class Evaluator
{
    public static readonly View[] TenViews = Enum.GetValues<View>();

    public static View[] Views(bool tenCrop) => tenCrop ? TenViews : new[] { View.Centre };

    /// <summary>
    /// Not in the paper: the centre patch and its reflection, the flip averaging small-image recipes use.
    /// </summary>
    public static readonly View[] FlipViews = { View.Centre, View.CentreFlipped };

    /// <summary>The views of one view set (not Both) and the name results carry.</summary>
    public static (View[] Views, string Name) Of(ViewSet set) => set switch
    {
        ViewSet.Centre => (Views(false), "centre"),
        ViewSet.Ten => (TenViews, "10-crop"),
        ViewSet.Flip => (FlipViews, "flip"),
        _ => throw new ArgumentException($"{set} is two view sets; pick one of centre, ten or flip."),
    };

    /// <summary>
    /// N×K softmax probabilities averaged over the views and the models (§4.1, §6).
    /// </summary>
    /// <param name="forward">How a model's outputs are computed (the trainer's replicas split the batch); default its
    /// forward.</param>
    public static Tensor Probabilities(IReadOnlyList<AlexNetModel> models, IViewSource source,
        IReadOnlyList<View> views, int classes,
        CancellationToken cancel = default, Func<AlexNetModel, Tensor, Tensor>? forward = null)
    {
        forward ??= (m, x) => m.forward(x);
        Tensor sum = zeros(source.Count, classes);
        foreach (AlexNetModel m in models)
        {
            m.eval();
        }
        using var _ = no_grad();
        foreach (View view in views)
        {
            foreach ((int start, Tensor inputs) in source.Pass(view, cancel))
            {
                using (NewDisposeScope())
                {
                    long n = inputs.shape[0];
                    foreach (AlexNetModel m in models)
                    {
                        sum[TensorIndex.Slice(start, start + n)].add_(forward(m, inputs).softmax(1).cpu());
                    }
                }
            }
        }
        sum.div_(views.Count * models.Count);
        return sum;
    }

    /// <summary>§6 on a store: the centre view, or the average over the ten.</summary>
    public static EvalResult Evaluate(IReadOnlyList<AlexNetModel> models, ImageStore store,
        Augmentation augmentation, bool tenCrop,
        int batchSize = 256, int workers = 1, CancellationToken cancel = default) =>
        Evaluate(models, store, augmentation, Views(tenCrop),
        tenCrop ? "10-crop" : "centre", batchSize, workers, cancel);

    /// <summary>
    /// §6 on a store with the softmax averaged over <paramref name="views"/>, reported as <paramref name="name"/>.
    /// </summary>
    /// <param name="records">Only these records of the store (a held-out split), or all.</param>
    public static EvalResult Evaluate(IReadOnlyList<AlexNetModel> models, ImageStore store,
        Augmentation augmentation, IReadOnlyList<View> views,
        string name, int batchSize = 256, int workers = 1, CancellationToken cancel = default, int[]? records = null,
        Func<AlexNetModel, Tensor, Tensor>? forward = null)
    {
        using Tensor p = Probabilities(models, new StoreViews(store, augmentation, batchSize, workers, records), views,
            models[0].Architecture.Classes, cancel, forward);
        int[] labels = records is null ? store.Labels : records.Select(i => store.Labels[i]).ToArray();
        return Score(p, labels, store.Manifest.Classes.Select(c => c.Name).ToArray(), name, models.Count);
    }

    /// <summary>
    /// Errors, mean cross-entropy, per-class accuracy and the ten most-confused pairs from probabilities.
    /// </summary>
    public static EvalResult Score(Tensor probabilities, int[] labels,
        IReadOnlyList<string> classNames, string views, int models)
    {
        using var scope = NewDisposeScope();
        Tensor y = tensor(labels.Select(l => (long)l).ToArray());
        (Tensor top1, Tensor top5) = TopK.Correct(probabilities, y);
        double n = labels.Length;
        double loss = -probabilities.gather(1, y.unsqueeze(1)).clamp_min(1e-12).log().mean().item<float>();
        long[] predicted = probabilities.argmax(1).data<long>().ToArray();
        int k = (int)probabilities.shape[1];
        var confusion = new int[k, k];
        var perClassTotal = new int[k];
        for (int i = 0; i < labels.Length; i++)
        {
            confusion[labels[i], predicted[i]]++;
            perClassTotal[labels[i]]++;
        }
        double[] perClass = Enumerable.Range(0,
            k).Select(c => perClassTotal[c] == 0 ? double.NaN : (double)confusion[c, c] / perClassTotal[c]).ToArray();
        var pairs = new List<ConfusedPair>();
        for (int t = 0; t < k; t++)
        {
            for (int q = 0; q < k; q++)
            {
                if (t != q && confusion[t, q] > 0)
                {
                    pairs.Add(new ConfusedPair(t, Name(classNames, t), q, Name(classNames, q), confusion[t, q]));
                }
            }
        }
        return new EvalResult(labels.Length, loss, 1 - top1.item<long>() / n,
            1 - top5.item<long>() / n, views, models, perClass,
            pairs.OrderByDescending(p => p.Count).ThenBy(p => p.True).Take(10).ToArray());
    }

    internal static string Name(IReadOnlyList<string> names, int i) =>
        i < names.Count ? names[i] : i.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
