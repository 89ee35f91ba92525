// §3.5's convolutions for training on oneDNN's primitives (Debian's libdnnl2, oneDNN 2.6.3), as one autograd
// operation: the forward, then the gradient of the input and that of the weights and bias, each in the layout oneDNN
// chooses (channel-blocked), with reorders from and to libtorch's plain N×C×H×W at the edges; a 3×3, stride-1 layer
// by Winograd's transform where that measures faster (as the inference engine, OneDnnNet.cs). Why: Debian's oneDNN
// runs these passes faster than libtorch's convolutions on this machine's AVX-512 (docs/inference.md, "Training on
// these primitives"). Opt-in (ALEXNET_TRAIN_CONV=onednn) while it is measured: chosen with the other kernels in
// AlexNetModel.Call, so towers and replicas take it too, one pass at a time in a process (the passes are serialised:
// their threads wait on each other).
//
// Shapes: x = N×C×H×W, w = K×(C/g)×k×k, b = K, y = N×K×Ho×Wo.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model.Kernels;

public static unsafe class OneDnnConv
{
    /// <summary>Whether training's convolutions run here: ALEXNET_TRAIN_CONV=onednn, where the library loads.</summary>
    public static bool Enabled { get; } =
        Environment.GetEnvironmentVariable("ALEXNET_TRAIN_CONV") == "onednn" && Dnnl.Unavailable is null;

    /// <summary>
    /// Whether a training step's <paramref name="conv"/> on <paramref name="x"/> runs here: enabled, gradients on, a
    /// CPU
    /// float32 batch, square strides and padding, no dilation.
    /// </summary>
    public static bool Supports(Tensor x, Conv2d conv) =>
        Enabled && torch.is_grad_enabled() && x.device_type == DeviceType.CPU
        && x.dtype == ScalarType.Float32 && x.dim() == 4
        && conv.weight!.dtype == ScalarType.Float32 && conv.bias is not null && conv.stride[0] == conv.stride[1]
        && conv.padding is { } p && p[0] == p[1] && conv.dilation.All(d => d == 1);

    /// <summary>The module's convolution on <paramref name="x"/> (Supports first).</summary>
    public static Tensor Apply(Tensor x, Conv2d conv) =>
        Apply(x, conv.weight!, conv.bias!, (int)conv.stride[0], (int)conv.padding![0], (int)conv.groups);

    /// <summary>y = conv(x, w) + b, its backward on oneDNN's primitives too.</summary>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor bias, int stride, int padding, int groups) =>
        ConvFunction.apply(x, weight, bias, new Args(stride, padding, groups, x.requires_grad));

    private sealed record Args(int Stride, int Padding, int Groups, bool InputGradient);

    private sealed record Key(long N, long C, long H, long W, long K, long Size, int Stride, int Padding, int Groups);

    private static readonly ConcurrentDictionary<Key, Plan> Plans = new();

    /// <summary>The algorithm of each convolution made so far ("C→K S×S: direct" or "…: winograd"), for
    /// reports.</summary>
    public static IReadOnlyList<string> Algorithms =>
        Plans.Select(p => $"{p.Key.C}→{p.Key.K} {p.Key.Size}×{p.Key.Size}: {p.Value.Algorithm}").Order().ToArray();
    /// <summary>One pass at a time in a process, this file's or OneDnnFeatures's: their threads would wait on each
    /// other.</summary>
    internal static readonly object Gate = new();

