using System.IO;
using System.Linq;
using AlexNet.Cli;
using AlexNet.Model;
using AlexNet.Training;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>
/// --precision bf16 (not in the paper): the conv and FC products in bfloat16 from float32 master weights.
/// </summary>
public class PrecisionTests
{
    private static readonly Device Cpu = CPU;

    private static void SkipUnlessFast() => Skip.IfNot(LowPrecision.Fast(Cpu),
        "this CPU has no oneDNN bfloat16 kernels (no AVX-512, or ONEDNN_MAX_CPU_ISA caps it): bf16 is refused here");

    /// <summary>x rounded to bfloat16's 8 significant bits and back, in float64.</summary>
    private static Tensor Rounded(Tensor x) => x.to(ScalarType.BFloat16).to(ScalarType.Float64);

    [SkippableFact]
    public void AConvIsTheExactProductOfBfloat16OperandsRoundedOnce()
    {
        SkipUnlessFast();
        using var g = new Generator(7);
        using var model = new AlexNetModel(Variants.Get(Variants.Small, 10, 3, 32), seed: 2);
        var conv = (Conv2d)model.Layer("conv2");
        // the reference's geometry from the net's description, not the module
        ConvLayer layer = model.Architecture.Convs[1];
        using Tensor x = randn(new long[] { 2, 32, 13, 13 }, generator: g);
        AssertTheExactProductOfRoundedOperands(x, conv.weight!, conv.bias!, a => LowPrecision.Conv(a, conv),
            (a, w, b) => nn.functional.conv2d(a, w, b, padding: [layer.Padding], groups: layer.Groups), g);
        // The float32 conv's outputs are not all bfloat16 values, so the check above could tell.
        using Tensor fp32 = conv.call(x);
        Assert.False(fp32.eq(fp32.to(ScalarType.BFloat16).to(ScalarType.Float32)).all().item<bool>());
    }

    [SkippableFact]
    public void AFullyConnectedLayerIsTheExactProductOfBfloat16OperandsRoundedOnce()
    {
        SkipUnlessFast();
        using var g = new Generator(9);
        using var model = new AlexNetModel(Variants.Get(Variants.Small, 10, 3, 32), seed: 2);
        var fc = (Linear)model.Layer("fc7");
        using Tensor x = randn(new long[] { 5, fc.weight!.shape[1] }, generator: g);
        AssertTheExactProductOfRoundedOperands(x, fc.weight!, fc.bias!,
            a => LowPrecision.Linear(a, fc), nn.functional.linear, g);
    }

    /// <summary>
    /// The bfloat16 product against the same product in float64 on the operands rounded to bfloat16: forward and both
    /// gradients may differ only by the result's own rounding, and every output is a bfloat16 value (so bfloat16 ran).
    /// </summary>
    private static void AssertTheExactProductOfRoundedOperands(Tensor input, Tensor weight, Tensor bias,
        System.Func<Tensor, Tensor> lowPrecision,
        System.Func<Tensor, Tensor, Tensor, Tensor> reference, Generator g)
    {
        using Tensor x = input.detach().clone().requires_grad_();
        using Tensor y = lowPrecision(x);
        using Tensor up = randn(y.shape, generator: g);
        y.backward(new[] { up });
        using Tensor x64 = Rounded(x.detach()).requires_grad_(), w64 = Rounded(weight.detach()).requires_grad_();
        using Tensor exact = reference(x64, w64, Rounded(bias.detach()));
        exact.backward(new[] { Rounded(up) });   // the gradient reaches the product through the cast, as bfloat16
        Assert.Equal(ScalarType.Float32, y.dtype);
        AssertWithinBfloat16(y, exact, "output");
        AssertWithinBfloat16(x.grad!, x64.grad!, "input gradient");
        AssertWithinBfloat16(weight.grad!, w64.grad!, "weight gradient");
        Assert.True(y.eq(y.to(ScalarType.BFloat16).to(ScalarType.Float32)).all().item<bool>());
    }

    /// <summary>
    /// Within one bfloat16 rounding (2⁻⁸ of the largest value) of the float64 result, with room for float32 sums.
    /// </summary>
    private static void AssertWithinBfloat16(Tensor got, Tensor exact, string what)
    {
        double scale = exact.abs().max().item<double>();
        double err = (got.to(ScalarType.Float64) - exact).abs().max().item<double>();
        Assert.True(err <= scale / 128, $"{what}: off by {err} (largest value {scale})");
    }

