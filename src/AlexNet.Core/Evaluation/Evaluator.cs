// §6 evaluation: top-1/top-5 error on the centre crop or averaged over §4.1's ten views, and §6's
// ensembles ("averaging the predictions of ... CNNs"): softmax outputs are averaged over views and nets.
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

public static class Evaluator
{
    public static readonly View[] TenViews = Enum.GetValues<View>();

    /// <summary>N×K softmax probabilities averaged over the views and the models.</summary>
    public static Tensor Probabilities(IReadOnlyList<AlexNetModel> models, ImageStore store, Augmentation augmentation,
        bool tenCrop, int batchSize = 256, int workers = 1, CancellationToken cancel = default)
    {
        View[] views = tenCrop ? TenViews : new[] { View.Centre };
        var loader = new BatchLoader(store, augmentation, new LoaderOptions(batchSize, workers));
        Tensor sum = zeros(store.Count, models[0].Architecture.Classes);
        foreach (AlexNetModel m in models)
        {
            m.eval();
        }
        using var _ = no_grad();
        foreach (View view in views)
        {
            foreach (Batch batch in loader.TestPass(view, cancel))
            {
                using (batch)
                using (NewDisposeScope())
                {
                    int start = batch.Indices[0];
                    foreach (AlexNetModel m in models)
                    {
                        sum[TensorIndex.Slice(start, start + batch.Count)].add_(m.forward(batch.Inputs).softmax(1));
                    }
                }
            }
        }
        sum.div_(views.Length * models.Count);
        return sum;
    }

    public static EvalResult Evaluate(IReadOnlyList<AlexNetModel> models, ImageStore store, Augmentation augmentation, bool tenCrop,
        int batchSize = 256, int workers = 1, CancellationToken cancel = default)
    {
        using Tensor p = Probabilities(models, store, augmentation, tenCrop, batchSize, workers, cancel);
        return Score(p, store.Labels, store.Manifest.Classes.Select(c => c.Name).ToArray(), tenCrop ? "10-crop" : "centre", models.Count);
    }

    /// <summary>Errors, mean cross-entropy, per-class accuracy and the most-confused pairs from probabilities.</summary>
    public static EvalResult Score(Tensor probabilities, int[] labels, IReadOnlyList<string> classNames, string views, int models)
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
        double[] perClass = Enumerable.Range(0, k).Select(c => perClassTotal[c] == 0 ? double.NaN : (double)confusion[c, c] / perClassTotal[c]).ToArray();
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
        return new EvalResult(labels.Length, loss, 1 - top1.item<long>() / n, 1 - top5.item<long>() / n, views, models, perClass,
            pairs.OrderByDescending(p => p.Count).ThenBy(p => p.True).Take(10).ToArray());
    }

    static string Name(IReadOnlyList<string> names, int i) => i < names.Count ? names[i] : i.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
