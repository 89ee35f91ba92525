// The whole §3.5 net for inference as a chain of oneDNN primitives (Debian's libdnnl2, Dnnl.cs), float32 or int8, the
// way ONNX Runtime's and OpenVINO's CPU paths run a CNN: the activations stay in the layout oneDNN's convolutions
// choose (channel-blocked or channels-last) from conv1 to pool5, each ReLU is the convolution's post-op, §3.3's LRN
// and §3.4's max-pooling run on that layout, and the weights are reordered (and for int8 quantized) once, not at
// every call as libtorch's convolutions do. §3.3 normalises within each of §3.2's towers: their halves of a
// channel-blocked or channels-last tensor are themselves a tensor of twice the batch (TowerView), which oneDNN's LRN
// normalises as it is; an even window (PyTorch's, not oneDNN's) runs on our fused kernel in the plain layout instead.
// Primitives are made once per power-of-two batch and kept; a batch runs as such chunks.
//
// int8 (Quantization.cs): conv1 reads the image as s8, every later learned layer reads u8 (a ReLU's output); a
// layer writes u8 scaled for the next layer's input, or float32 where §3.3's LRN comes next, and fc8 writes float32
// logits. oneDNN computes dst = scale[oc] · (Σ src·w + bias) then the post-op, so the bias is given in the
// accumulator's units, b / (s_in · s_w[oc]), and scale[oc] = s_in · s_w[oc] / s_out.
//
// Shapes: N = batch; input N×C×H×W float32 (plain); output N×classes logits (plain).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model.Kernels;

/// <summary>What runs a net's inference on the CPU.</summary>
public enum InferenceEngine
{
    /// <summary>oneDNN where it loads and serves the net (float32 and int8), else libtorch.</summary>
    Auto,

    /// <summary>The TorchSharp modules (libtorch's kernels and ours), as in training.</summary>
    Libtorch,

    /// <summary>The net compiled to oneDNN's primitives (this file); refused where it cannot run.</summary>
    OneDnn,
}

/// <summary>How a 3×3, stride-1 float32 convolution runs on oneDNN.</summary>
public enum ConvolutionAlgorithm
{
    /// <summary>Direct or Winograd, whichever runs this plan's shapes faster here (timed when the plan is
    /// made).</summary>
    Measured,

    /// <summary>Direct: every multiply-add of the definition.</summary>
    Direct,

    /// <summary>Winograd's transform of tiles where oneDNN has it (fewer multiplications), else direct.</summary>
    Winograd,
}

public sealed unsafe class OneDnnNet : IDisposable
{
    /// <summary>
    /// The engine <paramref name="choice"/> and <paramref name="precision"/> ask for, made from <paramref
    /// name="model"/>'s
    /// weights (null: the modules run it), or a refusal naming <paramref name="source"/> and what to do.
    /// </summary>
    public static OneDnnNet? For(AlexNetModel model, Precision precision, InferenceEngine choice,
        Int8Quantization? int8, string source)
    {
        bool cpu = model.Device.type == DeviceType.CPU;
        if (precision == Precision.Int8)
        {
            if (int8 is null)
            {
                throw new ArgumentException(
                    $"{source} is not quantized: make an int8 checkpoint with `alexnet quantize -c {source} -d " +
                    "TRAIN_STORE -o OUT.ckpt`.");
            }
            string? why = choice == InferenceEngine.Libtorch ? "--engine libtorch has no int8 kernels"
                : !cpu ? "int8 runs on the CPU only"
                : Unsupported(model.Architecture, int8: true);
            return why is null ? Made(new OneDnnNet(model, int8), fallBack: false)
                : throw new ArgumentException(
                $"--precision int8 cannot run {source} here: {why}. Use --precision fp32.");
        }
        if (choice == InferenceEngine.Libtorch || precision != Precision.Fp32 || !cpu)
        {
            return choice == InferenceEngine.OneDnn
                ? throw new ArgumentException(
                $"--engine onednn runs float32 or int8 on the CPU, not {precision} on {model.Device.type}.")
                : null;
        }
        string? unsupported = Unsupported(model.Architecture, int8: false);
        if (unsupported is not null && choice == InferenceEngine.OneDnn)
        {
            throw new ArgumentException($"--engine onednn cannot run {source}: {unsupported}. Use --engine libtorch.");
        }
        return unsupported is null ? Made(new OneDnnNet(model), fallBack: choice == InferenceEngine.Auto) : null;
    }

