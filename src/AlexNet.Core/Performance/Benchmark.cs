// Throughput of a training step and of inference on in-memory batches, with warm-up and medians, and
// the time each layer takes forward and backward (so the slow ones show).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using AlexNet.Inference;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using AlexNet.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Performance;

/// <param name="Conv1MultiplyAdds">conv1's share of <paramref name="MultiplyAddsPerImage"/>: its input gradient is
/// never computed (the image needs none).</param>
public sealed record BenchResult(string Model, string Lrn, int Batch, int Threads,
    double TrainImagesPerSecond, double InferImagesPerSecond,
    double TrainStepMs, double InferMs, long PeakRssBytes, long MultiplyAddsPerImage,
    long HugePageBytes = 0, double MatmulGflops = 0,
    long Conv1MultiplyAdds = 0, double PeakGflops = 0, Precision Precision = Precision.Fp32, string? Towers = null,
    int Replicas = 1)
{
    /// <summary>
    /// Multiply-adds of one training step per image: forward, weight gradients and input gradients, each as many as
    /// the forward pass, less conv1's input gradient, which training does not compute.
    /// </summary>
    public long TrainMultiplyAddsPerImage => 3 * MultiplyAddsPerImage - Conv1MultiplyAdds;

    /// <summary>Achieved training GFLOP/s, 2 FLOPs per multiply-add.</summary>
    public double TrainGflops => 2.0 * TrainMultiplyAddsPerImage * TrainImagesPerSecond / 1e9;
    public double InferGflops => 2.0 * MultiplyAddsPerImage * InferImagesPerSecond / 1e9;
}

public static class Benchmark
{
    /// <summary> The net for an LRN mode: fused (ours: the fused stages and our LRN kernel), torch (libtorch's LRN,
    /// separate modules), none (no LRN).
    /// </summary>
    private static AlexNetModel ModelFor(Architecture arch, string lrnMode) =>
        new(lrnMode == "none" ? arch with
        {
            Lrn = null,
        } : arch, seed: 1, lrnMode == "torch" ? KernelChoice.Libtorch : KernelChoice.Fused);

    /// <param name="device">cpu, cuda or cuda:N: the net, the batch and the update there (the fused kernels are the
    /// CPU's).</param>
    /// <param name="precision">The conv and FC products' number format (Precision.cs).</param>
    /// <param name="towers">§3.2: run the net as two towers on these two devices (TowerNet), concurrently with
    /// <paramref name="concurrent"/>; null: the grouped net.</param>
    public static BenchResult Run(Architecture arch, string lrnMode, int batch, int threads, int warmup,
        int steps, string device = "cpu",
        Precision precision = Precision.Fp32, string? towers = null, bool concurrent = false, int replicas = 1)
    {
        Compute.UseThreads(threads);
        // train's checks of the same flags
        new MachineOptions(threads, Towers: towers, ConcurrentTowers: concurrent, Replicas: replicas).Validate();
        Device d = Compute.ResolveDevice(device);
        using AlexNetModel grouped = ModelFor(arch, lrnMode);
        grouped.to(d);
        grouped.Precision = precision;
        arch = grouped.Architecture;
        using TowerNet? split = towers is null ? null : TowerNet.Place(grouped, towers, threads, concurrent);
        nn.Module<Tensor, Tensor> model = split is null ? grouped : split;
        using var sgd = new PaperSgd(model.parameters(), 0.001, 0.9, 0.0005);
        using Replicas? parts = replicas > 1 ? new Replicas(grouped, replicas, threads) : null;
        using var x = randn(batch, arch.InputChannels, arch.InputSize, arch.InputSize, device: d);
        using var y = randint(0, arch.Classes, new long[] { batch }, device: d);
        model.train();
        var trainTimes = new List<double>();
        for (int i = 0; i < warmup + steps; i++)
        {
            var clock = Stopwatch.StartNew();
            TrainingStep.RunOnce(parts is null ? () => TrainingStep.Run(model, sgd, x, y) : () => parts.Run(sgd, x, y));
            if (d.type == DeviceType.CUDA)
            {
                torch.cuda.synchronize();   // the GPU runs behind the host: time the work, not its launch
            }
            if (i >= warmup)
            {
                trainTimes.Add(clock.Elapsed.TotalMilliseconds);
            }
        }
        long hugePages = Compute.HugePageBytes();
        model.eval();
        var inferTimes = new List<double>();
        using (no_grad())
        {
            for (int i = 0; i < warmup + steps; i++)
            {
                var clock = Stopwatch.StartNew();
                using (NewDisposeScope())
                {
                    model.forward(x);
                }
                if (d.type == DeviceType.CUDA)
                {
                    torch.cuda.synchronize();
                }
                if (i >= warmup)
                {
                    inferTimes.Add(clock.Elapsed.TotalMilliseconds);
                }
            }
        }
        double train = Median(trainTimes), infer = Median(inferTimes);
        ModelSummary summary = ModelSummary.Of(arch);
        return new BenchResult(arch.Variant, lrnMode, batch, threads, batch / train * 1000,
            batch / infer * 1000, train, infer,
            Process.GetCurrentProcess().PeakWorkingSet64, summary.MultiplyAdds, hugePages,
            Conv1MultiplyAdds: summary.Rows.First(r => r.Layer == "conv1").MultiplyAdds,
            Precision: precision,
            Towers: towers is null ? null : towers + (concurrent ? " concurrent" : ""), Replicas: replicas);
    }

