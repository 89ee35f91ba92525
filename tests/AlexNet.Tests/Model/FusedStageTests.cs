using AlexNet.Model;
using AlexNet.Model.Kernels;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>The fused ReLU → LRN → max-pool against libtorch's separate operations in float64.</summary>
public class FusedStageTests
{
    [Theory]
    [InlineData(2, 7, 15, 15, 3, 2, 0.05)]    // overlapping 3/2 pooling (§3.4), α large enough to matter
    [InlineData(3, 12, 13, 11, 3, 2, 1e-4)]   // the paper's α, odd sizes
    [InlineData(2, 5, 12, 12, 2, 2, 0.05)]    // the non-overlapping 2/2 of the ablation
    [InlineData(1, 3, 9, 9, 3, 2, 0.3)]       // fewer channels than the window
    [InlineData(2, 20, 9, 9, 3, 2, 0.05)]     // the backward's ring of n + 1 channel planes wraps three times
    public void ForwardAndGradientMatchTheSeparateOperations(int n, int c, int h, int w,
        int window, int stride, double alpha)
    {
        var p = new LrnParams(5, alpha, 0.75, 2.0);
        using var g = new Generator(21);
        using Tensor x64 = (randn(new long[] { n, c, h, w }, dtype: ScalarType.Float64,
            generator: g) * 3).requires_grad_();
        using Tensor reference = FusedStage.Reference(x64, p, window, stride);
        using Tensor up = randn(reference.shape, dtype: ScalarType.Float64, generator: g);
        using (Tensor l = (reference * up).sum())
        {
            l.backward();
        }
        using Tensor x32 = x64.detach().to(ScalarType.Float32).requires_grad_();
        using Tensor fused = FusedStage.Apply(x32, p, window, stride);
        using (Tensor l = (fused * up.to(ScalarType.Float32)).sum())
        {
            l.backward();
        }
        Assert.Equal(reference.shape, fused.shape);
        Assert.True(fused.to(ScalarType.Float64).allclose(reference.detach(), rtol: 1e-5, atol: 1e-6));
        using Tensor diff = (x32.grad!.to(ScalarType.Float64) - x64.grad!).abs().max();
        Assert.True(x32.grad!.to(ScalarType.Float64).allclose(x64.grad!, rtol: 1e-4, atol: 1e-5),
            $"max gradient error {diff.item<double>()}");
    }