    /// <summary>
    /// The engine with its primitives for a batch of two made now (the weights' layout of every larger batch), so that
    /// a
    /// primitive this CPU's oneDNN lacks shows at load: under --engine auto the modules run instead (null); asked for,
    /// the refusal says which.
    /// </summary>
    private static OneDnnNet? Made(OneDnnNet engine, bool fallBack)
    {
        try
        {
            engine.Describe(2);
            return engine;
        }
        catch (InvalidOperationException) when (fallBack)
        {
            engine.Dispose();
            return null;
        }
    }

    /// <summary>`auto`, `libtorch` or `onednn` (the flag's spelling).</summary>
    public static InferenceEngine ParseEngine(string name) => name.ToLowerInvariant() switch
    {
        "auto" => InferenceEngine.Auto,
        "libtorch" or "torch" => InferenceEngine.Libtorch,
        "onednn" or "dnnl" => InferenceEngine.OneDnn,
        _ => throw new ArgumentException($"--engine takes auto, libtorch or onednn, got '{name}'."),
    };

    private readonly Architecture _arch;
    private readonly Int8Quantization? _int8;
    private readonly Dictionary<string, Layer> _layers = new();
    private readonly string[] _learned;   // conv1 … fc8, in order: where each layer's output goes next
    private readonly Dictionary<int, Plan> _plans = new();
    private readonly object _lock = new();

    /// <summary>
    /// The largest batch one plan runs. A batch runs as power-of-two chunks (100 = 64 + 32 + 4), so at most eight plans
    /// exist whatever sizes arrive: a primitive is fixed to its shapes, and making a plan for a new size costs
    /// 60–100 ms for owt (its kernels generated anew), which a server's varying batches would pay again and again.
    /// </summary>
    private const int LargestChunk = 128;

    /// <summary>Why no net runs on oneDNN here at all (null: the library loaded).</summary>
    public static string? Unavailable => Dnnl.Unavailable;

    /// <summary>The ISA oneDNN dispatches to on this CPU.</summary>
    public static string Isa => Dnnl.Unavailable is null ? Dnnl.IsaName : "none";

    /// <summary>
    /// How 3×3, stride-1 float32 convolutions run unless the constructor says: by Winograd where it measures faster
    /// (Plan.Faster); ALEXNET_WINOGRAD=0 keeps every one direct, the same algorithm on every run (as cuDNN's
    /// deterministic mode).
    /// </summary>
    public static ConvolutionAlgorithm DefaultAlgorithm { get; } =
        Environment.GetEnvironmentVariable("ALEXNET_WINOGRAD") == "0" ? ConvolutionAlgorithm.Direct
        : ConvolutionAlgorithm.Measured;

    private readonly ConvolutionAlgorithm _threeByThree;
    private readonly int? _threads;

    /// <summary>Int8 runs on VNNI's dot products here (AVX-512 VNNI or AVX-VNNI).</summary>
    public static bool Vnni => Dnnl.Unavailable is null && Dnnl.Vnni;

    /// <summary>Why <paramref name="arch"/> cannot run on this engine (null: it can).</summary>
    public static string? Unsupported(Architecture arch, bool int8)
    {
        if (Dnnl.Unavailable is { } why)
        {
            return why;
        }
        if (int8 && arch.Activation != Activation.Relu)
        {
            return $"{arch.Variant} uses {arch.Activation}: int8 inputs are unsigned ReLU outputs";
        }
        if (arch.Convs.Any(c => c.Lrn && arch.Lrn is not null && !c.Pool))
        {
            return $"{arch.Variant} normalises a layer it does not pool: the engine fuses §3.3's LRN with the pool " +
                "after it";
        }
        int last = arch.ConvOutputs()[^1].Size;
        if (arch.TorchvisionLayout && last != 6)
        {
            return $"{arch.Variant} at {arch.InputSize}² pools adaptively to 6×6 from {last}², which the engine does " +
                "not";
        }
        return null;
    }