    /// <summary> The whole net against float32: bfloat16 keeps 8 significant bits, and near-ties in ReLU and max-pool
    /// go the other way in places, so the gradients agree in direction (cosine), not to float32's digits. The masters
    /// stay float32.
    /// </summary>
    [SkippableFact]
    public void TheNetAndItsGradientsPointWhereFloat32sDoAndTheMastersStayFloat32()
    {
        SkipUnlessFast();
        Architecture arch = Variants.Get(Variants.Small, 10, 3, 32);
        using var fp32 = new AlexNetModel(arch, seed: 4);
        using var bf16 = new AlexNetModel(arch, seed: 4) { Precision = Precision.Bf16 };
        fp32.eval();   // dropout off, so the two nets compute the same function
        bf16.eval();
        using var g = new Generator(3);
        using Tensor x = randn(new long[] { 4, 3, arch.InputSize, arch.InputSize }, generator: g);
        using Tensor labels = tensor(new long[] { 1, 2, 3, 4 });
        using Tensor a = fp32.forward(x), b = bf16.forward(x);
        Assert.Equal(ScalarType.Float32, b.dtype);
        double rel = (a - b).norm().item<float>() / a.norm().item<float>();
        Assert.InRange(rel, 1e-5, 3e-2);   // bfloat16's rounding shows, and stays small
        nn.functional.cross_entropy(a, labels).backward();
        nn.functional.cross_entropy(b, labels).backward();
        foreach (((string name, Parameter p), (_, Parameter q)) in fp32.named_parameters().Zip(bf16.named_parameters()))
        {
            Assert.Equal(ScalarType.Float32, q.dtype);
            Assert.Equal(ScalarType.Float32, q.grad!.dtype);
            double cosine = (p.grad! * q.grad!).sum().item<float>() / (p.grad!.norm()
                .item<float>() * q.grad!.norm().item<float>());
            Assert.True(cosine > 0.9, $"{name}: the bf16 gradient's cosine with float32's is {cosine:F3}");
        }
    }

    [SkippableFact]
    public void ARunTrainedInBf16KeepsItsPrecisionAndEvalCanOverrideIt()
    {
        SkipUnlessFast();
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 32, 2);
        TestData.WriteSyntheticStore(dir["data/val"], 8, 2);
        Assert.Equal(0, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--max-steps", "3", "-b",
            "8", "--input-scale", "0.0125",
            "--precision", "bf16", "--out", dir["run"] }));
        Assert.Contains("\"precision\": \"bf16\"", File.ReadAllText(Path.Combine(dir["run"], Trainer.OptionsFile)));
        string ckpt = Path.Combine(dir["run"], "last.ckpt");
        (AlexNetModel trained, _) = Checkpoint.LoadModel(ckpt);
        using (trained)
        {
            Assert.Equal(Precision.Bf16, trained.Precision);
            Assert.All(trained.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        }
        (AlexNetModel plain, _) = Checkpoint.LoadModel(ckpt, precision: Precision.Fp32);
        plain.Dispose();
        Assert.Equal(Precision.Fp32, plain.Precision);
        Assert.Equal(0,
            App.Run(new[] { "eval", "-c", ckpt, "-d", dir["data/val"], "--views", "centre", "--precision", "fp32" }));
        Assert.Equal(2, App.Run(new[] { "eval", "-c", ckpt, "-d", dir["data/val"], "--precision", "fp8" }));
        // ONNX is float32: the export and its check in ONNX Runtime run the float32 net.
        Assert.Equal(0, App.Run(new[] { "export", "-c", ckpt, "--onnx", dir["run/net.onnx"] }));
    }

    [SkippableFact]
    public void Bf16IsRefusedWhereItWouldCrawlBeforeAnythingIsWritten()
    {
        Skip.If(LowPrecision.Fast(Cpu),
            "this CPU runs bfloat16 on oneDNN: the refusal cannot be shown (ONEDNN_MAX_CPU_ISA=AVX2 shows it)");
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 16, 2);
        TestData.WriteSyntheticStore(dir["data/val"], 8, 2);
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--max-steps", "1", "--precision",
            "bf16", "--out", dir["run"] }));
        Assert.False(Directory.Exists(dir["run"]));
        Assert.Equal(2, App.Run(new[] { "bench", "-m", "small", "--steps", "1", "--precision", "bf16" }));
        using var model = new AlexNetModel(Variants.Get(Variants.Small, 10, 1, 28));
        Assert.Contains("--precision fp32",
            Assert.Throws<System.ArgumentException>(() => model.Precision = Precision.Bf16).Message);
    }
}
