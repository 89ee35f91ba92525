using System.Linq;
using AlexNet.Model;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>conv1 computed directly (DirectConv.cs) against libtorch's convolution in float64.</summary>
public class DirectConvTests
{
    [Theory]
    [InlineData(2, 1, 28, 28, 7, 5, 2)]    // `small` on Fashion-MNIST: 28 output columns, a vector pair and a half
    [InlineData(3, 3, 13, 11, 5, 3, 1)]    // the kernel's arithmetic with RGB (the model leaves RGB to libtorch), odd sizes
    [InlineData(2, 1, 9, 9, 4, 5, 0)]      // no padding: 5×5 output
    [InlineData(1, 2, 20, 37, 3, 5, 2)]    // rows longer than two vectors
    public void OutputAndWeightGradientsMatchLibtorch(int n, int c, int h, int w, int o, int k, int p)
    {
        using var g = new Generator(3);
        using Tensor x64 = randn(new long[] { n, c, h, w }, dtype: ScalarType.Float64, generator: g);
        using Tensor w64 = (randn(new long[] { o, c, k, k }, dtype: ScalarType.Float64, generator: g) * 0.3).requires_grad_();
        using Tensor b64 = randn(new long[] { o }, dtype: ScalarType.Float64, generator: g).requires_grad_();
        using Tensor reference = DirectConv.Reference(x64, w64, b64, p);
        using Tensor up = randn(reference.shape, dtype: ScalarType.Float64, generator: g);
        using (Tensor l = (reference * up).sum())
        {
            l.backward();
        }

        using Tensor x32 = x64.to(ScalarType.Float32);
        using Tensor w32 = w64.detach().to(ScalarType.Float32).requires_grad_();
        using Tensor b32 = b64.detach().to(ScalarType.Float32).requires_grad_();
        Assert.Equal(c <= DirectConv.MaxInputChannels, DirectConv.Supports(x32, new ConvLayer("conv1", o, k, 1, p, 1, Lrn: false, Pool: false, BiasOne: false)));
        using Tensor direct = DirectConv.Apply(x32, w32, b32, p);
        using (Tensor l = (direct * up.to(ScalarType.Float32)).sum())
        {
            l.backward();
        }
        Assert.Equal(reference.shape, direct.shape);
        Assert.True(direct.to(ScalarType.Float64).allclose(reference.detach(), rtol: 1e-4, atol: 1e-5));
        Assert.True(w32.grad!.to(ScalarType.Float64).allclose(w64.grad!, rtol: 1e-4, atol: 1e-4));
        Assert.True(b32.grad!.to(ScalarType.Float64).allclose(b64.grad!, rtol: 1e-4, atol: 1e-4));
    }

    [Fact]
    public void RgbAStrideOrAnInputThatNeedsAGradientGoesToLibtorch()
    {
        using Tensor x = randn(1, 1, 8, 8);
        var layer = new ConvLayer("conv1", 4, 3, 1, 1, 1, Lrn: false, Pool: false, BiasOne: false);
        Assert.True(DirectConv.Supports(x, layer));
        Assert.False(DirectConv.Supports(x, layer with { Stride = 4 }));
        using Tensor rgb = randn(1, 3, 8, 8);
        Assert.False(DirectConv.Supports(rgb, layer));
        using Tensor needsGrad = x.detach().requires_grad_();
        Assert.False(DirectConv.Supports(needsGrad, layer));
    }

    [Fact]
    public void TheSmallNetTrainsTheSameWithOrWithoutTheFastPaths()
    {
        using var model = new AlexNetModel(Variants.Get(Variants.Small, 10, 1, 28), seed: 4) { FuseStages = true };
        using var plain = new AlexNetModel(Variants.Get(Variants.Small, 10, 1, 28), seed: 4) { FuseStages = false };
        model.eval();   // no dropout: the two passes must see the same net
        plain.eval();
        using Tensor x = randn(6, 1, 28, 28);
        using Tensor y = tensor(new long[] { 0, 1, 2, 3, 4, 5 });
        foreach (AlexNetModel m in new[] { model, plain })
        {
            using Tensor loss = nn.functional.cross_entropy(m.forward(x), y);
            loss.backward();
        }
        (Tensor fw, _) = model.LayerParameters("conv1");
        (Tensor pw, _) = plain.LayerParameters("conv1");
        Assert.True(fw.grad!.allclose(pw.grad!, rtol: 1e-3, atol: 1e-5));
        Assert.True(model.parameters().Zip(plain.parameters()).All(p => p.First.grad!.allclose(p.Second.grad!, rtol: 1e-3, atol: 1e-5)));
    }
}
