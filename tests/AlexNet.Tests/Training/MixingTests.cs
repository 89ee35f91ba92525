using System;
using System.Linq;
using AlexNet.Data;
using AlexNet.Training;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Training;

/// <summary>
/// mixup and CutMix checked by hand: the blend, the box, λ, the second labels, the loss, Beta's moments.
/// </summary>
public class MixingTests
{
    [Fact]
    public void MixupBlendsEachImageWithItsPartnerByLambda()
    {
        using Tensor x = randn(6, 1, 5, 5);
        using Tensor original = x.clone();
        using Tensor y = tensor(new long[] { 0, 1, 2, 3, 4, 5 });
        Mix mix = Mixing.Apply(x, y, mixupAlpha: 0.4, cutmixAlpha: 0, seed: 3, step: 7)!;
        Assert.InRange(mix.Lambda, 0, 1);
        long[] partner = mix.OtherLabels.data<long>().ToArray();   // labels are the indices, so they name each partner
        Assert.Equal(Enumerable.Range(0, 6).Select(i => (long)i), partner.OrderBy(p => p));
        for (int i = 0; i < 6; i++)
        {
            using Tensor expected = original[i] * mix.Lambda + original[partner[i]] * (1 - mix.Lambda);
            Assert.True(x[i].allclose(expected, rtol: 1e-5, atol: 1e-6));
        }
        using Tensor again = original.clone();
        Mix same = Mixing.Apply(again, y, 0.4, 0, seed: 3, step: 7)!;
        Assert.Equal(mix.Lambda, same.Lambda);   // (seed, step) fixes it
    }

    [Fact]
    public void CutMixPastesABoxAndLambdaIsTheAreaLeft()
    {
        const int n = 5, side = 16;
        using Tensor x = arange(n, dtype: ScalarType.Float32).reshape(n, 1, 1, 1).expand(n, 1, side,
            side).contiguous();   // image i is all i
        using Tensor y = arange(n, dtype: ScalarType.Int64);
        Mix mix = Mixing.Apply(x, y, mixupAlpha: 0, cutmixAlpha: 1.0, seed: 5, step: 2)!;
        long[] partner = mix.OtherLabels.data<long>().ToArray();
        for (int i = 0; i < n; i++)
        {
            float[] pixels = x[i].data<float>().ToArray();
            Assert.All(pixels, v => Assert.True(v == i || v == partner[i]));
            if (partner[i] != i)
            {
                int pasted = pixels.Count(v => v == partner[i]);
                Assert.Equal(1 - (double)pasted / (side * side), mix.Lambda, 12);
            }
        }
    }

    [Fact]
    public void TheLossIsLambdaWeightedAndBetaHasItsMoments()
    {
        using Tensor logits = randn(4, 3);
        using Tensor a = tensor(new long[] { 0, 1, 2, 0 }), b = tensor(new long[] { 2, 2, 0, 1 });
        var mix = new Mix(b, 0.3);
        using Tensor la = TrainingStep.Loss(logits, a), lb = TrainingStep.Loss(logits, b);
        double expected = 0.3 * la.item<float>() + 0.7 * lb.item<float>();
        using Tensor mixed = TrainingStep.Loss(logits, a) * mix.Lambda + TrainingStep.Loss(logits,
            mix.OtherLabels) * (1 - mix.Lambda);
        Assert.Equal(expected, mixed.item<float>(), 5);

        // Beta(α, α): mean ½, variance 1/(4(2α + 1)).
        var rng = new Rng(9);
        foreach (double alpha in new[] { 0.2, 1.0 })
        {
            double[] draws = Enumerable.Range(0, 40000).Select(_ => Mixing.Beta(ref rng, alpha)).ToArray();
            double mean = draws.Average(), variance = draws.Select(d => (d - mean) * (d - mean)).Average();
            Assert.Equal(0.5, mean, 2);
            Assert.True(Math.Abs(variance - 1 / (4 * (2 * alpha + 1))) < 0.005, $"α {alpha}: variance {variance}");
        }
    }
}
