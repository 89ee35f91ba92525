using System;
using System.Linq;
using AlexNet.Model;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

public class InitAndTowerTests
{
    [Fact]
    public void PaperInitHasTheStatedStatisticsPerLayer()
    {
        using var model = new AlexNetModel(Variants.Get(Variants.Paper), seed: 3);
        string[] biasOne = { "conv2", "conv4", "conv5", "fc6", "fc7" };
        foreach (string layer in model.LayerNames)
        {
            (Tensor w, Tensor b) = model.LayerParameters(layer);
            double std = w.std().item<float>();
            double mean = w.mean().item<float>();
            Assert.InRange(std, 0.0097, 0.0103);           // N(0, 0.01²): ≥ 34,848 draws per layer
            Assert.InRange(mean, -0.0005, 0.0005);
            double expectedBias = biasOne.Contains(layer) ? 1.0 : 0.0;
            Assert.True(b.eq(expectedBias).all().item<bool>(), $"{layer} bias should be {expectedBias}");
        }
    }

    [Fact]
    public void KaimingInitScalesWithFanInOfOneTower()
    {
        using var model = new AlexNetModel(Variants.Get(Variants.Paper) with { Init = InitScheme.Kaiming }, seed: 3);
        (Tensor w, Tensor b) = model.LayerParameters("conv2");   // fan-in 48·5·5: one tower's maps
        Assert.InRange(w.std().item<float>(), 0.97 * Math.Sqrt(2.0 / 1200), 1.03 * Math.Sqrt(2.0 / 1200));
        Assert.True(b.eq(0).all().item<bool>());
        using var zeroBias = new AlexNetModel(Variants.Get(Variants.Paper) with { Init = InitScheme.PaperZeroBias });
        Assert.True(zeroBias.LayerParameters("fc6").Bias.eq(0).all().item<bool>());
    }

    [Fact]
    public void AGroupedLayerIsTwoTowersOnSplitChannels()
    {
        // §3.2: conv2's towers each read only the 48 maps on their own GPU.
        using var model = new AlexNetModel(Variants.Get(Variants.Paper, inputSize: 67), seed: 5);
        var conv2 = (Conv2d)model.Layer("conv2");
        using var x = randn(2, 96, 13, 13);
        using var _ = no_grad();
        using Tensor grouped = conv2.forward(x);
        Tensor[] xs = x.chunk(2, 1);
        Tensor[] ws = conv2.weight!.chunk(2, 0);
        Tensor[] bs = conv2.bias!.chunk(2, 0);
        using Tensor top = nn.functional.conv2d(xs[0], ws[0], bs[0], padding: new long[] { 2, 2 });
        using Tensor bottom = nn.functional.conv2d(xs[1], ws[1], bs[1], padding: new long[] { 2, 2 });
        using Tensor towers = cat(new[] { top, bottom }, 1);
        Assert.Equal(new long[] { 2, 256, 13, 13 }, grouped.shape);
        Assert.True(grouped.allclose(towers, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void SameSeedGivesIdenticalWeightsAndOutputs()
    {
        Architecture arch = Variants.Get(Variants.Small, 10, 1);
        using var a = new AlexNetModel(arch, seed: 42);
        using var b = new AlexNetModel(arch, seed: 42);
        using var c = new AlexNetModel(arch, seed: 43);
        using var x = randn(4, 1, 28, 28);
        random.manual_seed(9);
        using Tensor ya = a.forward(x);     // training mode: dropout draws from the global generator
        random.manual_seed(9);
        using Tensor yb = b.forward(x);
        using Tensor yc = c.forward(x);
        Assert.True(ya.eq(yb).all().item<bool>());
        Assert.False(ya.eq(yc).all().item<bool>());
    }
}
