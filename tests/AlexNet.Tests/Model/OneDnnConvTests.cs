using System;
using AlexNet.Model.Kernels;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>
/// Training's convolutions on oneDNN's primitives (OneDnnConv.cs): the output and the three gradients against the same
/// convolution in float64 through libtorch's autograd.
/// </summary>
public class OneDnnConvTests
{
    [SkippableTheory]
    [InlineData(3, 96, 67, 11, 4, 2, 1, false)]    // conv1's kind: no input gradient (the image)
    [InlineData(96, 256, 27, 5, 1, 2, 2, true)]    // conv2: §3.2's two towers
    [InlineData(256, 384, 13, 3, 1, 1, 1, true)]   // conv3: Winograd where it measures faster
    [InlineData(384, 256, 13, 3, 1, 1, 2, true)]   // conv5: grouped, 3×3
    public void OutputAndGradientsMatchFloat64(int c, int k, int size, int kernel, int stride, int padding,
        int groups, bool inputGradient)
    {
        Skip.If(OneDnnNet.Unavailable is not null, $"oneDNN is not used here: {OneDnnNet.Unavailable}");
        using var g = new Generator(11);
        using Tensor x = randn(new long[] { 3, c, size, size }, generator: g).requires_grad_(inputGradient);
        using Tensor w = (randn(new long[] { k, c / groups, kernel, kernel },
            generator: g) * 0.05).requires_grad_(true);
        using Tensor b = randn(new long[] { k }, generator: g).requires_grad_(true);
        using Tensor y = OneDnnConv.Apply(x, w, b, stride, padding, groups);
        using Tensor gy = randn(y.shape, generator: g);
        y.backward(new[] { gy });

        using Tensor x64 = x.detach().to(ScalarType.Float64).requires_grad_(inputGradient);
        using Tensor w64 = w.detach().to(ScalarType.Float64).requires_grad_(true);
        using Tensor b64 = b.detach().to(ScalarType.Float64).requires_grad_(true);
        using Tensor y64 = nn.functional.conv2d(x64, w64, b64, strides: new long[] { stride, stride },
            padding: new long[] { padding, padding }, groups: groups);
        y64.backward(new[] { gy.to(ScalarType.Float64) });

        Close(y, y64, "output");
        Close(w.grad!, w64.grad!, "weight gradient");
        Close(b.grad!, b64.grad!, "bias gradient");
        if (inputGradient)
        {
            Close(x.grad!, x64.grad!, "input gradient");
        }
        else
        {
            Assert.True(x.grad is null || x.grad.numel() == 0, "the image got a gradient");
        }
    }

    private static void Close(Tensor got, Tensor expected, string what)
    {
        Assert.Equal(expected.shape, got.shape);
        double scale = expected.abs().max().item<double>();
        double err = (got.to(ScalarType.Float64) - expected).abs().max().item<double>();
        Assert.True(err <= 1e-4 * scale, $"{what}: off by {err:E2} of {scale:E2}");
    }
}
