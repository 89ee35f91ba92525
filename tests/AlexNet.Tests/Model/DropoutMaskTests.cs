using System;
using AlexNet.Model;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>
/// §4.2's dropout masks (DropoutMask.cs): the distribution, independence, the scale and determinism under a seed.
/// </summary>
public class DropoutMaskTests
{
    [Theory]
    [InlineData(0.5)]   // §4.2
    [InlineData(0.1)]
    [InlineData(0.9)]
    public void EachValueIsKeptWithProbabilityOneMinusPAndScaled(double p)
    {
        const int N = 1 << 20;
        using Tensor mask = DropoutMask.Make(new long[] { 256, N / 256 }, p, seed: 12345);
        using Tensor kept = mask.ne(0);
        double fraction = kept.to(ScalarType.Float64).mean().item<double>();
        double sigma = Math.Sqrt(p * (1 - p) / N);
        Assert.InRange(fraction, 1 - p - 5 * sigma, 1 - p + 5 * sigma);
        // Every kept value is exactly 1/(1 − p); the rest are 0.
        using Tensor values = mask.masked_select(kept);
        Assert.True(values.eq((float)(1 / (1 - p))).all().item<bool>());
        // Neighbours (two halves of one hash, and across hashes) are independent: P(both kept) = (1 − p)².
        using Tensor flat = kept.flatten().to(ScalarType.Float64);
        double both = (flat.narrow(0, 0, N - 1) * flat.narrow(0, 1, N - 1)).mean().item<double>();
        double sigmaBoth = Math.Sqrt((1 - p) * (1 - p) * (1 - (1 - p) * (1 - p)) / N);
        Assert.InRange(both, (1 - p) * (1 - p) - 6 * sigmaBoth, (1 - p) * (1 - p) + 6 * sigmaBoth);
    }

    [Fact]
    public void TheSameSeedGivesTheSameMaskAndTorchsSeedFixesTheNetsMasks()
    {
        using Tensor a = DropoutMask.Make(new long[] { 3, 1001 }, 0.5, seed: 7),
            b = DropoutMask.Make(new long[] { 3, 1001 }, 0.5, seed: 7);
        using Tensor c = DropoutMask.Make(new long[] { 3, 1001 }, 0.5, seed: 8);
        Assert.True(a.equal(b).all().item<bool>());
        Assert.False(a.equal(c).all().item<bool>());
        using Tensor x = randn(4, 64);
        TorchSharp.torch.random.manual_seed(5);
        using Tensor y1 = DropoutMask.Apply(x, 0.5), y2 = DropoutMask.Apply(x, 0.5);
        TorchSharp.torch.random.manual_seed(5);
        using Tensor z1 = DropoutMask.Apply(x, 0.5);
        Assert.True(y1.equal(z1).all().item<bool>());     // the generator's seed fixes the mask
        Assert.False(y1.equal(y2).all().item<bool>());    // and each call draws a fresh one
    }

    [Fact]
    public void TheGradientPassesWhereTheValueWasKeptScaledLikeIt()
    {
        using Tensor x = (rand(8, 100) + 1).requires_grad_();   // no zeros, so y = 0 marks a dropped value
        using Tensor y = DropoutMask.Apply(x, 0.5);
        using Tensor up = randn(8, 100);
        y.backward(new[] { up });
        using Tensor scale = y.detach() / x.detach();                  // 0 or 2, per value
        Assert.True(scale.eq(0).logical_or(scale.eq(2)).all().item<bool>());
        Assert.True(x.grad!.allclose(up * scale, rtol: 0, atol: 0));
    }

    [Fact]
    public void TheNetDropsOnlyInTrainingAndTheGeneratorsSeedFixesIt()
    {
        Architecture arch = Variants.Get(Variants.Small, 10, 1, 28);
        using var model = new AlexNetModel(arch, seed: 1);
        using Tensor x = rand(4, 1, 28, 28) * 50;
        model.eval();
        using Tensor e1 = model.forward(x), e2 = model.forward(x);
        Assert.True(e1.equal(e2).all().item<bool>());
        model.train();
        TorchSharp.torch.random.manual_seed(3);
        using Tensor t1 = model.forward(x);
        TorchSharp.torch.random.manual_seed(3);
        using Tensor t2 = model.forward(x);
        Assert.True(t1.equal(t2).all().item<bool>());
        Assert.False(t1.equal(e1).all().item<bool>());
    }
}