    private sealed class ConvFunction : autograd.SingleTensorFunction<ConvFunction>
    {
        public override string Name => "AlexNetOneDnnConv";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            Tensor x = ((Tensor)vars[0]).contiguous(), w = ((Tensor)vars[1]).detach().contiguous();
            using Tensor b = ((Tensor)vars[2]).detach().contiguous();
            var a = (Args)vars[3];
            Plan plan = PlanFor(x, w, a);
            lock (Gate)
            {
                Dnnl.UseThreads(Planes.Threads);
                Tensor y = empty(new[] { x.shape[0], w.shape[0], plan.OutH, plan.OutW });
                Tensor xb = plan.Forward(x, w, b, y);
                ctx.save_for_backward(new List<Tensor> { x, w, xb });
                ctx.save_data("plan", plan);
                ctx.save_data("args", a);
                return y;
            }
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var plan = (Plan)ctx.get_data("plan");
            var a = (Args)ctx.get_data("args");
            List<Tensor> saved = ctx.get_saved_variables();
            using Tensor gy = gradOutput.contiguous();
            Tensor? gx = a.InputGradient ? empty_like(saved[0]) : null;
            Tensor gw = empty_like(saved[1]), gb = empty(saved[1].shape[0]);
            lock (Gate)
            {
                Dnnl.UseThreads(Planes.Threads);
                plan.Backward(saved[0], saved[1], saved[2], gy, gx, gw, gb);
            }
            foreach (Tensor t in saved)
            {
                t.Dispose();
            }
            gradOutput.Dispose();   // a fresh wrapper nothing reads after this call (as FusedStage's)
            return new List<Tensor> { gx!, gw, gb, null! };
        }
    }

    /// <summary>
    /// A training convolution's three passes (Dnnl.TrainingConvolution), <paramref name="attr"/> on its forward:
    /// direct, or for a 3×3, stride-1 layer by Winograd's transform where oneDNN has it for training and its forward measures
    /// faster on these shapes. ALEXNET_WINOGRAD=0 keeps every layer direct, as in the inference engine
    /// (OneDnnNet.DefaultAlgorithm). Also the blocked path's (OneDnnFeatures.cs).
    /// </summary>
    internal static (nint Forward, nint Data, nint Weights, bool Winograd) Passes(MemoryDesc src, MemoryDesc w,
        MemoryDesc bias, MemoryDesc dst, int size, int stride, int padding, string what, nint attr = 0)
    {
        long[] strides = { stride, stride }, paddings = { padding, padding };
        var direct = Dnnl.TrainingConvolution(src, w, bias, dst, strides, paddings, Dnnl.ConvolutionDirect, what,
            attr);
        if (size != 3 || stride != 1 || OneDnnNet.DefaultAlgorithm == ConvolutionAlgorithm.Direct)
        {
            return (direct.Forward, direct.BackwardData, direct.BackwardWeights, false);
        }
        (nint Forward, nint BackwardData, nint BackwardWeights) winograd;
        try
        {
            winograd = Dnnl.TrainingConvolution(src, w, bias, dst, strides, paddings, Dnnl.ConvolutionWinograd, what,
                attr);
        }
        catch (InvalidOperationException)
        {
            // no Winograd kernel for this shape here (grouped layers, for one): direct it is
            return (direct.Forward, direct.BackwardData, direct.BackwardWeights, false);
        }
        nint biasMemory = Dnnl.Memory(bias);
        new Span<byte>(Dnnl.Handle(biasMemory), (int)Dnnl.Size(bias)).Clear();
        bool faster = Dnnl.Time(winograd.Forward, biasMemory) < Dnnl.Time(direct.Forward, biasMemory);
        Dnnl.DestroyMemory(biasMemory);
        var (kept, loser) = faster ? (winograd, direct) : (direct, winograd);
        Dnnl.DestroyDesc(loser.Forward);
        Dnnl.DestroyDesc(loser.BackwardData);
        Dnnl.DestroyDesc(loser.BackwardWeights);
        return (kept.Forward, kept.BackwardData, kept.BackwardWeights, faster);
    }

    private static Plan PlanFor(Tensor x, Tensor w, Args a)
    {
        var key = new Key(x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2],
            a.Stride, a.Padding, a.Groups);
        return Plans.GetOrAdd(key, k =>
        {
            lock (Gate)
            {
                return new Plan(k);
            }
        });
    }

    /// <summary>The three passes' primitives for one shape, and the reorders between their layouts and the plain
    /// ones.</summary>
    private sealed class Plan
    {
        public readonly long OutH, OutW;
        public readonly string Algorithm;
        private readonly MemoryDesc _srcPlain, _dstPlain, _wPlain, _bias;
        private readonly MemoryDesc _fSrc, _fW, _fDst, _dDiffSrc, _dW, _dDiffDst, _wSrc, _wDiffW, _wDiffDst;
        private readonly nint _forward, _data, _weights;
        private readonly nint _forwardPrimitive, _dataPrimitive, _weightsPrimitive;
        private readonly Layouts _layouts = new();

        public Plan(Key k)
        {
            OutH = Shapes.OutputSize((int)k.H, (int)k.Size, k.Stride, k.Padding);
            OutW = Shapes.OutputSize((int)k.W, (int)k.Size, k.Stride, k.Padding);
            long[] wDims = k.Groups == 1 ? new[] { k.K, k.C, k.Size, k.Size } : new[] { k.Groups, k.K / k.Groups,
                k.C / k.Groups, k.Size, k.Size };
            _srcPlain = Dnnl.Desc(new[] { k.N, k.C, k.H, k.W }, Dnnl.F32, Dnnl.Abcd);
            _dstPlain = Dnnl.Desc(new[] { k.N, k.K, OutH, OutW }, Dnnl.F32, Dnnl.Abcd);
            _wPlain = Dnnl.Desc(wDims, Dnnl.F32, Dnnl.Plain(wDims.Length));
            _bias = Dnnl.Desc(new[] { k.K }, Dnnl.F32, Dnnl.A);
            MemoryDesc src = Dnnl.Desc(new[] { k.N, k.C, k.H, k.W }, Dnnl.F32, Dnnl.Any),
                dst = Dnnl.Desc(new[] { k.N, k.K, OutH, OutW }, Dnnl.F32, Dnnl.Any);
            MemoryDesc w = Dnnl.Desc(wDims, Dnnl.F32, Dnnl.Any);
            long[] strides = { k.Stride, k.Stride }, padding = { k.Padding, k.Padding };
            string what = $"making a {k.C}→{k.K} {k.Size}×{k.Size} convolution for training";
            (_forward, _data, _weights, bool winograd) = Passes(src, w, _bias, dst, (int)k.Size, k.Stride, k.Padding,
                what);
            Algorithm = winograd ? "winograd" : "direct";
            (_fSrc, _fW, _fDst) = (Dnnl.Query(_forward, Dnnl.QuerySrcMd), Dnnl.Query(_forward, Dnnl.QueryWeightsMd),
                Dnnl.Query(_forward, Dnnl.QueryDstMd));
            (_dDiffSrc, _dW, _dDiffDst) = (Dnnl.Query(_data, Dnnl.QueryDiffSrcMd),
                Dnnl.Query(_data, Dnnl.QueryWeightsMd), Dnnl.Query(_data, Dnnl.QueryDiffDstMd));
            (_wSrc, _wDiffW, _wDiffDst) = (Dnnl.Query(_weights, Dnnl.QuerySrcMd),
                Dnnl.Query(_weights, Dnnl.QueryDiffWeightsMd), Dnnl.Query(_weights, Dnnl.QueryDiffDstMd));
            _forwardPrimitive = Dnnl.Primitive(_forward, what);
            _dataPrimitive = Dnnl.Primitive(_data, what);
            _weightsPrimitive = Dnnl.Primitive(_weights, what);
        }

        /// <summary>y = conv(x, w) + b; returns x in the forward's layout (x itself where that is plain) for the
        /// backward.</summary>
        public Tensor Forward(Tensor x, Tensor w, Tensor b, Tensor y)
        {
            using var scope = new Memories();
            Tensor xb = _layouts.Into(scope, x, _srcPlain, _fSrc);
            using Tensor wb = _layouts.Into(scope, w, _wPlain, _fW);
            using Tensor yb = Layouts.Buffer(_fDst, _dstPlain, y);
            Layouts.Run(_forwardPrimitive, new ExecArg(Dnnl.ArgSrc, scope.Of(xb, _fSrc)),
                new ExecArg(Dnnl.ArgWeights, scope.Of(wb, _fW)),
                new ExecArg(Dnnl.ArgBias, scope.Of(b, _bias)), new ExecArg(Dnnl.ArgDst, scope.Of(yb, _fDst)));
            _layouts.Out(scope, yb, _fDst, y, _dstPlain);
            return xb;
        }

        public void Backward(Tensor x, Tensor w, Tensor xb, Tensor gy, Tensor? gx, Tensor gw, Tensor gb)
        {
            using var scope = new Memories();
            if (gx is not null)
            {
                using Tensor dd = _layouts.Into(scope, gy, _dstPlain, _dDiffDst);
                using Tensor wd = _layouts.Into(scope, w, _wPlain, _dW);
                using Tensor gxb = Layouts.Buffer(_dDiffSrc, _srcPlain, gx);
                Layouts.Run(_dataPrimitive, new ExecArg(Dnnl.ArgDiffDst, scope.Of(dd, _dDiffDst)),
                    new ExecArg(Dnnl.ArgWeights, scope.Of(wd, _dW)),
                    new ExecArg(Dnnl.ArgDiffSrc, scope.Of(gxb, _dDiffSrc)));
                _layouts.Out(scope, gxb, _dDiffSrc, gx, _srcPlain);
            }
            using Tensor ddw = _layouts.Into(scope, gy, _dstPlain, _wDiffDst);
            using Tensor src = Dnnl.Equal(_wSrc, _fSrc) ? xb.alias() : _layouts.Into(scope, x, _srcPlain, _wSrc);
            using Tensor gwb = Layouts.Buffer(_wDiffW, _wPlain, gw);
            Layouts.Run(_weightsPrimitive, new ExecArg(Dnnl.ArgSrc, scope.Of(src, _wSrc)),
                new ExecArg(Dnnl.ArgDiffDst, scope.Of(ddw, _wDiffDst)),
                new ExecArg(Dnnl.ArgDiffWeights, scope.Of(gwb, _wDiffW)),
                new ExecArg(Dnnl.ArgDiffBias, scope.Of(gb, _bias)));
            _layouts.Out(scope, gwb, _wDiffW, gw, _wPlain);
        }
    }
}
