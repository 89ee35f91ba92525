using AlexNet.Model;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>
/// conv1 of one-channel images with its weight gradient as a convolution over the batch (GrayscaleConv1.cs), against
/// libtorch in float64.
/// </summary>
public class GrayscaleConv1Tests
{
    [Theory]
    [InlineData(64, 28, 32, 5, 1, 0)]    // small's conv1 on Fashion-MNIST at a replica's batch
    // a stride and padding, and an input the stride does not divide (the result is cut to k×k)
    [InlineData(3, 29, 8, 5, 2, 2)]
    [InlineData(2, 31, 4, 11, 4, 2)]     // the paper's conv1 geometry on one channel
    public void OutputAndGradientsMatchLibtorchsConvolution(int n, int size, int kernels, int k, int stride, int pad)
    {
        using var g = new Generator(21);
        using var conv = nn.Conv2d(1, kernels, k, stride: stride, padding: pad);
        using Tensor x = randn(new long[] { n, 1, size, size }, generator: g);
        Assert.True(GrayscaleConv1.Applies(x, conv));
        using Tensor y = GrayscaleConv1.Apply(x, conv);
        using Tensor up = randn(y.shape, generator: g);
        y.backward(new[] { up });

        using Tensor w64 = conv.weight!.detach().to(ScalarType.Float64).requires_grad_();
        using Tensor b64 = conv.bias!.detach().to(ScalarType.Float64).requires_grad_();
        using Tensor y64 = nn.functional.conv2d(x.to(ScalarType.Float64), w64, b64,
            strides: new long[] { stride, stride }, padding: new long[] { pad, pad });
        y64.backward(new[] { up.to(ScalarType.Float64) });
        // float64's results rounded to float32 (Close compares float32 tensors)
        Close.Assert(y64.to(ScalarType.Float32), y, 1e-5, "output");
        Close.Assert(w64.grad!.to(ScalarType.Float32), conv.weight!.grad!, 1e-5, "weight gradient");
        Close.Assert(b64.grad!.to(ScalarType.Float32), conv.bias!.grad!, 1e-5, "bias gradient");
        Assert.Null(x.grad);
    }

    [Fact]
    public void ItAppliesOnlyToAOneChannelBatchInTraining()
    {
        using var conv = nn.Conv2d(1, 4, 3);
        using Tensor gray = randn(2, 1, 8, 8), colour = randn(2, 3, 8, 8);
        Assert.True(GrayscaleConv1.Applies(gray, conv));
        // three channels: libtorch's is as fast
        Assert.False(GrayscaleConv1.Applies(colour, conv));
        using (var noBias = nn.Conv2d(1, 4, 3, bias: false))
        {
            Assert.False(GrayscaleConv1.Applies(gray, noBias));
        }
        using (Tensor wanting = randn(2, 1, 8, 8).requires_grad_())
        {
            Assert.False(GrayscaleConv1.Applies(wanting, conv));                 // a layer whose input needs ∂x
        }
        using (no_grad())
        {
            Assert.False(GrayscaleConv1.Applies(gray, conv));                    // inference: libtorch's forward alone
        }
        conv.weight!.requires_grad_(false);
        Assert.False(GrayscaleConv1.Applies(gray, conv));                        // frozen (fine-tuning with --freeze)
    }

    [Fact]
    public void TheNetTakesThisPathExactlyWhereOneDnnHasNoAvx512()
    {
        Architecture arch = Variants.Get(Variants.Small, 10, 1, 28);
        using var net = new AlexNetModel(arch, seed: 4);
        var conv1 = (Conv2d)net.Layer("conv1");
        using Tensor x = randn(8, 1, 28, 28), up = randn(8, 32, 24, 24);
        Tensor Gradient(System.Func<Tensor> forward)
        {
            conv1.weight!.grad?.zero_();
            using Tensor y = forward();
            y.backward(new[] { up });
            return conv1.weight!.grad!.clone();
        }
        using Tensor viaNet = Gradient(() => net.Call(conv1, x));
        using Tensor viaBatch = Gradient(() => GrayscaleConv1.Apply(x, conv1));
        using Tensor viaLibtorch = Gradient(() => conv1.call(x));
        // the two sum in different orders: the check below can tell them apart
        Assert.False(viaBatch.eq(viaLibtorch).all().item<bool>());
        Assert.True(viaNet.eq(LowPrecision.OneDnnAvx512 ? viaLibtorch : viaBatch).all().item<bool>());
    }
}
