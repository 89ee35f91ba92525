using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Model;

/// <summary>The net on oneDNN's primitives (OneDnnNet.cs): float32 against the modules, int8 against its
/// arithmetic.</summary>
public class OneDnnNetTests
{
    private static void SkipUnlessAvailable() =>
        Skip.If(OneDnnNet.Unavailable is not null, $"oneDNN is not used here: {OneDnnNet.Unavailable}");

    private static Architecture Net(string variant) => variant.StartsWith("small", StringComparison.Ordinal)
        ? Variants.Get(variant, 10, 1) : variant == Variants.Figure1 ? Variants.Get(variant, 10,
        3) : Variants.Get(variant, 1000, 3);

    [SkippableTheory]
    [InlineData(Variants.Paper)]
    [InlineData(Variants.Paper1Gpu)]
    [InlineData(Variants.Owt)]
    [InlineData(Variants.Small)]
    [InlineData(Variants.Small1Gpu)]
    [InlineData(Variants.Figure1)]
    public void Float32MatchesTheModulesWithin1e4OnEveryVariant(string variant)
    {
        SkipUnlessAvailable();
        Architecture arch = Net(variant);
        using var model = new AlexNetModel(arch, seed: 3);
        model.eval();
        using var _ = no_grad();
        using var engine = new OneDnnNet(model);
        using var g = new Generator(5);
        foreach (int batch in new[] { 3, 1 })   // 3 = 2 + 1: two plans, the weights' reorders shared, run as chunks
        {
            using Tensor x = randn(new long[] { batch, arch.InputChannels, arch.InputSize,
                arch.InputSize }, generator: g);
            using Tensor expected = model.forward(x);
            using Tensor got = engine.Forward(x);
            double scale = expected.abs().max().item<float>();
            double err = (got - expected).abs().max().item<float>();
            Assert.True(err <= 1e-4 * scale, $"{variant} batch {batch}: off by {err:E2} of {scale:E2}");
        }
        // Each learned layer ran as a oneDNN convolution or inner product, and §3.3's LRN (odd n, within each tower)
        // as oneDNN's (no silent fallback).
        IReadOnlyList<string> steps = engine.Describe(1);
        foreach (string layer in model.LayerNames)
        {
            Assert.Contains(steps, s => s.StartsWith(layer + ":", StringComparison.Ordinal));
        }
        Assert.Equal(arch.Lrn is null ? 0 : arch.Convs.Count(c => c.Lrn),
            steps.Count(s => s.Contains(" lrn: ", StringComparison.Ordinal)));
    }

    /// <summary>
    /// The timing behind every measured choice (Dnnl.BestSeconds): a warm-up, then the best of the timed runs; a run
    /// as slow as `enough` ends it after the first timed one, with that run's time, not "never timed".
    /// </summary>
    [Fact]
    public void TheBestOfTheTimedRunsIsTakenAfterAWarmUp()
    {
        int calls = 0;
        double fast = Dnnl.BestSeconds(() => calls++, timed: 4, enough: 1);
        Assert.Equal(5, calls);
        Assert.InRange(fast, 0, 1e-3);
        calls = 0;
        double slow = Dnnl.BestSeconds(() =>
        {
            calls++;
            System.Threading.Thread.Sleep(5);
        }, timed: 4, enough: 1e-3);
        Assert.Equal(2, calls);
        Assert.InRange(slow, 4e-3, 1);
    }

    /// <summary>
    /// A plan whose run takes under a millisecond is timed on one thread too (OneDnnNet.Fastest): the one-thread plan
    /// of `small`, made with that many threads, computes the modules' function to the same 1e-4, says so and leaves
    /// libtorch's threads as they were; owt's batch of two (2.6 GFLOP, milliseconds on any CPU) keeps every thread.
    /// </summary>
    [SkippableFact]
    public void AShortRunMayTakeOneThreadAndComputesTheSame()
    {
        SkipUnlessAvailable();
        Architecture arch = Net(Variants.Small);
        using var model = new AlexNetModel(arch, seed: 3);
        model.eval();
        using var _ = no_grad();
        int threads = Dnnl.Threads;
        using var one = new OneDnnNet(model, threads: 1);
        using var g = new Generator(6);
        using Tensor x = randn(new long[] { 1, 1, arch.InputSize, arch.InputSize }, generator: g);
        using Tensor expected = model.forward(x);
        using Tensor got = one.Forward(x);
        // the one-thread plan puts the caller's setting back
        Assert.Equal(threads, Dnnl.Threads);
        double scale = expected.abs().max().item<float>();
        Assert.True((got - expected).abs().max().item<float>() <= 1e-4 * scale);
        Assert.Equal("threads: 1", one.Describe(1)[^1]);
        using var measured = new OneDnnNet(model);
        Assert.Matches("^threads: [0-9]+$", measured.Describe(1)[^1]);

        using var owt = new AlexNetModel(Net(Variants.Owt), seed: 3);
        using var big = new OneDnnNet(owt);
        Assert.Equal($"threads: {Planes.Threads}", big.Describe(2)[^1]);
    }