    /// <summary>
    /// Images/s of one alternating round of <see cref="VersusOnnxRuntime"/>: ours and ONNX Runtime at the asked
    /// precision, and under int8 our float32 too (the int8 speed-up is over it).
    /// </summary>
    public sealed record InferenceRound(double Ours, double OnnxRuntime, double? OursFp32 = null);

    /// <summary> Inference in ONNX Runtime against ours: the net exported (OnnxExport.cs) to <paramref
    /// name="onnxPath"/>, the same weights, batch and threads, timed in alternating rounds (the machine's noise falls
    /// on both). Under int8 the net is calibrated on random inputs (the speed does not depend on the ranges), ours
    /// runs on oneDNN's int8 kernels and ONNX Runtime on its own, from the same QDQ file.
    /// </summary>
    /// <param name="engine">What runs ours (OneDnnNet.cs): oneDNN where it serves the net by default.</param>
    public static List<InferenceRound> VersusOnnxRuntime(Architecture arch, int batch, int threads,
        int steps, int rounds, string onnxPath,
        Precision precision = Precision.Fp32, InferenceEngine engine = InferenceEngine.Auto)
    {
        Compute.UseThreads(threads);
        using AlexNetModel model = ModelFor(arch, "fused");
        model.eval();
        var options = new TrainOptions { Model = arch.Variant, Crop = arch.InputSize };
        ModelCard card = Checkpoint.WeightsOnly(options, arch,
            Enumerable.Range(0, arch.Classes).Select(i => $"{i}").ToArray(),
            new float[arch.InputChannels * arch.InputSize * arch.InputSize], arch.InputSize).ModelCard;
        bool int8 = precision == Precision.Int8;
        if (int8)
        {
            using var generator = new Generator(7);
            var calibration = Enumerable.Range(0, 4).Select(_ => randn(new long[] { 16, arch.InputChannels,
                arch.InputSize, arch.InputSize }, generator: generator)).ToList();
            card = card with { Int8 = Int8Quantization.Calibrate(model, calibration, CalibrationMethod.Percentile) };
            calibration.ForEach(t => t.Dispose());
        }
        AlexNet.Interop.OnnxExport.Write(onnxPath, model, card, int8);
        using var ort = new AlexNet.Interop.OnnxClassifier(onnxPath, threads);
        using OneDnnNet? fp32 = OneDnnNet.For(model, Precision.Fp32, engine, null, arch.Variant);
        using OneDnnNet? ours = int8 ? OneDnnNet.For(model, Precision.Int8, engine, card.Int8, arch.Variant) : null;
        using Tensor x = randn(batch, arch.InputChannels, arch.InputSize, arch.InputSize);
        float[] input = x.data<float>().ToArray();
        double Time(Action run)
        {
            var times = new List<double>();
            for (int i = 0; i < 2 + steps; i++)
            {
                var clock = Stopwatch.StartNew();
                run();
                times.Add(clock.Elapsed.TotalMilliseconds);
            }
            return batch / Median(times.Skip(2).ToList()) * 1000;
        }
        void Forward(OneDnnNet? net)
        {
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            if (net is not null)
            {
                net.Forward(x);
            }
            else
            {
                model.forward(x);
            }
        }
        var result = new List<InferenceRound>();
        for (int round = 0; round < rounds; round++)
        {
            double mine = Time(() => Forward(int8 ? ours : fp32));
            double theirs = Time(() => ort.Logits(input, batch));
            result.Add(new InferenceRound(mine, theirs, int8 ? Time(() => Forward(fp32)) : null));
        }
        return result;
    }