    /// <param name="model">Its weights are copied: later changes to the model are not seen.</param>
    /// <param name="int8">The calibration to run in int8 with; null runs float32.</param>
    /// <param name="threeByThree">How the 3×3, stride-1 float32 convolutions run (default: DefaultAlgorithm).</param>
    /// <param name="threads">oneDNN's threads for every plan (default: Planes.Threads, or one where that measures
    /// faster; see Fastest).</param>
    public OneDnnNet(AlexNetModel model, Int8Quantization? int8 = null, ConvolutionAlgorithm? threeByThree = null,
        int? threads = null)
    {
        _threeByThree = threeByThree ?? DefaultAlgorithm;
        _threads = threads;
        if (Unsupported(model.Architecture, int8 is not null) is { } why)
        {
            throw new NotSupportedException($"oneDNN cannot run this net: {why}.");
        }
        _arch = model.Architecture;
        _int8 = int8;
        _learned = model.LayerNames.ToArray();
        using var _ = no_grad();
        foreach (string name in model.LayerNames)
        {
            (Tensor w, Tensor b) = model.LayerParameters(name);
            _layers[name] = new Layer(w, b, int8 is null ? null : Int8Quantization.WeightScales(w));
        }
    }

    /// <summary>For people: "oneDNN 2.6.3 int8 on avx512_core_vnni".</summary>
    public string Summary => $"oneDNN {Dnnl.Version} {Precision.ToString().ToLowerInvariant()} on {Isa}";

    /// <summary>Float32 or int8, as made.</summary>
    public Precision Precision => _int8 is null ? Precision.Fp32 : Precision.Int8;

    /// <summary>x: N×C×H×W float32 on the CPU → N×classes logits.</summary>
    public Tensor Forward(Tensor x)
    {
        long[] image = { _arch.InputChannels, _arch.InputSize, _arch.InputSize };
        if (x.device_type != DeviceType.CPU || x.dim() != 4 || !x.shape.AsSpan(1).SequenceEqual(image))
        {
            throw new ArgumentException(
                $"the oneDNN engine of {_arch.Variant} runs N×{string.Join("×", image)} CPU inputs, " +
                $"not {string.Join("×", x.shape)} on {x.device_type}.");
        }
        int n = (int)x.shape[0];
        using Tensor input = x.to(ScalarType.Float32).contiguous();
        Tensor y = empty(n, _arch.Classes);
        long perImage = image[0] * image[1] * image[2];
        float* from = Planes.Ptr(input), to = Planes.Ptr(y);
        lock (_lock)
        {
            for (int start = 0; start < n;)
            {
                int chunk = Chunk(n - start);
                PlanFor(chunk).Run(from + start * perImage, to + (long)start * _arch.Classes);
                start += chunk;
            }
        }
        return y;
    }

    /// <summary>The largest power of two that fits in <paramref name="remaining"/>, at most LargestChunk.</summary>
    private static int Chunk(int remaining) =>
        Math.Min(LargestChunk, 1 << System.Numerics.BitOperations.Log2((uint)remaining));

    /// <summary>
    /// Which oneDNN implementation runs each step of the first chunk of a batch of <paramref name="n"/> (e.g. "conv1:
    /// jit_int8:avx512_core_vnni"), then the threads they run on ("threads: 2").
    /// </summary>
    public IReadOnlyList<string> Describe(int n)
    {
        lock (_lock)
        {
            Plan plan = PlanFor(Chunk(n));
            return plan.Names.Append($"threads: {plan.Threads}").ToList();
        }
    }

    private Plan PlanFor(int n)
    {
        if (!_plans.TryGetValue(n, out Plan? plan))
        {
            _plans[n] = plan = Fastest(n);
        }
        return plan;
    }

