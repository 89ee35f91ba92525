using System;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>Tier 2: the fused §3.3 kernel against the formula in float64 and against libtorch's own LRN.</summary>
public class LocalResponseNormTests
{
    /// <summary>
    /// The paper's formula, written out with loops in float64. The window is [i − ⌊n/2⌋, i + ⌊(n−1)/2⌋]: centred for
    /// the paper's odd n; for even n PyTorch's choice, one more channel below than above.
    /// </summary>
    private static double[] ByHand(float[] a, int n, int c, int plane, LrnParams p)
    {
        var b = new double[a.Length];
        for (int img = 0; img < n; img++)
        {
            for (int i = 0; i < c; i++)
            {
                for (int x = 0; x < plane; x++)
                {
                    double sum = 0;
                    // §3.2: i's tower
                    int perTower = c / p.Towers, from = i / perTower * perTower, to = from + perTower;
                    for (int j = Math.Max(from, i - p.Size / 2); j <= Math.Min(to - 1, i + (p.Size - 1) / 2); j++)
                    {
                        double v = a[(img * c + j) * plane + x];
                        sum += v * v;
                    }
                    int at = (img * c + i) * plane + x;
                    b[at] = a[at] / Math.Pow(p.K + p.Alpha * sum, p.Beta);
                }
            }
        }
        return b;
    }

