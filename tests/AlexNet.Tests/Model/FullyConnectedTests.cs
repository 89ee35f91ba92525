using AlexNet.Model;
using AlexNet.Model.Kernels;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>The FC layers on oneDNN's sgemm (FullyConnected.cs) against libtorch's linear in float64.</summary>
public class FullyConnectedTests
{
    private static void SkipUnlessAvailable() =>
        Skip.IfNot(FullyConnected.Available,
        "oneDNN's sgemm is not used here: Debian's libdnnl2 is not installed (setup.sh installs it) or the CPU has no " +
        "AVX-512");

    [SkippableTheory]
    [InlineData(5, 37, 11)]        // odd sizes
    [InlineData(128, 2304, 512)]   // small's fc6 at §5's batch
    [InlineData(3, 9216, 40)]      // paper's fc6 input width, a few neurons
    public void ForwardAndGradientsMatchLibtorchsLinear(int n, int k, int m)
    {
        SkipUnlessAvailable();
        using var g = new Generator(11);
        using var fc = nn.Linear(k, m);
        using Tensor x = randn(new long[] { n, k }, generator: g).requires_grad_();
        using Tensor up = randn(new long[] { n, m }, generator: g);
        using Tensor y = FullyConnected.Apply(x, fc);
        y.backward(new[] { up });
        using Tensor x64 = x.detach().to(ScalarType.Float64).requires_grad_();
        using Tensor w64 = fc.weight!.detach().to(ScalarType.Float64).requires_grad_();
        using Tensor b64 = fc.bias!.detach().to(ScalarType.Float64).requires_grad_();
        using Tensor y64 = nn.functional.linear(x64, w64, b64);
        y64.backward(new[] { up.to(ScalarType.Float64) });
        AssertClose(y, y64, "output");
        AssertClose(x.grad!, x64.grad!, "input gradient");
        AssertClose(fc.weight!.grad!, w64.grad!, "weight gradient");
        AssertClose(fc.bias!.grad!, b64.grad!, "bias gradient");
    }

    [SkippableFact]
    public void AFrozenInputGetsNoGradientAndInferenceNeedsNoGraph()
    {
        SkipUnlessAvailable();
        using var fc = nn.Linear(20, 7);
        using Tensor x = randn(4, 20);   // no gradient wanted: the layers before it are frozen (--freeze features)
        using Tensor y = FullyConnected.Apply(x, fc);
        y.sum().backward();
        Assert.Null(x.grad);
        Assert.NotNull(fc.weight!.grad);
        using (no_grad())
        {
            using Tensor z = FullyConnected.Apply(x, fc);
            Assert.False(z.requires_grad);
            AssertClose(z, nn.functional.linear(x.to(ScalarType.Float64), fc.weight!.to(ScalarType.Float64),
                fc.bias!.to(ScalarType.Float64)), "inference");
        }
    }

    [SkippableFact]
    public void TheNetTakesThisPathAndLibtorchsKernelsDoNot()
    {
        SkipUnlessAvailable();
        Architecture arch = Variants.Get(Variants.Small, 10, 1, 28);
        using var ours = new AlexNetModel(arch, seed: 6);
        using var libtorch = new AlexNetModel(arch, seed: 6, KernelChoice.Libtorch);
        using Tensor x = randn(2, arch.FlattenedFeatures);
        var fc6 = (Linear)ours.Layer("fc6");
        using Tensor a = ours.Call(fc6, x), b = libtorch.Call(libtorch.Layer("fc6"), x);
        // Each equals its own path to the bit; the two sum the products in different orders, so they differ in places.
        Assert.True(a.eq(FullyConnected.Apply(x, fc6)).all().item<bool>());
        Assert.True(b.eq(nn.functional.linear(x, fc6.weight!, fc6.bias!)).all().item<bool>());
        Assert.False(a.eq(b).all().item<bool>());
        AssertClose(a, b.to(ScalarType.Float64), "fc6");
    }

    private static void AssertClose(Tensor got, Tensor expected, string what)
    {
        double scale = expected.abs().max().item<double>();
        double err = (got.to(ScalarType.Float64) - expected).abs().max().item<double>();
        Assert.True(err <= 1e-5 * scale, $"{what}: off by {err} (largest value {scale})");
    }
}
