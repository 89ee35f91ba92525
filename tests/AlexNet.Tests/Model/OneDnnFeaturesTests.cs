using System;
using System.Linq;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>
/// conv1 to pool5 for training on oneDNN's blocked layout (OneDnnFeatures.cs): pool5 and every convolution's weight
/// and bias gradients against the same net's modules (libtorch's kernels) in float64 through libtorch's autograd.
/// </summary>
public class OneDnnFeaturesTests
{
    [SkippableTheory]
    [InlineData(Variants.Paper, 3, 224)]   // §3.2's towers: grouped conv2/4/5, LRN within each tower
    [InlineData(Variants.Owt, 3, 224)]     // no LRN, ungrouped
    [InlineData(Variants.Small, 1, 28)]    // the quick start's: one channel, 6×6 maps
    public void Pool5AndEveryGradientMatchTheModulesInFloat64(string variant, int channels, int size)
    {
        Skip.If(OneDnnNet.Unavailable is not null, $"oneDNN is not used here: {OneDnnNet.Unavailable}");
        Architecture arch = Variants.Get(variant, classes: 10, inputChannels: channels, inputSize: size);
        using var net = new AlexNetModel(arch, seed: 5);
        using var reference = new AlexNetModel(arch, seed: 5, KernelChoice.Libtorch);
        using var g = new Generator(3);
        // Spread weights and biases: the paper's init (N(0, 0.01²), biases of 1 in conv2/4/5) puts those layers'
        // outputs at 1 ± 0.03, where max-pooling's winner among near-equal values flips with the order of a
        // convolution's sums (libtorch's and oneDNN's differ): another gradient, as right, and not comparable.
        using (no_grad())
        {
            foreach (ConvLayer c in arch.Convs)
            {
                (Tensor w, Tensor b) = net.LayerParameters(c.Name);
                using Tensor spread = randn(w.shape, generator: g) / Math.Sqrt(w[0].numel());
                w.copy_(spread);
                using Tensor bias = randn(b.shape, generator: g) * 0.1;
                b.copy_(bias);
            }
        }
        reference.load_state_dict(net.state_dict());
        reference.to(ScalarType.Float64);
        using Tensor x = randn(new long[] { 2, channels, size, size }, generator: g);

        Conv2d[] convs = arch.Convs.Select(c => (Conv2d)net.Layer(c.Name)).ToArray();
        Tensor pool5 = null!, gy = null!;
        for (int step = 0; step < 2; step++)
        {
            // the second step runs in the buffers the first gave back (Layouts.Take), and must agree as well
            foreach (Tensor p in net.parameters())
            {
                p.grad?.zero_();
            }
            pool5 = OneDnnFeatures.Apply(x, arch, convs);
            Assert.Null(OneDnnFeatures.Refusal(x.shape, arch));
            gy = step == 0 ? randn(pool5.shape, generator: g) : gy;
            pool5.backward(new[] { gy });
        }

        Tensor h = x.to(ScalarType.Float64);
        foreach ((string name, nn.IModule<Tensor, Tensor> module, bool flatten) in reference.Pipeline())
        {
            if (flatten)
            {
                break;   // pool5: the features end here
            }
            h = module.call(h);
        }
        h.backward(new[] { gy.to(ScalarType.Float64) });

        Close(pool5, h, "pool5");
        foreach (ConvLayer c in arch.Convs)
        {
            (Tensor w, Tensor b) = net.LayerParameters(c.Name);
            (Tensor w64, Tensor b64) = reference.LayerParameters(c.Name);
            Close(w.grad!, w64.grad!, $"{c.Name}'s weight gradient");
            Close(b.grad!, b64.grad!, $"{c.Name}'s bias gradient");
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