    /// <summary>
    /// The machine's own rate for a large float32 matrix product through libtorch (GFLOP/s, median of 10): the ceiling
    /// against which each net's achieved FLOP/s is read.
    /// </summary>
    public static double MatmulGflops(int threads, int n = 2048)
    {
        Compute.UseThreads(threads);
        using var a = randn(n, n);
        using var b = randn(n, n);
        var times = new List<double>();
        for (int i = 0; i < 12; i++)
        {
            var clock = Stopwatch.StartNew();
            using (NewDisposeScope())
            {
                a.mm(b);
            }
            if (i >= 2)
            {
                times.Add(clock.Elapsed.TotalSeconds);
            }
        }
        return 2.0 * n * n * n / Median(times) / 1e9;
    }

    /// <summary>Forward and backward milliseconds (medians) of LRN alone on an N×C×H×W tensor.</summary>
    public static (double ForwardMs, double BackwardMs) LrnOnly(long[] shape, bool fused, int threads, int steps = 10)
    {
        var p = new LrnParams();
        using var x = randn(shape).relu_();
        return ForwardBackward(x, a => LocalResponseNorm.Apply(a, p, fused), threads, steps);
    }

    /// <summary>
    /// Forward and backward milliseconds (medians) of conv1/conv2's tail, ReLU → LRN → 3/2 max-pool, on an N×C×H×W conv
    /// output: the fused stage, or libtorch's three operations.
    /// </summary>
    public static (double ForwardMs, double BackwardMs) StageOnly(long[] shape, bool fused, int threads, int steps = 10)
    {
        var p = new LrnParams();
        using var x = randn(shape);
        return ForwardBackward(x,
            a => fused ? FusedStage.Apply(a, p, 3, 2) : FusedStage.Reference(a, p, 3, 2), threads, steps);
    }

    private static (double ForwardMs, double BackwardMs) ForwardBackward(Tensor input,
        Func<Tensor, Tensor> op, int threads, int steps)
    {
        Compute.UseThreads(threads);
        using var x = input.detach().requires_grad_();
        Tensor? g = null;
        var fwd = new List<double>();
        var bwd = new List<double>();
        try
        {
            for (int i = 0; i < steps + 2; i++)
            {
                using (NewDisposeScope())
                {
                    var clock = Stopwatch.StartNew();
                    Tensor y = op(x);
                    double f = clock.Elapsed.TotalMilliseconds;
                    g ??= randn_like(y).DetachFromDisposeScope();
                    clock.Restart();
                    y.backward(new[] { g });
                    double b = clock.Elapsed.TotalMilliseconds;
                    x.grad?.zero_();
                    if (i >= 2)
                    {
                        fwd.Add(f);
                        bwd.Add(b);
                    }
                }
            }
        }
        finally
        {
            g?.Dispose();
        }
        return (Median(fwd), Median(bwd));
    }