    /// <summary>
    /// <paramref name="b"/> (our LRN of <paramref name="a"/>) against <see cref="ByHand"/>, element by element.
    /// </summary>
    private static void AssertFormula(Tensor a, Tensor b, LrnParams p)
    {
        long[] s = a.shape;
        double[] expected = ByHand(a.detach().data<float>().ToArray(), (int)s[0], (int)s[1], (int)(s[2] * s[3]), p);
        float[] actual = b.detach().data<float>().ToArray();
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * (1 + Math.Abs(expected[i])),
                $"element {i}: {actual[i]} vs {expected[i]}");
        }
    }

    /// <summary>
    /// <paramref name="ours"/> on x in float32 against <paramref name="reference"/> on x in float64: the outputs, and
    /// the gradients of Σ output·u for one random u.
    /// </summary>
    private static void AssertMatchesInFloat64(Tensor x, Func<Tensor, Tensor> ours,
        Func<Tensor, Tensor> reference, Generator g)
    {
        using Tensor x32 = x.detach().to(ScalarType.Float32).requires_grad_();
        using Tensor x64 = x.detach().to(ScalarType.Float64).requires_grad_();
        using Tensor expected = reference(x64);
        using Tensor actual = ours(x32);
        using Tensor up = randn(expected.shape, dtype: ScalarType.Float64, generator: g);
        using (Tensor l = (expected * up).sum())
        {
            l.backward();
        }
        using (Tensor l = (actual * up.to(ScalarType.Float32)).sum())
        {
            l.backward();
        }
        Assert.True(actual.detach().to(ScalarType.Float64).allclose(expected.detach(), rtol: 1e-5, atol: 1e-6));
        Assert.True(x32.grad!.to(ScalarType.Float64).allclose(x64.grad!, rtol: 1e-4, atol: 1e-5));
    }

    [Theory]
    [InlineData(2, 8, 5, 5, 5, 2)]      // two towers of 4 maps, the paper's n = 5: the window is clipped at the border
    [InlineData(1, 12, 6, 7, 5, 3)]     // three towers
    [InlineData(2, 6, 4, 4, 2, 2)]      // even n
    public void EachTowerNormalisesItsOwnMaps(int n, int c, int h, int w, int size, int towers)
    {
        var p = new LrnParams(size, 0.3, 0.75, 2.0, towers);   // a large α, so that every neighbour matters
        using var g = new Generator(5);
        using Tensor a = randn(new long[] { n, c, h, w }, generator: g) * 3;
        using Tensor b = LocalResponseNorm.Apply(a, p);
        AssertFormula(a, b, p);
        // The gradient against libtorch's LRN run tower by tower in float64.
        AssertMatchesInFloat64(a, x => LocalResponseNorm.Apply(x, p), x => LocalResponseNorm.Reference(x, p), g);
        // No tower reads another's maps: changing the last tower's inputs leaves the first tower's outputs as they
        // were.
        int perTower = c / towers;
        using Tensor changed = a.clone();
        changed[TensorIndex.Colon, TensorIndex.Slice(c - perTower, c)].mul_(5);
        using Tensor b2 = LocalResponseNorm.Apply(changed, p);
        Assert.True(b2[TensorIndex.Colon, TensorIndex.Slice(0, perTower)].eq(b[TensorIndex.Colon,
            TensorIndex.Slice(0, perTower)]).all().item<bool>());
        Assert.False(b2.eq(b).all().item<bool>());
        // The fused ReLU → LRN → pool of conv1 and conv2 agrees with the same operations apart.
        AssertMatchesInFloat64(a, x => FusedStage.Apply(x, p, 3, 2), x => FusedStage.Reference(x, p, 3, 2), g);
    }

    [Fact]
    public void TheAuthorsCodeDividesAlphaByNAsPyTorchDoes()
    {
        // cuda-convnet2's layer.py divides the cross-map scale by size: k + (α/n) Σ a², libtorch's own convention.
        var code = new LrnParams(5, 0.3, 0.75, 2.0, Convention: LrnConvention.Code);
        using var g = new Generator(7);
        using Tensor a = randn(new long[] { 2, 9, 4, 5 }, generator: g) * 3;
        using Tensor ours = LocalResponseNorm.Apply(a, code);
        AssertFormula(a, ours, new LrnParams(5, 0.3 / 5, 0.75, 2.0));   // the printed formula at α/n
        using Tensor torch = nn.functional.local_response_norm(a, 5, 0.3, 0.75, 2.0);
        Assert.True(ours.allclose(torch, rtol: 1e-5, atol: 1e-6));
        AssertMatchesInFloat64(a, x => FusedStage.Apply(x, code, 3, 2), x => FusedStage.Reference(x, code, 3, 2), g);
        using Tensor printed = LocalResponseNorm.Apply(a, code with { Convention = null });
        Assert.False(printed.allclose(ours, rtol: 1e-3));   // five times the effect: not the same function
    }

    [Fact]
    public void ParamsWrittenBeforeTowersReadAsOneTower()
    {
        // Checkpoints from before LrnParams.Towers: their LRN spanned all maps, and still does.
        LrnParams old = AlexNet.Json.Parse<LrnParams>("{\"size\":5,\"alpha\":0.0001,\"beta\":0.75,\"k\":2}", "test");
        Assert.Equal(1, old.Towers);
        Assert.Equal(2, AlexNet.Json.Parse<LrnParams>(AlexNet.Json.Serialize(new LrnParams(Towers: 2)), "test").Towers);
        Assert.Equal(2, Variants.Get(Variants.Paper).Lrn!.Towers);
        Assert.Equal(1, Variants.Get(Variants.Paper1Gpu).Lrn!.Towers);
    }

    [Theory]
    [InlineData(2, 7, 5, 5, 4, 2.0, 0.3, 0.75)]     // even n: PyTorch's asymmetric window
    [InlineData(1, 9, 6, 6, 2, 1.0, 0.5, 0.75)]     // n = 2: the channel itself and the one below
    public void EvenWindowsFollowPyTorchsWindow(int n, int c, int h, int w, int size,
        double k, double alpha, double beta)
    {
        var p = new LrnParams(size, alpha, beta, k);
        using var g = new Generator(3);
        using Tensor a = randn(new long[] { n, c, h, w }, generator: g) * 3;
        using (Tensor b = LocalResponseNorm.Apply(a, p))
        {
            AssertFormula(a, b, p);
        }
        // And libtorch (which pads ⌊n/2⌋ below and ⌊(n−1)/2⌋ above) agrees, gradient included.
        AssertMatchesInFloat64(a, x => LocalResponseNorm.Apply(x, p),
            x => nn.functional.local_response_norm(x, size, p.TorchAlpha, beta, k), g);
    }

    [Theory]
    [InlineData(2, 7, 5, 5, 2.0, 1e-4, 0.75)]     // the paper's constants, 25 positions (vector tail)
    [InlineData(1, 12, 17, 19, 2.0, 1e-4, 0.75)]  // 323 positions: two chunks, the second partial
    [InlineData(2, 4, 3, 3, 1.0, 0.5, 0.6)]      // large α so the window matters; β ≠ ¾ takes the general pow
    [InlineData(1, 3, 4, 4, 2.0, 0.3, 0.75)]     // fewer channels than the window
    public void ForwardMatchesTheFormulaInFloat64(int n, int c, int h, int w, double k, double alpha, double beta)
    {
        var p = new LrnParams(5, alpha, beta, k);
        using var g = new Generator(7);
        using Tensor a = randn(new long[] { n, c, h, w }, generator: g) * 3;
        using Tensor b = LocalResponseNorm.Apply(a, p);
        AssertFormula(a, b, p);
    }

    [Theory]
    [InlineData(5, 0.75)]
    [InlineData(3, 0.75)]
    [InlineData(5, 0.6)]
    public void ForwardAndGradientMatchLibtorchInFloat64(int size, double beta)
    {
        // α large enough that the cross-channel term of the gradient is far above float32 rounding.
        var p = new LrnParams(size, 0.05, beta, 2.0);
        using var g = new Generator(11);
        using Tensor a64 = (randn(new long[] { 2, 9, 17, 17 }, dtype: ScalarType.Float64,
            generator: g) * 2).requires_grad_();
        using Tensor up64 = randn(new long[] { 2, 9, 17, 17 }, dtype: ScalarType.Float64, generator: g);
        using Tensor reference = nn.functional.local_response_norm(a64, size, p.TorchAlpha, beta, p.K);
        using Tensor refLoss = (reference * up64).sum();
        refLoss.backward();

        using Tensor a32 = a64.detach().to(ScalarType.Float32).requires_grad_();
        using Tensor fused = LocalResponseNorm.Apply(a32, p, fused: true);
        using Tensor loss = (fused * up64.to(ScalarType.Float32)).sum();
        loss.backward();

        Assert.True(fused.to(ScalarType.Float64).allclose(reference.detach(), rtol: 1e-5, atol: 1e-6));
        Assert.True(a32.grad!.to(ScalarType.Float64).allclose(a64.grad!, rtol: 1e-4, atol: 1e-5),
            $"max gradient error {(a32.grad!.to(ScalarType.Float64) - a64.grad!).abs().max().item<double>()}");
    }

    [Fact]
    public void LibtorchPathUsesThePapersAlpha()
    {
        // The same layer through libtorch (α·n) and through the fused kernel (α) must agree.
        var p = new LrnParams();
        using Tensor a = randn(2, 16, 6, 6) * 40;   // large activations so the denominator departs from k^β
        using Tensor viaTorch = LocalResponseNorm.Apply(a, p, fused: false);
        using Tensor viaKernel = LocalResponseNorm.Apply(a, p, fused: true);
        Assert.True(viaTorch.allclose(viaKernel, rtol: 1e-5, atol: 1e-6));
        Assert.False(viaTorch.allclose(a / Math.Pow(p.K, p.Beta), rtol: 1e-3, atol: 1e-3));
    }

    [Fact]
    public void InferenceWithoutGradSavesNothingAndMatches()
    {
        var p = new LrnParams();
        using Tensor a = randn(3, 8, 5, 5).requires_grad_();
        using Tensor withGrad = LocalResponseNorm.Apply(a, p);
        using (no_grad())
        {
            using Tensor without = LocalResponseNorm.Apply(a, p);
            Assert.False(without.requires_grad);
            Assert.True(without.allclose(withGrad.detach()));
        }
        Assert.True(withGrad.requires_grad);
    }
}