    /// <summary>
    /// Equal values in a window: x depends only on (h, w) and takes three values, so b ties within and across windows.
    /// The forward's saved maximum must be libtorch's (the first in row-major order) or ∂x lands elsewhere.
    /// </summary>
    [Theory]
    [InlineData(13, 13)]
    [InlineData(11, 18)]   // rows longer than two vectors, odd tails
    public void TiesGoToTheFirstMaximumAsInLibtorch(int h, int w)
    {
        var p = new LrnParams(5, 0.05, 0.75, 2.0);
        using var g = new Generator(5);
        using Tensor levels = randint(0, 3, new long[] { 1, 1, h, w }, dtype: ScalarType.Float64, generator: g) - 1;
        using Tensor x64 = levels.expand(2, 6, h, w).contiguous().requires_grad_();
        using Tensor reference = FusedStage.Reference(x64, p, 3, 2);
        using Tensor up = randn(reference.shape, dtype: ScalarType.Float64, generator: g);
        using (Tensor l = (reference * up).sum())
        {
            l.backward();
        }
        using Tensor x32 = x64.detach().to(ScalarType.Float32).requires_grad_();
        using Tensor fused = FusedStage.Apply(x32, p, 3, 2);
        using (Tensor l = (fused * up.to(ScalarType.Float32)).sum())
        {
            l.backward();
        }
        Assert.True(fused.to(ScalarType.Float64).allclose(reference.detach(), rtol: 1e-5, atol: 1e-6));
        Assert.True(x32.grad!.to(ScalarType.Float64).allclose(x64.grad!, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void TheModelGivesTheSameOutputsFusedOrNot()
    {
        Architecture arch = Variants.Get(Variants.Small, 10, 1, 32);
        using var model = new AlexNetModel(arch, seed: 8);
        using var separate = new AlexNetModel(arch, seed: 8, KernelChoice.Separate);
        using var libtorch = new AlexNetModel(arch, seed: 8, KernelChoice.Libtorch);
        model.eval();
        separate.eval();
        libtorch.eval();
        // Its own seeded input, so the result never depends on the tests run before. Through the whole net, libtorch's
        // LRN and ours differ by float32 rounding: up to 3.8e-5 on logits of magnitude ~60 (6e-7 of the largest) over
        // 200 seeds tried (the per-operation tests compare them in float64).
        using var g = new Generator(8);
        using Tensor x = randn(new long[] { 4, 1, 32, 32 }, generator: g) * 80;
        using var _ = no_grad();
        using Tensor fused = model.forward(x);
        using Tensor plain = separate.forward(x);
        using Tensor reference = libtorch.forward(x);
        // Relative to the largest logit: the FC layers on oneDNN (FullyConnected.cs, in `model` only) sum in another
        // order too.
        double scale = reference.abs().max().item<float>();
        Assert.True((fused - plain).abs().max().item<float>() <= 2e-6 * scale);
        Assert.True((fused - reference).abs().max().item<float>() <= 2e-6 * scale);
    }

    /// <summary>
    /// Without LRN (owt, fig1, §3.3's ablation) the stage is ReLU → max-pool: libtorch's results to the bit.
    /// </summary>
    [Theory]
    [InlineData(2, 7, 15, 15, 3, 2)]
    [InlineData(3, 4, 27, 27, 3, 2)]   // owt's conv2-sized maps, rows past three vectors
    [InlineData(2, 5, 12, 12, 2, 2)]
    public void WithoutLrnForwardAndGradientAreLibtorchsExactly(int n, int c, int h, int w, int window, int stride)
    {
        using var g = new Generator(5);
        using Tensor x = randn(new long[] { n, c, h, w }, generator: g).requires_grad_();
        using Tensor up = randn(new long[] { n, c, Shapes.PooledSize(h, window, stride),
            Shapes.PooledSize(w, window, stride) }, generator: g);
        using Tensor reference = FusedStage.Reference(x, null, window, stride);
        using (Tensor l = (reference * up).sum())
        {
            l.backward();
        }
        using Tensor expected = x.grad!.clone();
        x.grad!.zero_();
        using Tensor fused = FusedStage.Apply(x, null, window, stride);
        using (Tensor l = (fused * up).sum())
        {
            l.backward();
        }
        Assert.True(fused.equal(reference).all().item<bool>());
        Assert.True(x.grad!.equal(expected).all().item<bool>());
    }

    [Fact]
    public void OwtGivesTheSameOutputsAndGradientsFusedOrNot()
    {
        Architecture arch = Variants.Get(Variants.Owt, classes: 10);
        using var fused = new AlexNetModel(arch, seed: 3);
        using var libtorch = new AlexNetModel(arch, seed: 3, KernelChoice.Libtorch);
        fused.eval();   // no dropout: the same function, so the same gradients
        libtorch.eval();
        using var g = new Generator(4);
        using Tensor x = randn(new long[] { 2, 3, 224, 224 }, generator: g) * 50;
        // The features to the bit (conv1's and conv2's fused ReLU → pool inside); after them the FC layers on oneDNN
        // (FullyConnected.cs) sum in another order than libtorch's, so the logits and gradients agree to float32
        // rounding.
        using (no_grad())
        {
            using Tensor fa = fused.ForwardTo(x, "conv5"), fb = libtorch.ForwardTo(x, "conv5");
            Assert.True(fa.equal(fb).all().item<bool>());
        }
        using Tensor a = fused.forward(x), b = libtorch.forward(x);
        Assert.True((a - b).abs().max().item<float>() <= 1e-5 * b.abs().max().item<float>());
        a.sum().backward();
        b.sum().backward();
        (Tensor w1, _) = fused.LayerParameters("conv1");
        (Tensor w2, _) = libtorch.LayerParameters("conv1");
        Assert.True((w1.grad! - w2.grad!).norm().item<float>() <= 1e-5 * w2.grad!.norm().item<float>());
    }
}
