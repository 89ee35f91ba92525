using System;
using System.Linq;
using AlexNet.Model;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>Tier 1: shapes and counts of §3.5 and the named variants.</summary>
public class ArchitectureTests
{
    [Theory]
    [InlineData(Variants.Paper, 60_965_224L)]      // §3.5's layers, counted in docs/paper-map.md
    [InlineData(Variants.Owt, 61_100_840L)]        // torchvision alexnet
    [InlineData(Variants.Paper1Gpu, 59_798_312L)]  // §3.2 baseline, counted by hand
    public void ParameterCountIsPinned(string variant, long expected)
    {
        using var model = new AlexNetModel(Variants.Get(variant));
        Assert.Equal(expected, model.ParameterCount);
        Assert.Equal(expected, ModelSummary.Of(model.Architecture).Parameters);
    }

    [Theory]
    [InlineData(Variants.Small, 10, 1, 28, 550_538L)]      // the quick start's net (README)
    [InlineData(Variants.Small, 10, 3, 32, 552_138L)]      // CIFAR-10 (README)
    [InlineData(Variants.Small1Gpu, 10, 1, 28, 474_986L)]  // the towers ablation's baseline
    // Figure 1's net at 32 px: conv 832 + 25,632 + 51,264 (5×5, 1→32→32→64), 3×3×64 = 576 → fc8 5,770.
    [InlineData(Variants.Figure1, 10, 1, 32, 83_498L)]
    public void SmallVariantCountsArePinned(string variant, int classes, int channels, int size, long expected)
    {
        using var model = new AlexNetModel(Variants.Get(variant, classes, channels, size));
        Assert.Equal(expected, model.ParameterCount);
        Assert.Equal(expected, ModelSummary.Of(model.Architecture).Parameters);
    }

    [Fact]
    public void SmallNetCountMatchesItsSummary()
    {
        using var model = new AlexNetModel(Variants.Get(Variants.Small, classes: 10, inputChannels: 1));
        Assert.Equal(ModelSummary.Of(model.Architecture).Parameters, model.ParameterCount);
    }

    [Theory]
    [InlineData(28, new[] { 24, 11, 11, 5, 5, 5, 5, 2 })]   // Fashion-MNIST: every 3/2 pool covers its whole map
    [InlineData(32, new[] { 28, 13, 13, 6, 6, 6, 6, 2 })]    // CIFAR-10
    public void SmallNetMapsShrinkFromAnUnpaddedConv1(int size, int[] sides)
    {
        SummaryRow[] maps = ModelSummary.Of(Variants.Get(Variants.Small, 10, 1,
            size)).Rows.Where(r => r.Height > 1 && r.Layer != "input").ToArray();
        Assert.Equal(new[] { "conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5",
            "pool5" }, maps.Select(r => r.Layer));
        Assert.Equal(sides, maps.Select(r => r.Height));
    }

    [Fact]
    public void PaperNetMultiplyAddsMatchThePaper()
    {
        Assert.Equal(724_406_816L, ModelSummary.Of(Variants.Get(Variants.Paper)).MultiplyAdds);
    }

    [Fact]
    public void EachPaperLayerHasFigure2sShape()
    {
        using var model = new AlexNetModel(Variants.Get(Variants.Paper));
        model.eval();
        using var x = randn(1, 3, 224, 224);
        (string Layer, long[] Shape)[] expected =
        {
            ("conv1", new long[] { 1, 96, 55, 55 }),
            ("conv2", new long[] { 1, 256, 27, 27 }),
            ("conv3", new long[] { 1, 384, 13, 13 }),
            ("conv4", new long[] { 1, 384, 13, 13 }),
            ("conv5", new long[] { 1, 256, 13, 13 }),
            ("fc6", new long[] { 1, 4096 }),
            ("fc7", new long[] { 1, 4096 }),
            ("fc8", new long[] { 1, 1000 }),
        };
        using var _ = no_grad();
        foreach ((string layer, long[] shape) in expected)
        {
            using Tensor y = model.ForwardTo(x, layer);
            Assert.Equal(shape, y.shape);
        }
        using Tensor logits = model.forward(x);
        Assert.Equal(new long[] { 1, 1000 }, logits.shape);
    }

    [Theory]
    [InlineData(Variants.Paper, 224, 3, 1000)]
    [InlineData(Variants.Paper1Gpu, 224, 3, 1000)]
    [InlineData(Variants.Owt, 224, 3, 1000)]
    [InlineData(Variants.Small, 28, 1, 10)]
    [InlineData(Variants.Small, 32, 3, 10)]
    public void SummaryShapesMatchARealForwardPass(string variant, int size, int channels, int classes)
    {
        Architecture arch = Variants.Get(variant, classes, channels, size);
        using var model = new AlexNetModel(arch);
        model.eval();
        using var x = randn(2, channels, size, size);
        using var _ = no_grad();
        foreach (SummaryRow row in ModelSummary.Of(arch).Rows.Where(r =>
            r.Layer.StartsWith("conv") || r.Layer.StartsWith("fc")))
        {
            using Tensor y = model.ForwardTo(x, row.Layer);
            long[] expected = row.Layer.StartsWith("fc") ? new long[] { 2, row.Channels } : new long[] { 2,
                row.Channels, row.Height, row.Width };
            Assert.Equal(expected, y.shape);
        }
    }

    [Fact]
    public void OwtStateDictKeysAreTorchvisions()
    {
        using var model = new AlexNetModel(Variants.Get(Variants.Owt));
        string[] expected =
        {
            "features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
            "features.6.weight", "features.6.bias", "features.8.weight", "features.8.bias",
            "features.10.weight", "features.10.bias", "classifier.1.weight", "classifier.1.bias",
            "classifier.4.weight", "classifier.4.bias", "classifier.6.weight", "classifier.6.bias",
        };
        Assert.Equal(expected, model.state_dict().Keys.ToArray());
    }

    [Fact]
    public void TowersAreGroupsOnConv2Conv4Conv5Only()
    {
        Architecture arch = Variants.Get(Variants.Paper);
        Assert.Equal(new[] { 1, 2, 1, 2, 2 }, arch.Convs.Select(c => c.Groups).ToArray());
        Assert.All(Variants.Get(Variants.Paper1Gpu).Convs, c => Assert.Equal(1, c.Groups));
    }

    [Fact]
    public void ActivationIsSwitchableToTanh()
    {
        using var model = new AlexNetModel(Variants.Get(Variants.Small, 10, 1) with { Activation = Activation.Tanh });
        Assert.Contains(model.modules(), m => m is Tanh);
        Assert.DoesNotContain(model.modules(), m => m is ReLU);
    }

    [Fact]
    public void BadArchitecturesAreRejectedWithAReason()
    {
        Assert.Contains("Unknown model", Assert.Throws<ArgumentException>(() => Variants.Get("alexnet2")).Message);
        Assert.Contains("too small",
            Assert.Throws<ArgumentException>(() => Variants.Get(Variants.Paper, inputSize: 40)).Message);
        Assert.Contains("towers",
            Assert.Throws<ArgumentException>(() => new AlexNetModel(Variants.Get(Variants.Small, 10, 1) with
            {
                Convs = Variants.Get(Variants.Small).Convs.SetItem(1,
                new ConvLayer("conv2", 63, 5, 1, 2, 2, true, true, true)),
            })).Message);
    }
}