    /// <summary>
    /// Winograd's 3×3 convolutions (owt's conv3–conv5, fewer multiplications by transforming tiles) compute the
    /// modules' function within the same 1e-4, each layer reporting oneDNN's Winograd kernel; the measured choice and
    /// the direct one agree with them too.
    /// </summary>
    [SkippableFact]
    public void WinogradsConvolutionsMatchTheModulesWithin1e4()
    {
        SkipUnlessAvailable();
        Architecture arch = Net(Variants.Owt);
        using var model = new AlexNetModel(arch, seed: 3);
        model.eval();
        using var _ = no_grad();
        using var winograd = new OneDnnNet(model, threeByThree: ConvolutionAlgorithm.Winograd);
        IReadOnlyList<string> steps = winograd.Describe(4);
        Skip.IfNot(steps.Any(s => s.Contains("wino", StringComparison.Ordinal)),
            $"oneDNN {OneDnnNet.Isa} has no Winograd convolution here");
        foreach (string layer in new[] { "conv3", "conv4", "conv5" })
        {
            Assert.Contains(steps, s => s.StartsWith(layer + ":",
                StringComparison.Ordinal) && s.Contains("wino", StringComparison.Ordinal));
        }
        Assert.DoesNotContain(steps, s => (s.StartsWith("conv1:", StringComparison.Ordinal) || s.StartsWith("conv2:",
            StringComparison.Ordinal)) && s.Contains("wino", StringComparison.Ordinal));
        using var direct = new OneDnnNet(model, threeByThree: ConvolutionAlgorithm.Direct);
        Assert.DoesNotContain(direct.Describe(4), s => s.Contains("wino", StringComparison.Ordinal));
        using var measured = new OneDnnNet(model, threeByThree: ConvolutionAlgorithm.Measured);
        using var g = new Generator(7);
        using Tensor x = randn(new long[] { 4, 3, 224, 224 }, generator: g);
        using Tensor expected = model.forward(x);
        double scale = expected.abs().max().item<float>();
        foreach ((string name, OneDnnNet engine) in new[] { ("winograd", winograd),
            ("direct", direct), ("measured", measured) })
        {
            using Tensor got = engine.Forward(x);
            double err = (got - expected).abs().max().item<float>();
            Assert.True(err <= 1e-4 * scale, $"{name}: off by {err:E2} of {scale:E2}");
        }
    }

    /// <summary>
    /// An even LRN window (PyTorch's, one more channel below than above) is not oneDNN's centred one: §3.3 then runs on
    /// our own fused kernel in the plain layout between the primitives, in float32 and int8.
    /// </summary>
    [SkippableFact]
    public void AnEvenLrnWindowRunsOnOurKernelBetweenThePrimitives()
    {
        SkipUnlessAvailable();
        Architecture small = Net(Variants.Small);
        Architecture arch = small with { Lrn = small.Lrn! with { Size = 4 } };
        using var model = new AlexNetModel(arch, seed: 3);
        model.eval();
        using var _ = no_grad();
        using var engine = new OneDnnNet(model);
        Assert.Contains(engine.Describe(2), s => s.StartsWith("conv1 lrn+pool: ours", StringComparison.Ordinal));
        using Tensor x = randn(3, 1, 28, 28);
        using Tensor expected = model.forward(x), got = engine.Forward(x);
        double err = (got - expected).abs().max().item<float>(), scale = expected.abs().max().item<float>();
        Assert.True(err <= 1e-4 * scale, $"off by {err:E2} of {scale:E2}");
        Int8Quantization q = Int8Quantization.Calibrate(model, new[] { x }, CalibrationMethod.MinMax);
        using var int8 = new OneDnnNet(model, q);
        using Tensor quantized = int8.Forward(x);
        Assert.True((quantized - expected).abs().max().item<float>() < 0.1 * scale);
    }

