// Not in the paper: mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019), batch-level augmentations as in
// torchvision's reference trainer (RandomMixup, RandomCutmix; with both asked, each batch takes one of them at
// random). Each pairs the batch with a shuffled copy of itself: mixup blends the images, x ← λx + (1 − λ)x',
// CutMix pastes a box of x' whose area is (1 − λ) of the image; λ ~ Beta(α, α), and the loss is
// λ·L(y) + (1 − λ)·L(y'). Everything drawn comes from (seed, step), so a run is reproducible and resumable.
using System;
using AlexNet.Data;
using static TorchSharp.torch;

namespace AlexNet.Training;

/// <summary>The second labels of a mixed batch and the weight λ of the first.</summary>
public sealed record Mix(Tensor OtherLabels, double Lambda);

public static class Mixing
{
    /// <summary>
    /// Mixes <paramref name="inputs"/> in place for step <paramref name="step"/>; null when neither option is on.
    /// </summary>
    public static Mix? Apply(Tensor inputs, Tensor labels, double mixupAlpha, double cutmixAlpha, long seed, long step)
    {
        if (mixupAlpha <= 0 && cutmixAlpha <= 0)
        {
            return null;
        }
        Rng rng = Rng.For(seed, -11, step);
        bool cutmix = cutmixAlpha > 0 && (mixupAlpha <= 0 || rng.Next(2) == 1);
        double lambda = Beta(ref rng, cutmix ? cutmixAlpha : mixupAlpha);
        int n = (int)inputs.shape[0];
        using Tensor perm = tensor(Array.ConvertAll(rng.Permutation(n), i => (long)i));
        using var _ = no_grad();
        using Tensor shuffled = inputs.index_select(0, perm);
        if (!cutmix)
        {
            inputs.mul_(lambda).add_(shuffled, alpha: 1 - lambda);
        }
        else
        {
            // A box of area (1 − λ)·H·W centred anywhere, clipped to the image; λ becomes the area left.
            long h = inputs.shape[2], w = inputs.shape[3];
            double r = Math.Sqrt(1 - lambda);
            long cy = rng.Next((int)h), cx = rng.Next((int)w);
            long bh = (long)(h * r), bw = (long)(w * r);
            long y0 = Math.Clamp(cy - bh / 2, 0, h), y1 = Math.Clamp(cy + bh / 2, 0, h);
            long x0 = Math.Clamp(cx - bw / 2, 0, w), x1 = Math.Clamp(cx + bw / 2, 0, w);
            if (y1 > y0 && x1 > x0)
            {
                using Tensor box = shuffled[.., .., TensorIndex.Slice(y0, y1), TensorIndex.Slice(x0, x1)];
                inputs[.., .., TensorIndex.Slice(y0, y1), TensorIndex.Slice(x0, x1)] = box;
            }
            lambda = 1 - (double)(y1 - y0) * (x1 - x0) / (h * w);
        }
        return new Mix(labels.index_select(0, perm), lambda);
    }

    /// <summary>Beta(α, α) as G₁/(G₁ + G₂) of two Gamma(α) draws.</summary>
    internal static double Beta(ref Rng rng, double alpha)
    {
        double a = Gamma(ref rng, alpha), b = Gamma(ref rng, alpha);
        return a + b > 0 ? a / (a + b) : 0.5;
    }

    /// <summary>Marsaglia and Tsang's Gamma(α, 1); α &lt; 1 through Gamma(α + 1)·U^(1/α).</summary>
    private static double Gamma(ref Rng rng, double alpha)
    {
        if (alpha < 1)
        {
            double u = Math.Max(rng.NextDouble(), double.Epsilon);
            return Gamma(ref rng, alpha + 1) * Math.Pow(u, 1 / alpha);
        }
        double d = alpha - 1.0 / 3, c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double x = rng.NextGaussian(), v = 1 + c * x;
            if (v <= 0)
            {
                continue;
            }
            v = v * v * v;
            double u = rng.NextDouble();
            if (u < 1 - 0.0331 * x * x * x * x || Math.Log(Math.Max(u,
                double.Epsilon)) < 0.5 * x * x + d * (1 - v + Math.Log(v)))
            {
                return d * v;
            }
        }
    }
}