    /// <summary>
    /// The plan for a batch of <paramref name="n"/> on Planes.Threads, or on one thread where that runs faster: every
    /// primitive starts and joins its OpenMP team, a few microseconds each, which a run of a few hundred microseconds
    /// cannot spread over a second core (`small`'s 28-pixel net at batch 1; docs/inference.md). Only a plan whose run
    /// takes under a millisecond is made the second way and timed against it.
    /// </summary>
    private Plan Fastest(int n)
    {
        if (_threads is int threads)
        {
            return Plan.Make(this, n, threads);
        }
        var plan = Plan.Make(this, n, Planes.Threads);
        double many;
        if (Planes.Threads == 1 || (many = plan.Time(_arch, n, enough: 1e-3)) >= 1e-3)
        {
            return plan;
        }
        var one = Plan.Make(this, n, 1);
        double single = one.Time(_arch, n);
        // both once more, the better of each kept: a shared machine may slow either one's runs
        many = Math.Min(many, plan.Time(_arch, n));
        single = Math.Min(single, one.Time(_arch, n));
        bool oneFaster = single < many;
        (oneFaster ? plan : one).Dispose();
        return oneFaster ? one : plan;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (Plan p in _plans.Values)
            {
                p.Dispose();
            }
            _plans.Clear();
            foreach (Layer l in _layers.Values)
            {
                l.Dispose();
            }
        }
    }

    /// <summary>
    /// The conv output <paramref name="md"/> seen as each tower's maps in a batch of their own, where oneDNN's LRN
    /// can normalise it: channel-blocked (16 or 8 a block) with each tower a whole number of blocks, or channels
    /// last; and an odd n (oneDNN centres its window; PyTorch's even window is not). Null where our own kernel runs
    /// instead.
    /// </summary>
    internal static MemoryDesc? TowerView(MemoryDesc md, int n, int channels, int size, LrnParams p)
    {
        if (p.Size % 2 == 0)
        {
            return null;
        }
        int perTower = channels / p.Towers;
        foreach ((int tag, int block) in new[] { (Dnnl.ABcd16b, 16), (Dnnl.ABcd8b, 8) })
        {
            if (perTower % block == 0 && Dnnl.Equal(md,
                Dnnl.Desc(new long[] { n, channels, size, size }, Dnnl.F32, tag)))
            {
                return Dnnl.Desc(new long[] { (long)n * p.Towers, perTower, size, size }, Dnnl.F32, tag);
            }
        }
        // Channels last: each pixel's maps are contiguous, each tower's half of them too, so the towers' maps are
        // n·h·w·towers "images" of 1×1.
        return Dnnl.Equal(md, Dnnl.Desc(new long[] { n, channels, size, size }, Dnnl.F32, Dnnl.Acdb))
            ? Dnnl.Desc(new long[] { (long)n * size * size * p.Towers, perTower, 1, 1 }, Dnnl.F32, Dnnl.Acdb)
            : null;
    }

    /// <summary>A learned layer's float32 weights and bias, and their reorders into the layouts plans ask
    /// for.</summary>
    private sealed class Layer : IDisposable
    {
        public readonly float* Weights, Bias;
        public readonly long[] Shape;
        public readonly float[]? WeightScales;
        private readonly List<(MemoryDesc Md, nint Memory)> _reordered = new();

        public Layer(Tensor w, Tensor b, float[]? weightScales)
        {
            Shape = w.shape;
            Weights = Copy(w);
            Bias = Copy(b);
            WeightScales = weightScales;
        }

        public int Outputs => (int)Shape[0];

        private static float* Copy(Tensor t)
        {
            using Tensor c = t.detach().cpu().to(ScalarType.Float32).contiguous();
            var p = (float*)NativeMemory.AlignedAlloc((nuint)(c.numel() * 4), 64);
            c.bytes.CopyTo(new Span<byte>(p, (int)c.numel() * 4));
            return p;
        }

        /// <summary>
        /// The weights in <paramref name="md"/> (the layout and type a primitive asked for), viewed as <paramref
        /// name="dims"/> (goihw for grouped convs, oihw for fc6 on 4-d input), made once and shared by every plan.
        /// </summary>
        public nint In(MemoryDesc md, long[] dims, int scaleMask)
        {
            foreach ((MemoryDesc have, nint memory) in _reordered)
            {
                if (Dnnl.Equal(have, md))
                {
                    return memory;
                }
            }
            MemoryDesc plain = Dnnl.Desc(dims, Dnnl.F32, Dnnl.Plain(dims.Length));
            nint source = Dnnl.Memory(plain, (nint)Weights);
            nint target = Dnnl.Memory(md);
            nint attr = Dnnl.Attributes(WeightScales?.Select(s => 1f / s).ToArray(), 0, scaleMask);
            nint pd = Dnnl.Reorder(plain, md, attr, "reordering weights");
            nint reorder = Dnnl.Primitive(pd, "reordering weights");
            Dnnl.Execute(reorder, stackalloc ExecArg[] { new(Dnnl.ArgSrc, source), new(Dnnl.ArgDst, target) });
            Dnnl.Wait();
            Dnnl.Destroy(reorder);
            Dnnl.DestroyDesc(pd);
            Dnnl.DestroyAttributes(attr);
            Dnnl.DestroyMemory(source);
            _reordered.Add((md, target));
            return target;
        }

        public void Dispose()
        {
            foreach ((_, nint m) in _reordered)
            {
                Dnnl.DestroyMemory(m);
            }
            _reordered.Clear();
            NativeMemory.AlignedFree(Weights);
            NativeMemory.AlignedFree(Bias);
        }
    }

    /// <summary>The primitives and buffers of one batch size, in the order they run.</summary>
    private sealed class Plan : IDisposable
    {
        private readonly List<Action> _steps = new();
        private readonly List<nint> _primitives = new(), _descs = new(), _memories = new(), _attrs = new();
        private readonly List<nint> _buffers = new();   // per-plan float buffers (the bias in accumulator units)
        private readonly nint _input, _output;
        public readonly List<string> Names = new();

        /// <summary>oneDNN's threads for this plan's primitives.</summary>
        public readonly int Threads;

        /// <summary>The plan for a batch of <paramref name="n"/> on <paramref name="threads"/> of oneDNN's
        /// threads.</summary>
        public static Plan Make(OneDnnNet net, int n, int threads)
        {
            using (Dnnl.OnThreads(threads))   // a primitive fixes its work split for the threads it is made with
            {
                return new Plan(net, n, threads);
            }
        }

        private Plan(OneDnnNet net, int n, int threads)
        {
            Threads = threads;
            Architecture arch = net._arch;
            Int8Quantization? q = net._int8;
            int channels = arch.InputChannels, size = arch.InputSize;
            MemoryDesc curMd = Dnnl.Desc(new long[] { n, channels, size, size }, Dnnl.F32, Dnnl.Abcd);
            nint cur = _input = Track(Dnnl.Memory(curMd, 0));
            bool quantized = false;   // whether cur holds int8 values (scaled for the next learned layer)
            string[] learned = net._learned;
            for (int i = 0; i < arch.Convs.Length; i++)
            {
                ConvLayer c = arch.Convs[i];
                Layer layer = net._layers[c.Name];
                bool lrn = c.Lrn && arch.Lrn is not null;
                int outSize = Shapes.OutputSize(size, c.Size, c.Stride, c.Padding);
                int srcType = q is null ? Dnnl.F32 : i == 0 ? Dnnl.S8 : Dnnl.U8;
                int dstType = q is null || lrn ? Dnnl.F32 : Dnnl.U8;
                long[] wDims = c.Groups == 1 ? layer.Shape
                    : new long[] { c.Groups, c.Kernels / c.Groups, layer.Shape[1], layer.Shape[2], layer.Shape[3] };
                (float[]? scales, nint bias) = Scales(q, layer, c.Name, i == 0,
                    dstType == Dnnl.U8 ? learned[i + 1] : null);
                nint attr = Track(Dnnl.Attributes(scales, Activation(arch)), _attrs);
                MemoryDesc srcAny = Dnnl.Desc(new long[] { n, channels, size, size }, srcType, Dnnl.Any);
                MemoryDesc wAny = Dnnl.Desc(wDims, q is null ? Dnnl.F32 : Dnnl.S8, Dnnl.Any);
                MemoryDesc bAny = Dnnl.Desc(new long[] { c.Kernels }, Dnnl.F32, Dnnl.A);
                MemoryDesc dAny = Dnnl.Desc(new long[] { n, c.Kernels, outSize, outSize }, dstType, Dnnl.Any);
                long[] strides = { c.Stride, c.Stride }, padding = { c.Padding, c.Padding };
                nint pd = Dnnl.Convolution(srcAny, wAny, bAny, dAny, strides, padding, attr, $"making {c.Name}");
                if (q is null && c.Size == 3 && c.Stride == 1 && net._threeByThree != ConvolutionAlgorithm.Direct)
                {
                    nint winograd = Dnnl.TryConvolution(srcAny, wAny, bAny, dAny, strides, padding,
                        attr, Dnnl.ConvolutionWinograd);
                    pd = net._threeByThree == ConvolutionAlgorithm.Winograd && winograd != 0 ? Replace(pd,
                        winograd) : Faster(pd, winograd, bias);
                }
                Track(pd, _descs);
                (cur, curMd) = ReorderTo(cur, curMd, Dnnl.Query(pd, Dnnl.QuerySrcMd),
                    srcType != Dnnl.F32 && !quantized ? q!.InputScale(c.Name, i == 0) : 0, c.Name);
                nint weights = layer.In(Dnnl.Query(pd, Dnnl.QueryWeightsMd), wDims,
                    c.Groups == 1 ? 1 << 0 : (1 << 0) | (1 << 1));
                MemoryDesc dstMd = Dnnl.Query(pd, Dnnl.QueryDstMd);
                nint dst = Track(Dnnl.Memory(dstMd));
                Add(pd, c.Name, new ExecArg(Dnnl.ArgSrc, cur), new ExecArg(Dnnl.ArgWeights, weights),
                    new ExecArg(Dnnl.ArgBias, bias), new ExecArg(Dnnl.ArgDst, dst));
                (cur, curMd, quantized, channels, size) = (dst, dstMd, dstType == Dnnl.U8, c.Kernels, outSize);
                if (lrn && TowerView(curMd, n, channels, size, arch.Lrn!) is MemoryDesc view)
                {
                    // §3.3 within each tower on oneDNN's LRN, then §3.4's pool: towers' halves of a channel-blocked
                    // tensor (n, C/16 blocks, h, w, 16) are the same bytes as a (2n, C/32 blocks, …) tensor.
                    nint lrnPd = Track(Dnnl.Lrn(view, arch.Lrn!.Size, (float)arch.Lrn.TorchAlpha, (float)arch.Lrn.Beta,
                        (float)arch.Lrn.K, $"making {c.Name}'s LRN"), _descs);
                    nint viewIn = Track(Dnnl.Memory(view, (nint)Dnnl.Handle(cur)));
                    nint normalised = Track(Dnnl.Memory(curMd));
                    nint viewOut = Track(Dnnl.Memory(view, (nint)Dnnl.Handle(normalised)));
                    Add(lrnPd, c.Name + " lrn", new ExecArg(Dnnl.ArgSrc, viewIn), new ExecArg(Dnnl.ArgDst, viewOut));
                    (cur, curMd, size) = MaxPool(arch, c.Name, normalised, curMd, n, channels, size, Dnnl.F32);
                }
                else if (lrn)
                {
                    // §3.3 and §3.4: ReLU → LRN (within each tower) → pool, our fused kernel on the plain layout.
                    MemoryDesc plain = Dnnl.Desc(new long[] { n, channels, size, size }, Dnnl.F32, Dnnl.Abcd);
                    (cur, _) = ReorderTo(cur, curMd, plain, 0, c.Name + " to nchw");
                    int pooled = Shapes.PooledSize(size, arch.PoolWindow, arch.PoolStride);
                    curMd = Dnnl.Desc(new long[] { n, channels, pooled, pooled }, Dnnl.F32, Dnnl.Abcd);
                    nint output = Track(Dnnl.Memory(curMd));
                    float* from = (float*)Dnnl.Handle(cur), to = (float*)Dnnl.Handle(output);
                    int ch = channels, side = size;
                    LrnParams lrnParams = arch.Lrn!;
                    _steps.Add(() =>
                    {
                        Dnnl.Wait();
                        FusedStage.Forward(from, to, n, ch, side, side, lrnParams, arch.PoolWindow, arch.PoolStride);
                    });
                    Names.Add($"{c.Name} lrn+pool: ours (FusedStage)");
                    (cur, size) = (output, pooled);
                }
                else if (c.Pool)
                {
                    (cur, curMd, size) = MaxPool(arch, c.Name, cur, curMd, n, channels, size, dstType);
                }
            }
            // §3.5's fully connected layers; fc6 reads pool5's maps in their blocked layout (its weights follow it).
            var fcs = arch.Hidden.Select(h => (h.Name, h.Units, Hidden: true)).Append(("fc8",
                arch.Classes, false)).ToArray();
            bool spatial = true;
            for (int j = 0; j < fcs.Length; j++)
            {
                (string name, int units, bool hidden) = fcs[j];
                Layer layer = net._layers[name];
                int index = arch.Convs.Length + j;
                long[] srcDims = spatial ? new long[] { n, channels, size, size } : new long[] { n, channels };
                long[] wDims = spatial ? new long[] { units, channels, size, size } : new long[] { units, channels };
                int srcType = q is null ? Dnnl.F32 : Dnnl.U8;
                int dstType = q is not null && hidden ? Dnnl.U8 : Dnnl.F32;
                (float[]? scales, nint bias) = Scales(q, layer, name, false,
                    dstType == Dnnl.U8 ? learned[index + 1] : null);
                nint attr = Track(Dnnl.Attributes(scales, hidden ? Activation(arch) : 0), _attrs);
                nint pd = Track(Dnnl.InnerProduct(
                    Dnnl.Desc(srcDims, srcType, Dnnl.Any),
                    Dnnl.Desc(wDims, q is null ? Dnnl.F32 : Dnnl.S8, Dnnl.Any),
                    Dnnl.Desc(new long[] { units }, Dnnl.F32, Dnnl.A),
                    hidden ? Dnnl.Desc(new long[] { n, units }, dstType,
                    Dnnl.Any) : Dnnl.Desc(new long[] { n, units }, Dnnl.F32, Dnnl.Ab),
                    attr, $"making {name}"), _descs);
                (cur, curMd) = ReorderTo(cur, curMd, Dnnl.Query(pd, Dnnl.QuerySrcMd),
                    srcType != Dnnl.F32 && !quantized ? q!.InputScale(name, false) : 0, name);
                nint weights = layer.In(Dnnl.Query(pd, Dnnl.QueryWeightsMd), wDims, 1 << 0);
                MemoryDesc dstMd = Dnnl.Query(pd, Dnnl.QueryDstMd);
                nint dst = hidden ? Track(Dnnl.Memory(dstMd)) : _output = Track(Dnnl.Memory(dstMd, 0));
                Add(pd, name, new ExecArg(Dnnl.ArgSrc, cur), new ExecArg(Dnnl.ArgWeights, weights),
                    new ExecArg(Dnnl.ArgBias, bias), new ExecArg(Dnnl.ArgDst, dst));
                (cur, curMd, quantized, channels, spatial) = (dst, dstMd, dstType == Dnnl.U8, units, false);
            }
        }

        /// <summary>
        /// A 3×3, stride-1 float32 convolution made two ways, direct and by Winograd's transform of tiles (fewer
        /// multiplications for more memory traffic; 0 where oneDNN has no such kernel): each run on this plan's shapes,
        /// one warm-up then the best of three, and the faster kept. Measured on Zen 5 (docs/inference.md): Winograd
        /// wins
        /// owt's conv3–conv5 at batch 64, loses on the grouped layers of the paper's net and on small's 6×6 maps, so
        /// neither is a rule.
        /// </summary>
        private static nint Replace(nint direct, nint winograd)
        {
            Dnnl.DestroyDesc(direct);
            return winograd;
        }

        private static nint Faster(nint direct, nint winograd, nint bias)
        {
            if (winograd == 0)
            {
                return direct;
            }
            bool winogradFaster = Dnnl.Time(winograd, bias) < Dnnl.Time(direct, bias);
            Dnnl.DestroyDesc(winogradFaster ? direct : winograd);
            return winogradFaster ? winograd : direct;
        }

        /// <summary>§3.4's overlapping max-pool of <paramref name="src"/> (its values' type kept) into a new
        /// buffer.</summary>
        private (nint Output, MemoryDesc Md, int Size) MaxPool(Architecture arch, string layer, nint src,
            MemoryDesc srcMd, int n, int channels, int size, int type)
        {
            int pooled = Shapes.PooledSize(size, arch.PoolWindow, arch.PoolStride);
            nint pd = Track(Dnnl.MaxPool(srcMd, Dnnl.Desc(new long[] { n, channels, pooled, pooled }, type, Dnnl.Any),
                arch.PoolWindow, arch.PoolStride, $"making {layer}'s pool"), _descs);
            MemoryDesc md = Dnnl.Query(pd, Dnnl.QueryDstMd);
            nint output = Track(Dnnl.Memory(md));
            Add(pd, layer + " pool", new ExecArg(Dnnl.ArgSrc, src), new ExecArg(Dnnl.ArgDst, output));
            return (output, md, pooled);
        }

        private static int Activation(Architecture arch) =>
            arch.Activation == Model.Activation.Relu ? Dnnl.EltwiseRelu : Dnnl.EltwiseTanh;

        /// <summary>
        /// The output scales and the bias buffer of a learned layer: none and the float32 bias in float32; in int8,
        /// s_in·s_w[oc]/s_out (s_out = 1 for a float32 result) and the bias in accumulator units.
        /// </summary>
        private (float[]? Scales, nint Bias) Scales(Int8Quantization? q, Layer layer, string name,
            bool signedInput, string? next)
        {
            int outputs = layer.Outputs;
            if (q is null)
            {
                return (null,
                    Track(Dnnl.Memory(Dnnl.Desc(new long[] { outputs }, Dnnl.F32, Dnnl.A), (nint)layer.Bias)));
            }
            float sIn = q.InputScale(name, signedInput), sOut = next is null ? 1f : q.InputScale(next, false);
            float[] w = layer.WeightScales!;
            var bias = (float*)NativeMemory.AlignedAlloc((nuint)outputs * 4, 64);
            _buffers.Add((nint)bias);
            var scales = new float[outputs];
            for (int o = 0; o < outputs; o++)
            {
                scales[o] = sIn * w[o] / sOut;
                bias[o] = layer.Bias[o] / (sIn * w[o]);
            }
            return (scales, Track(Dnnl.Memory(Dnnl.Desc(new long[] { outputs }, Dnnl.F32, Dnnl.A), (nint)bias)));
        }

        /// <summary>
        /// cur as <paramref name="want"/>: itself where the layouts agree, else a reorder step into a new buffer,
        /// quantizing by 1/<paramref name="scale"/> where a scale is given (float32 → int8).
        /// </summary>
        private (nint, MemoryDesc) ReorderTo(nint cur, MemoryDesc have, MemoryDesc want, float scale, string what)
        {
            if (Dnnl.Equal(have, want))
            {
                return (cur, have);
            }
            nint attr = Track(Dnnl.Attributes(scale > 0 ? new[] { 1f / scale } : null, 0), _attrs);
            nint pd = Track(Dnnl.Reorder(have, want, attr, $"reordering into {what}"), _descs);
            nint dst = Track(Dnnl.Memory(want));
            Add(pd, $"{what} reorder", new ExecArg(Dnnl.ArgSrc, cur), new ExecArg(Dnnl.ArgDst, dst));
            return (dst, want);
        }

        private void Add(nint pd, string name, params ExecArg[] args)
        {
            nint primitive = Track(Dnnl.Primitive(pd, $"making {name}"), _primitives);
            _steps.Add(() => Dnnl.Execute(primitive, args));
            Names.Add($"{name}: {Dnnl.Implementation(pd)}");
        }

        private nint Track(nint memory) => Track(memory, _memories);

        private static nint Track(nint handle, List<nint> list)
        {
            list.Add(handle);
            return handle;
        }

        /// <summary>
        /// Seconds a run takes on zeroed input: the best of four after a warm-up (Dnnl.BestSeconds), or the first that
        /// takes <paramref name="enough"/> or more.
        /// </summary>
        public double Time(Architecture arch, int n, double enough = double.MaxValue)
        {
            long inputs = (long)n * arch.InputChannels * arch.InputSize * arch.InputSize;
            var input = (float*)NativeMemory.AlignedAlloc((nuint)(inputs * 4), 64);
            var output = (float*)NativeMemory.AlignedAlloc((nuint)((long)n * arch.Classes * 4), 64);
            try
            {
                new Span<float>(input, (int)inputs).Clear();
                return Dnnl.BestSeconds(() => Run(input, output), timed: 4, enough);
            }
            finally
            {
                NativeMemory.AlignedFree(input);
                NativeMemory.AlignedFree(output);
            }
        }

        public void Run(float* input, float* output)
        {
            using (Dnnl.OnThreads(Threads))
            {
                Dnnl.SetHandle(_input, input);
                Dnnl.SetHandle(_output, output);
                foreach (Action step in _steps)
                {
                    step();
                }
                Dnnl.Wait();
            }
        }

        public void Dispose()
        {
            _primitives.ForEach(Dnnl.Destroy);
            _descs.ForEach(Dnnl.DestroyDesc);
            _attrs.ForEach(Dnnl.DestroyAttributes);
            _memories.ForEach(Dnnl.DestroyMemory);
            foreach (nint b in _buffers)
            {
                NativeMemory.AlignedFree((void*)b);
            }
        }
    }
}