    [SkippableFact]
    public void TheModelRunsTheEngineOnlyForInferenceWithoutGradients()
    {
        SkipUnlessAvailable();
        using var model = new AlexNetModel(Net(Variants.Small), seed: 3);
        model.eval();
        model.UseEngine(new OneDnnNet(model));
        using Tensor x = randn(2, 1, 28, 28);
        using (no_grad())
        {
            using Tensor viaEngine = model.forward(x), direct = model.Engine!.Forward(x);
            Assert.Equal(0f, (viaEngine - direct).abs().max().item<float>());
        }
        using Tensor withGrad = model.forward(x);   // the modules: a gradient can flow
        Assert.True(withGrad.requires_grad);
    }

    /// <summary>
    /// Resident memory stays flat over 1,000 inference batches, float32 and int8, with batch sizes cycling from 1 to 6
    /// as a server's do (run as power-of-two chunks: 5 = 4 + 1, so three plans serve them all).
    /// </summary>
    [SkippableFact]
    public void ResidentMemoryStaysFlatOverAThousandBatches()
    {
        SkipUnlessAvailable();
        using var model = new AlexNetModel(Net(Variants.Small), seed: 3);
        model.eval();
        using var g = new Generator(2);
        var inputs = Enumerable.Range(1, 6).Select(n => randn(new long[] { n, 1, 28, 28 }, generator: g)).ToArray();
        Int8Quantization q = Int8Quantization.Calibrate(model, inputs.Take(2), CalibrationMethod.MinMax);
        using var fp32 = new OneDnnNet(model);
        using var int8 = new OneDnnNet(model, q);
        using var _ = no_grad();
        void Run(int batches)
        {
            for (int i = 0; i < batches; i++)
            {
                using Tensor a = fp32.Forward(inputs[i % inputs.Length]),
                    b = int8.Forward(inputs[(i + 3) % inputs.Length]);
            }
        }
        Run(200);
        GC.Collect();
        long before = System.Diagnostics.Process.GetCurrentProcess().WorkingSet64;
        Run(1000);
        GC.Collect();
        long growth = System.Diagnostics.Process.GetCurrentProcess().WorkingSet64 - before;
        Assert.True(growth < 16 << 20, $"resident memory grew {growth >> 20} MiB over 1,000 batches");
        foreach (Tensor t in inputs)
        {
            t.Dispose();
        }
    }

    [SkippableFact]
    public void Int8IsRefusedWithoutACalibrationNamingTheCommand()
    {
        SkipUnlessAvailable();
        using var model = new AlexNetModel(Net(Variants.Small), seed: 3);
        var e = Assert.Throws<ArgumentException>(() => OneDnnNet.For(model, Precision.Int8,
            InferenceEngine.Auto, null, "run/best.ckpt"));
        Assert.Contains("run/best.ckpt is not quantized", e.Message);
        Assert.Contains("alexnet quantize", e.Message);
        var tanh = Net(Variants.Small) with { Activation = Activation.Tanh };
        Assert.Contains("int8 inputs are unsigned ReLU outputs", OneDnnNet.Unsupported(tanh, int8: true));
    }

    /// <summary>
    /// int8 computes what it should, checked where its values are integers: with fc8 made the identity (so its output
    /// is its u8 input times its scale), every u8 value fc8 reads equals the float64 net's (each learned layer's input
    /// rounded to its grid, saturating; weights to their per-channel s8 grid) but for a few float32 rounding ties, off
    /// by one step. conv1–conv3 of the small net: s8 input, §3.3's LRN within towers with its pool, a two-tower conv,
    /// and a conv read directly by the next layer. (Deeper, the ties' one-step differences cascade: 1.8% of conv4's
    /// outputs, 11% of conv5's, measured.)
    /// </summary>
    [SkippableFact]
    public void Int8ActivationsAreTheQuantizedFloat64NetsToOneStep()
    {
        SkipUnlessAvailable();
        Architecture small = Net(Variants.Small) with { Hidden = ImmutableArray<FcLayer>.Empty };
        small = small with { Convs = small.Convs.Take(3).ToImmutableArray() };
        Architecture arch = small with { Classes = small.FlattenedFeatures };
        using var model = new AlexNetModel(arch, seed: 4);
        model.eval();
        using (no_grad())
        {
            (Tensor w, Tensor b) = model.LayerParameters("fc8");
            w.copy_(eye(arch.Classes));
            b.zero_();
        }
        using var g = new Generator(11);
        var calibration = Enumerable.Range(0, 2).Select(_ => randn(new long[] { 8, 1, 28, 28 }, generator: g)).ToList();
        Int8Quantization q = Int8Quantization.Calibrate(model, calibration, CalibrationMethod.Percentile, 99.9);
        using var engine = new OneDnnNet(model, q);
        using var _ = no_grad();
        using Tensor x = randn(new long[] { 8, 1, 28, 28 }, generator: g);
        using Tensor got = engine.Forward(x).div(q.InputScale("fc8", false)).round().to(ScalarType.Float64);
        using Tensor expected = FakeQuantized(model, q, x, stopAt: "fc8");
        using Tensor steps = (got - expected).abs();
        long off = steps.gt(0.5).sum().item<long>();
        Assert.True(steps.max().item<double>() <= 1, $"a u8 value is off by {steps.max().item<double>()} steps");
        Assert.True(off <= expected.numel() / 100, $"{off} of {expected.numel()} u8 values off by one step");
        Assert.True(expected.gt(0).sum().item<long>() > expected.numel() / 10,
            "too few non-zero activations for the check to tell");
        calibration.ForEach(t => t.Dispose());
    }