    /// <summary>
    /// Median forward and backward ms of our LRN kernel alone on preallocated tensors (no allocation, no autograd).
    /// </summary>
    public static (double ForwardMs, double BackwardMs) LrnKernelOnly(long[] shape, int threads, int steps = 20)
    {
        Compute.UseThreads(threads);
        var p = new LrnParams();
        using var x = randn(shape).relu_();
        using var y = empty_like(x);
        using var g = randn(shape);
        using var gx = empty_like(x);
        var forward = new List<double>();
        var backward = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            var clock = Stopwatch.StartNew();
            LocalResponseNorm.Kernel.Forward(x, y, p);
            forward.Add(clock.Elapsed.TotalMilliseconds);
            clock.Restart();
            LocalResponseNorm.Kernel.Backward(x, g, gx, p);
            backward.Add(clock.Elapsed.TotalMilliseconds);
        }
        return (Median(forward), Median(backward));
    }

    /// <summary>
    /// Median milliseconds of §5's update over all of a net's parameters (gradients set): PaperSgd's one fused pass,
    /// and the same rule as libtorch's four in-place operations plus zeroing the gradient.
    /// </summary>
    public static (double FusedMs, double LibtorchMs) UpdateOnly(Architecture arch, int threads, int steps = 5)
    {
        Compute.UseThreads(threads);
        using var model = new AlexNetModel(arch, seed: 1);
        TorchSharp.Modules.Parameter[] ps = model.parameters().ToArray();
        using var fused = new PaperSgd(ps, 0.01, 0.9, 0.0005);
        using var libtorch = new PaperSgd(ps, 0.01, 0.9, 0.0005, fused: false);
        double Time(PaperSgd sgd)
        {
            using (Tensor loss = ps.Select(p => p.sum()).Aggregate((a, b) => a + b))
            {
                loss.backward();   // gradients to update with (each step leaves them zero)
            }
            var clock = Stopwatch.StartNew();
            sgd.Step();
            return clock.Elapsed.TotalMilliseconds;
        }
        var f = new List<double>();
        var t = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            f.Add(Time(fused));
            t.Add(Time(libtorch));
        }
        return (Median(f), Median(t));
    }

    /// <summary>
    /// Median forward and backward milliseconds of each module of the net, in training mode, each timed alone.
    /// </summary>
    public static List<(string Layer, double ForwardMs, double BackwardMs)> PerLayer(
        Architecture arch, int batch, int threads,
        Precision precision = Precision.Fp32, int steps = 5)
    {
        Compute.UseThreads(threads);
        using var model = new AlexNetModel(arch, seed: 1) { Precision = precision };
        model.train();
        var rows = new List<(string, double, double)>();
        Tensor x = randn(batch, arch.InputChannels, arch.InputSize, arch.InputSize);
        bool first = true;
        foreach ((string name, nn.IModule<Tensor, Tensor> module, bool flatten) in model.Pipeline())
        {
            (double f, double b, Tensor output) = TimeLayer(x,
                a => flatten ? module.call(a).flatten(1) : model.Call(module, a), needsGradient: !first, steps);
            rows.Add((name, f, b));
            first = false;
            x.Dispose();
            x = output;
        }
        x.Dispose();
        return rows;
    }

    /// <summary>Median forward and backward ms of one layer, and its output (the next layer's input).</summary>
    private static (double ForwardMs, double BackwardMs, Tensor Output) TimeLayer(Tensor x, Func<Tensor, Tensor> layer,
        bool needsGradient, int steps)
    {
        var fwd = new List<double>();
        var bwd = new List<double>();
        Tensor? output = null;
        for (int i = 0; i < steps + 1; i++)
        {
            using var scope = NewDisposeScope();
            // The image needs no gradient in training, so conv1's backward computes only its weights' gradient.
            using Tensor leaf = x.detach().clone().requires_grad_(needsGradient);
            // Not a leaf, so in-place ReLU may write to it. A clone's backward hands the gradient on as it is and the
            // leaf keeps that tensor, so the timed backward is the layer's own (leaf.mul(1) added a full pass and a
            // fresh allocation per layer: ReLU's backward read 8.8 ms instead of ~1).
            Tensor input = needsGradient ? leaf.clone() : leaf;
            var clock = Stopwatch.StartNew();
            Tensor y = layer(input);
            double f = clock.Elapsed.TotalMilliseconds;
            using Tensor g = ones_like(y);
            clock.Restart();
            y.backward(new[] { g });
            double b = clock.Elapsed.TotalMilliseconds;
            if (i > 0)
            {
                fwd.Add(f);
                bwd.Add(b);
            }
            output?.Dispose();
            output = y.detach().clone().MoveToOuterDisposeScope();
        }
        return (Median(fwd), Median(bwd), output!);
    }

    /// <summary>
    /// Images per second the loader delivers with §4.1's full training augmentation (no training step).
    /// </summary>
    public static double LoaderImagesPerSecond(AlexNet.Data.ImageStore store, int workers,
        int batch, int minImages = 2000)
    {
        var aug = new AlexNet.Data.Augmentation(store,
            AlexNet.Data.AugmentOptions.PaperFor(Math.Min(store.Height, store.Width)));
        var loader = new AlexNet.Data.BatchLoader(store, aug, new AlexNet.Data.LoaderOptions(batch, workers));
        long images = 0;
        var clock = Stopwatch.StartNew();
        for (int epoch = 0; images < minImages; epoch++)
        {
            foreach (AlexNet.Data.Batch b in loader.TrainEpoch(1, epoch))
            {
                images += b.Count;
                b.Dispose();
            }
        }
        return images / clock.Elapsed.TotalSeconds;
    }

    /// <summary> Resident memory over <paramref name="steps"/> training steps after <paramref name="warmup"/>: samples
    /// every 50 steps. Flat (within a few %) means every tensor of a step is freed by its dispose scope.
    /// </summary>
    public static List<(int Step, long RssBytes)> RssOverSteps(Architecture arch, string lrnMode, int batch,
        int threads, int warmup, int steps,
        Precision precision = Precision.Fp32)
    {
        Compute.UseThreads(threads);
        using AlexNetModel model = ModelFor(arch, lrnMode);
        model.Precision = precision;
        using var sgd = new PaperSgd(model.parameters(), 0.001, 0.9, 0.0005);
        using var x = randn(batch, arch.InputChannels, arch.InputSize, arch.InputSize);
        using var y = randint(0, arch.Classes, new long[] { batch });
        model.train();
        var samples = new List<(int, long)>();
        for (int i = 1; i <= warmup + steps; i++)
        {
            TrainingStep.RunOnce(model, sgd, x, y);
            if (i >= warmup && (i - warmup) % 50 == 0)
            {
                using var p = Process.GetCurrentProcess();
                samples.Add((i - warmup, p.WorkingSet64));
            }
        }
        return samples;
    }

    /// <summary>
    /// §4.1's claim that augmentation costs no wall time: median training-step time fed by the real loader (full
    /// augmentation, background workers) against the same net fed one in-memory batch. Returns (loader, memory) ms.
    /// </summary>
    public static (double LoaderMs, double MemoryMs) LoaderVersusMemory(AlexNet.Data.ImageStore store, TrainOptions o,
        MachineOptions machine, int steps)
    {
        Compute.UseThreads(machine.Threads);
        AlexNet.Data.AugmentOptions augment = o.Augment(store.Height, store.Width);
        Architecture arch = o.Architecture(store.ClassCount, store.Channels, augment.Crop);
        using var model = new AlexNetModel(arch, seed: 1);
        using var sgd = new PaperSgd(model.parameters(), 0.001, 0.9, 0.0005);
        model.train();
        var loader = new AlexNet.Data.BatchLoader(store, new AlexNet.Data.Augmentation(store, augment),
            new AlexNet.Data.LoaderOptions(o.BatchSize, machine.Workers));
        var fromLoader = new List<double>();
        var clock = Stopwatch.StartNew();
        int n = 0;
        for (int epoch = 0; n < steps + 3; epoch++)
        {
            foreach (AlexNet.Data.Batch b in loader.TrainEpoch(1, epoch))
            {
                using (b)
                {
                    if (b.Count == o.BatchSize)
                    {
                        TrainingStep.RunOnce(model, sgd, b.Inputs, b.Labels);
                        if (n++ >= 3)
                        {
                            fromLoader.Add(clock.Elapsed.TotalMilliseconds);
                        }
                    }
                }
                clock.Restart();   // the next interval includes waiting for the next batch
                if (n >= steps + 3)
                {
                    break;
                }
            }
        }
        var inMemory = new List<double>();
        using (AlexNet.Data.Batch fixedBatch = loader.TrainEpoch(1, 0).First())
        {
            for (int i = 0; i < steps + 3; i++)
            {
                clock.Restart();
                TrainingStep.RunOnce(model, sgd, fixedBatch.Inputs, fixedBatch.Labels);
                if (i >= 3)
                {
                    inMemory.Add(clock.Elapsed.TotalMilliseconds);
                }
            }
        }
        return (Median(fromLoader), Median(inMemory));
    }

    public static double Median(IReadOnlyList<double> xs)
    {
        double[] s = xs.OrderBy(v => v).ToArray();
        return s.Length == 0 ? double.NaN : s.Length % 2 == 1 ? s[s.Length / 2]
            : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }
}
