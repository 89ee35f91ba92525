// §2 "top-1 and top-5, where the top-5 error rate is the fraction of test images for which the correct
// label is not among the five labels considered most probable by the model."
using System;
using static TorchSharp.torch;

namespace AlexNet.Evaluation;

public static class TopK
{
    /// <summary>
    /// How many rows have their label among the k highest scores, for k = 1 and k = 5 (or fewer classes).
    /// </summary>
    public static (Tensor Top1, Tensor Top5) Correct(Tensor scores, Tensor labels)
    {
        long k = Math.Min(5, scores.shape[1]);
        using Tensor top = scores.topk((int)k, dim: 1).indexes;
        using Tensor hits = top.eq(labels.unsqueeze(1));
        using Tensor first = hits.select(1, 0);
        return (first.sum(), hits.any(1).sum());
    }
}