    /// <summary>
    /// The int8 logits of whole nets: nearer the quantized float64 net than float32 is (so int8 ran, and ran these
    /// grids); the difference left is float32's rounding at ties, carried through the layers.
    /// </summary>
    [SkippableTheory]
    [InlineData(Variants.Small)]
    [InlineData(Variants.Owt)]
    public void Int8LogitsFollowTheQuantizedFloat64Net(string variant)
    {
        SkipUnlessAvailable();
        Architecture arch = Net(variant);
        using var model = new AlexNetModel(arch, seed: 4);
        model.eval();
        using var g = new Generator(11);
        var calibration = Enumerable.Range(0, 2).Select(_ => randn(new long[] { 8, arch.InputChannels, arch.InputSize,
            arch.InputSize }, generator: g)).ToList();
        Int8Quantization q = Int8Quantization.Calibrate(model, calibration, CalibrationMethod.Percentile, 99.9);
        using var engine = new OneDnnNet(model, q);
        using var _ = no_grad();
        using Tensor x = randn(new long[] { 4, arch.InputChannels, arch.InputSize, arch.InputSize }, generator: g);
        using Tensor got = engine.Forward(x);
        using Tensor expected = FakeQuantized(model, q, x);
        using Tensor fp32 = model.forward(x);
        double err = (got.to(ScalarType.Float64) - expected).abs().max().item<double>();
        double quantisationEffect = (fp32.to(ScalarType.Float64) - expected).abs().max().item<double>();
        Assert.True(err <= 0.5 * quantisationEffect,
            $"{variant}: int8 off its reference by {err:E2}; quantisation itself moves the " +
            $"logits {quantisationEffect:E2}");
        calibration.ForEach(t => t.Dispose());
    }

    /// <summary>The net's modules in float64, each learned layer's input and weights rounded as int8 rounds
    /// them.</summary>
    /// <param name="stopAt">Return the integer grid values at this layer's input instead.</param>
    private static Tensor FakeQuantized(AlexNetModel model, Int8Quantization q, Tensor x, string? stopAt = null)
    {
        using var scope = NewDisposeScope();
        Tensor h = x.to(ScalarType.Float64);
        bool first = true;
        foreach ((string name, nn.IModule<Tensor, Tensor> module, bool flatten) in model.Pipeline())
        {
            if (flatten)
            {
                h = module.call(h).flatten(1);
                continue;
            }
            if (module is Conv2d or Linear)
            {
                double s = q.InputScale(name, first);
                h = (h / s).round().clamp(first ? -128 : 0, first ? 127 : 255);   // saturating, as oneDNN and ONNX do
                if (name == stopAt)
                {
                    return h.MoveToOuterDisposeScope();
                }
                h *= s;
                first = false;
                (Tensor w, Tensor b) = model.LayerParameters(name);
                using Tensor ws = tensor(Int8Quantization.WeightScales(w)).to(ScalarType.Float64);
                long[] shape = w.dim() == 4 ? new long[] { -1, 1, 1, 1 } : new long[] { -1, 1 };
                Tensor wq = (w.to(ScalarType.Float64) / ws.view(shape)).round().clamp(-127, 127) * ws.view(shape);
                h = module switch
                {
                    Conv2d c => nn.functional.conv2d(h, wq, b.to(ScalarType.Float64), strides: c.stride,
                        padding: c.padding, groups: c.groups),
                    _ => nn.functional.linear(h, wq, b.to(ScalarType.Float64)),
                };
                continue;
            }
            h = module is AlexNet.Model.LocalResponseNorm lrn
                ? AlexNet.Model.LocalResponseNorm.Reference(h, lrn.Params) : module.call(h);
        }
        return h.MoveToOuterDisposeScope();
    }
}
