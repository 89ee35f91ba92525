// §3.5's five convolutional layers for training, from the image to pool5, as one autograd operation on oneDNN's
// primitives (Debian's libdnnl2, oneDNN 2.6.3), the way cuda-convnet2 and oneDNN's own training samples run a CNN:
// the activations stay in the channel-blocked layout the convolutions choose from conv1 to pool5, §3.1's ReLU is the
// convolution's post-op (its backward reads the ReLU's output), §3.3's LRN within each of §3.2's towers runs on the
// towers' view of that layout (OneDnnNet.TowerView), §3.4's max-pool keeps its winners' places in a workspace, and a
// pooled map is already the next convolution's input. Reorders remain only at the image, at pool5 and for the
// weights. Why: per layer (OneDnnConv.cs) every convolution reorders its input, output and gradients from and to
// libtorch's N×C×H×W, and our fused ReLU→LRN→pool stages run on that plain layout at half the speed of oneDNN's
// on the blocked one (docs/inference.md, "Training on the blocked layout"). Opt-in with the per-layer path
// (ALEXNET_TRAIN_CONV=onednn); a net whose stages this cannot run (an even LRN window, tanh, an LRN not followed by a
// pool, a layout the towers' view cannot split) takes the per-layer path.
//
// Shapes: x = N×C×H×W (the batch); each stage N×K×Ho×Wo, pooled N×K×P×P; output pool5, N×K×P×P plain.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model.Kernels;

public static unsafe class OneDnnFeatures
{
    /// <summary>
    /// Whether a training step's features of <paramref name="arch"/> on <paramref name="x"/> run here: the opt-in
    /// set, gradients on and wanted by some layer of <paramref name="convs"/> (a step whose backward never runs would
    /// keep its buffers until the collector finds them), a CPU float32 batch that needs no gradient of its own, and a
    /// plan for its shape (made here the first time).
    /// </summary>
    public static bool Supports(Tensor x, Architecture arch, IReadOnlyList<Conv2d> convs) =>
        OneDnnConv.Enabled && is_grad_enabled() && x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32
        && x.dim() == 4 && !x.requires_grad && convs.Any(c => c.weight!.requires_grad || c.bias!.requires_grad)
        && Unsupported(arch) is null && PlanFor(x.shape, arch).Plan is not null;

    /// <summary>
    /// What a training run with <paramref name="replicas"/> replicas should be told of ALEXNET_TRAIN_CONV (null: it is
    /// not set).
    /// </summary>
    public static string? RunNote(int replicas) =>
        Environment.GetEnvironmentVariable("ALEXNET_TRAIN_CONV") != "onednn" ? null
        : !OneDnnConv.Enabled ? $"ALEXNET_TRAIN_CONV=onednn is set, but oneDNN is not used: {Dnnl.Unavailable}"
        : "ALEXNET_TRAIN_CONV=onednn: conv1 → pool5 trains on oneDNN's blocked layout where the net allows, its " +
          "convolutions one by one elsewhere (docs/inference.md)" + (replicas > 1
            ? $"; with --replicas {replicas} their passes run one at a time, slower than without the variable" : "");

    /// <summary>Why <paramref name="arch"/>'s stages cannot run on this path (null: they can).</summary>
    public static string? Unsupported(Architecture arch) =>
        Dnnl.Unavailable ?? (arch.Activation != Activation.Relu ? $"{arch.Variant} uses {arch.Activation}"
        : arch.Lrn is { Size: var n } && n % 2 == 0 ? "an even LRN window (oneDNN centres its window)"
        : arch.Convs.Any(c => c.Lrn && arch.Lrn is not null && !c.Pool) ? "an LRN not followed by a pool"
        : null);

    /// <summary>Why the plan for <paramref name="shape"/> was refused (null: it was made or not asked for).</summary>
    public static string? Refusal(long[] shape, Architecture arch) =>
        Plans.TryGetValue(KeyOf(shape, arch), out Made? made) ? made.Why : null;

    /// <summary>Each batch shape's plan made so far, its algorithm per layer, or why it was refused.</summary>
    public static IReadOnlyList<string> Algorithms =>
        Plans.Values.Select(m => m.Plan?.Summary ?? $"refused ({m.Why})").Order().ToArray();

    /// <summary>pool5 of <paramref name="x"/> through <paramref name="convs"/> (conv1 … conv5, Supports
    /// first).</summary>
    public static Tensor Apply(Tensor x, Architecture arch, IReadOnlyList<Conv2d> convs)
    {
        Plan plan = PlanFor(x.shape, arch).Plan ?? throw new InvalidOperationException(Refusal(x.shape, arch));
        var vars = new List<object> { x };
        foreach (Conv2d c in convs)
        {
            vars.Add(c.weight!);
            vars.Add(c.bias!);
        }
        vars.Add(plan);
        return FeaturesFunction.apply(vars.ToArray());
    }

    private sealed record Made(Plan? Plan, string? Why);

    private static readonly ConcurrentDictionary<string, Made> Plans = new();

    private static string KeyOf(long[] shape, Architecture arch) =>
        $"{string.Join("×", shape)} {string.Join(" ", arch.Convs)} {arch.Lrn} {arch.PoolWindow}/{arch.PoolStride}";

    private static Made PlanFor(long[] shape, Architecture arch) =>
        Plans.GetOrAdd(KeyOf(shape, arch), _ =>
        {
            lock (OneDnnConv.Gate)
            {
                using (Dnnl.OnThreads(Planes.Threads))   // a primitive fixes its work split when it is made
                {
                    try
                    {
                        return new Made(new Plan(shape, arch), null);
                    }
                    catch (Exception e) when (e is NotSupportedException or InvalidOperationException)
                    {
                        return new Made(null, e.Message);
                    }
                }
            }
        });

    /// <summary>The plan whose buffers are kept (one at a time).</summary>
    private static Plan? _last;

    /// <summary>
    /// Frees the buffers kept for the next training step (the net is evaluating: its own activations need the memory;
    /// the next step takes fresh ones once).
    /// </summary>
    public static void Release()
    {
        if (_last is null)
        {
            return;
        }
        lock (OneDnnConv.Gate)
        {
            _last?.Layouts.Drop();
            _last = null;
        }
    }

    private sealed class FeaturesFunction : autograd.SingleTensorFunction<FeaturesFunction>
    {

        public override string Name => "AlexNetOneDnnFeatures";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var plan = (Plan)vars[^1];
            using Tensor x = ((Tensor)vars[0]).contiguous();
            Tensor[] weights = Enumerable.Range(0, plan.Stages.Length)
                .Select(i => ((Tensor)vars[1 + 2 * i]).detach().contiguous()).ToArray();
            Tensor[] biases = Enumerable.Range(0, plan.Stages.Length)
                .Select(i => ((Tensor)vars[2 + 2 * i]).detach().contiguous()).ToArray();
            lock (OneDnnConv.Gate)
            {
                if (_last != plan)
                {
                    // another batch shape (an epoch's last, smaller batch): one plan's buffers kept at a time
                    _last?.Layouts.Drop();
                    _last = plan;
                }
                using (Dnnl.OnThreads(Planes.Threads))
                {
                    (Tensor y, Step step) = plan.Forward(x, weights, biases);
                    ctx.save_for_backward(weights.ToList());
                    ctx.save_data("step", step);
                    foreach (Tensor b in biases)
                    {
                        b.Dispose();
                    }
                    return y;
                }
            }
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var step = (Step)ctx.get_data("step");
            List<Tensor> weights = ctx.get_saved_variables();
            var grads = new List<Tensor> { null! };   // the image's: none
            lock (OneDnnConv.Gate)
            {
                using (Dnnl.OnThreads(Planes.Threads))
                {
                    using Tensor gy = gradOutput.contiguous();
                    foreach ((Tensor w, Tensor b) in step.Plan.Backward(gy, step, weights))
                    {
                        grads.Add(w);
                        grads.Add(b);
                    }
                }
            }
            step.Dispose();
            weights.ForEach(t => t.Dispose());
            gradOutput.Dispose();   // a fresh wrapper nothing reads after this call (as FusedStage's)
            grads.Add(null!);       // the plan's
            return grads;
        }
    }

    /// <summary>
    /// What one step's forward leaves for its backward, per stage: its input, its ReLU's output and the LRN's and
    /// pool's workspaces, in buffers of the plan's (Layouts.Take), given back when the backward is done, or when the
    /// graph is dropped without one.
    /// </summary>
    private sealed class Step : IDisposable
    {
        public readonly Plan Plan;
        public readonly Tensor?[] Inputs, Relus, LrnWorkspaces, PoolWorkspaces;
        private Tensor? _image;   // the image itself where conv1 reads it as it lies (not the plan's)

        public Step(Plan plan)
        {
            Plan = plan;
            int n = plan.Stages.Length;
            (Inputs, Relus, LrnWorkspaces, PoolWorkspaces) = (new Tensor?[n], new Tensor?[n], new Tensor?[n],
                new Tensor?[n]);
        }

        public void KeepImage(Tensor alias) => _image = alias.DetachFromDisposeScope();

        /// <summary>
        /// Gives stage <paramref name="i"/>'s buffers back once its backward is done (the stages after it are done
        /// already), so the backward's own buffers reuse them: its ReLU output, its workspaces, and its input where
        /// that is the previous stage's pooled maps (its ReLU output, the previous stage still reads).
        /// </summary>
        public void Release(int i)
        {
            lock (this)
            {
                bool own = i == 0 ? _image is null : !ReferenceEquals(Inputs[i], Relus[i - 1]);
                Plan.Layouts.Give(own ? Inputs[i] : null);
                Plan.Layouts.Give(Relus[i]);
                Plan.Layouts.Give(LrnWorkspaces[i]);
                Plan.Layouts.Give(PoolWorkspaces[i]);
                (Inputs[i], Relus[i], LrnWorkspaces[i], PoolWorkspaces[i]) = (null, null, null, null);
            }
        }

        /// <summary>Gives back what no backward released (all of it where none ran).</summary>
        public void Dispose()
        {
            lock (this)
            {
                for (int i = Inputs.Length - 1; i >= 0; i--)
                {
                    Release(i);
                }
                _image?.Dispose();
                _image = null;
            }
            GC.SuppressFinalize(this);
        }

        ~Step() => Dispose();
    }

    /// <summary>One convolutional layer's primitives and layouts: conv (+ReLU), [LRN], [pool].</summary>
    private sealed class Stage
    {
        public required ConvLayer Layer;
        public required long[] WeightDims;
        public required MemoryDesc Src, Weights, WeightsPlain, Bias, Dst, Out;
        public required MemoryDesc DataWeights, DataDiffDst, DataDiffSrc, GradSrc, GradDiffDst, GradDiffWeights;
        public required nint Forward, Data, Grad, ReluBackward;
        public MemoryDesc TowerView, LrnWorkspace, PoolWorkspace;
        public nint LrnForward, LrnBackward, PoolForward, PoolBackward;

        /// <summary>Tensors this stage keeps for its backward: its input, its ReLU's output, the two
        /// workspaces.</summary>
        public const int Saved = 4;
    }

    /// <summary>Every stage's primitives for one batch shape.</summary>
    private sealed class Plan
    {
        public readonly Stage[] Stages;

        /// <summary>"128×3×224×224: conv1 direct, …, conv3 winograd, …", for reports.</summary>
        public readonly string Summary;
        private readonly MemoryDesc _image, _imageIn, _pool5Plain;
        private readonly long[] _pool5Shape;
        public readonly Layouts Layouts = new();

        public Plan(long[] shape, Architecture arch)
        {
            long n = shape[0], channels = shape[1], size = shape[2];
            _image = Dnnl.Desc(shape, Dnnl.F32, Dnnl.Abcd);
            MemoryDesc src = Dnnl.Desc(shape, Dnnl.F32, Dnnl.Any);
            var stages = new List<Stage>();
            var algorithms = new List<string>();
            foreach (ConvLayer c in arch.Convs)
            {
                string what = $"making {c.Name} for training on the blocked path";
                long outSize = Shapes.OutputSize((int)size, c.Size, c.Stride, c.Padding);
                long[] wDims = c.Groups == 1 ? new[] { (long)c.Kernels, channels, c.Size, c.Size }
                    : new[] { c.Groups, (long)c.Kernels / c.Groups, channels / c.Groups, c.Size, c.Size };
                MemoryDesc bias = Dnnl.Desc(new long[] { c.Kernels }, Dnnl.F32, Dnnl.A);
                (nint forward, nint data, nint grad, bool winograd) = Convolution(src, wDims, bias, n, c, outSize,
                    what);
                algorithms.Add($"{c.Name} {(winograd ? "winograd" : "direct")}");
                MemoryDesc dst = Dnnl.Query(forward, Dnnl.QueryDstMd);
                var stage = new Stage
                {
                    Layer = c,
                    WeightDims = wDims,
                    Src = Dnnl.Query(forward, Dnnl.QuerySrcMd),
                    Weights = Dnnl.Query(forward, Dnnl.QueryWeightsMd),
                    WeightsPlain = Dnnl.Desc(wDims, Dnnl.F32, Dnnl.Plain(wDims.Length)),
                    Bias = bias,
                    Dst = dst,
                    Out = dst,
                    DataWeights = Dnnl.Query(data, Dnnl.QueryWeightsMd),
                    DataDiffDst = Dnnl.Query(data, Dnnl.QueryDiffDstMd),
                    DataDiffSrc = Dnnl.Query(data, Dnnl.QueryDiffSrcMd),
                    GradSrc = Dnnl.Query(grad, Dnnl.QuerySrcMd),
                    GradDiffDst = Dnnl.Query(grad, Dnnl.QueryDiffDstMd),
                    GradDiffWeights = Dnnl.Query(grad, Dnnl.QueryDiffWeightsMd),
                    Forward = Primitive(forward, what),
                    Data = stages.Count > 0 ? Primitive(data, what) : Drop(data),   // conv1: the image needs none
                    Grad = Primitive(grad, what),
                    ReluBackward = Primitive(Dnnl.ReluBackward(dst, what), what),
                };
                if (c.Lrn && arch.Lrn is { } p)
                {
                    // §3.3 within each tower: the towers' halves of the blocked maps are a batch of their own
                    stage.TowerView = OneDnnNet.TowerView(dst, (int)n, c.Kernels, (int)outSize, p)
                        ?? throw new NotSupportedException(
                            $"{c.Name}'s maps are not in a layout its {p.Towers} towers can be normalised in");
                    (nint lf, nint lb) = Dnnl.TrainingLrn(stage.TowerView, p.Size, (float)p.TorchAlpha, (float)p.Beta,
                        (float)p.K, what);
                    stage.LrnWorkspace = Dnnl.Query(lf, Dnnl.QueryWorkspaceMd);
                    (stage.LrnForward, stage.LrnBackward) = (Primitive(lf, what), Primitive(lb, what));
                }
                if (c.Pool)
                {
                    long pooled = Shapes.PooledSize((int)outSize, arch.PoolWindow, arch.PoolStride);
                    (nint pf, nint pb) = Dnnl.TrainingMaxPool(dst, Dnnl.Desc(new[] { n, c.Kernels, pooled, pooled },
                        Dnnl.F32, Dnnl.Any), arch.PoolWindow, arch.PoolStride, what);
                    stage.Out = Dnnl.Query(pf, Dnnl.QueryDstMd);
                    stage.PoolWorkspace = Dnnl.Query(pf, Dnnl.QueryWorkspaceMd);
                    (stage.PoolForward, stage.PoolBackward) = (Primitive(pf, what), Primitive(pb, what));
                    outSize = pooled;
                }
                if (stages.Count > 0 && !Dnnl.Equal(stage.DataDiffSrc, stage.Src))
                {
                    throw new NotSupportedException($"{c.Name}'s input gradient would lie in another layout");
                }
                stages.Add(stage);
                src = stage.Out;   // the next convolution reads the pooled maps as they lie
                (channels, size) = (c.Kernels, outSize);
            }
            Stages = stages.ToArray();
            Summary = $"{string.Join("×", shape)}: {string.Join(", ", algorithms)}";
            _imageIn = Stages[0].Src;
            _pool5Shape = new[] { n, channels, size, size };
            _pool5Plain = Dnnl.Desc(_pool5Shape, Dnnl.F32, Dnnl.Abcd);
        }

        /// <summary>A stage's convolution for training (OneDnnConv.Passes), §3.1's ReLU its post-op.</summary>
        private static (nint Forward, nint Data, nint Grad, bool Winograd) Convolution(MemoryDesc src,
            long[] wDims, MemoryDesc bias, long n, ConvLayer c, long outSize, string what)
        {
            nint relu = Dnnl.Attributes(null, Dnnl.EltwiseRelu);
            try
            {
                return OneDnnConv.Passes(src, Dnnl.Desc(wDims, Dnnl.F32, Dnnl.Any), bias,
                    Dnnl.Desc(new[] { n, c.Kernels, outSize, outSize }, Dnnl.F32, Dnnl.Any), c.Size, c.Stride,
                    c.Padding, what, relu);
            }
            finally
            {
                Dnnl.DestroyAttributes(relu);
            }
        }

        private static nint Primitive(nint pd, string what)
        {
            nint p = Dnnl.Primitive(pd, what);
            Dnnl.DestroyDesc(pd);
            return p;
        }

        private static nint Drop(nint pd)
        {
            Dnnl.DestroyDesc(pd);
            return 0;
        }

        /// <summary>pool5 (plain) and what the backward reads.</summary>
        public (Tensor Pool5, Step Step) Forward(Tensor x, Tensor[] weights, Tensor[] biases)
        {
            using var scope = new Memories();
            var step = new Step(this);
            Tensor h;
            if (Dnnl.Equal(_image, _imageIn))
            {
                h = x.alias();
                step.KeepImage(h);
            }
            else
            {
                h = Layouts.Take(_imageIn);
                Layouts.Reorder(scope.Of(x, _image), _image, scope.Of(h, _imageIn), _imageIn);
            }
            for (int i = 0; i < Stages.Length; i++)
            {
                Stage s = Stages[i];
                using Tensor w = Layouts.Into(scope, weights[i], s.WeightsPlain, s.Weights);
                Tensor y = Layouts.Take(s.Dst);
                Layouts.Run(s.Forward, new ExecArg(Dnnl.ArgSrc, scope.Of(h, s.Src)),
                    new ExecArg(Dnnl.ArgWeights, scope.Of(w, s.Weights)),
                    new ExecArg(Dnnl.ArgBias, scope.Of(biases[i], s.Bias)),
                    new ExecArg(Dnnl.ArgDst, scope.Of(y, s.Dst)));
                (step.Inputs[i], step.Relus[i]) = (h, y);
                Tensor? normalised = null;
                if (s.LrnForward != 0)
                {
                    normalised = Layouts.Take(s.Dst);
                    step.LrnWorkspaces[i] = Layouts.Take(s.LrnWorkspace);
                    Layouts.Run(s.LrnForward, new ExecArg(Dnnl.ArgSrc, scope.Of(y, s.TowerView)),
                        new ExecArg(Dnnl.ArgDst, scope.Of(normalised, s.TowerView)),
                        new ExecArg(Dnnl.ArgWorkspace, scope.Of(step.LrnWorkspaces[i]!, s.LrnWorkspace)));
                }
                h = normalised ?? y;
                if (s.PoolForward != 0)
                {
                    Tensor pooled = Layouts.Take(s.Out);
                    step.PoolWorkspaces[i] = Layouts.Take(s.PoolWorkspace);
                    Layouts.Run(s.PoolForward, new ExecArg(Dnnl.ArgSrc, scope.Of(h, s.Dst)),
                        new ExecArg(Dnnl.ArgDst, scope.Of(pooled, s.Out)),
                        new ExecArg(Dnnl.ArgWorkspace, scope.Of(step.PoolWorkspaces[i]!, s.PoolWorkspace)));
                    Layouts.Give(normalised);
                    h = pooled;
                }
            }
            Tensor pool5 = empty(_pool5Shape);
            Layouts.Out(scope, h, Stages[^1].Out, pool5, _pool5Plain);
            if (!ReferenceEquals(h, step.Relus[^1]))
            {
                Layouts.Give(h);   // pool5 in the blocked layout: no stage reads it again
            }
            return (pool5, step);
        }

        /// <summary>Every stage's weight and bias gradients (plain), from pool5's (plain).</summary>
        public (Tensor W, Tensor B)[] Backward(Tensor gy, Step step, List<Tensor> weights)
        {
            using var scope = new Memories();
            var grads = new (Tensor, Tensor)[Stages.Length];
            if (step.Relus[0] is null)
            {
                throw new InvalidOperationException(
                    "The blocked training path runs one backward per forward (retain_graph is not supported).");
            }
            Tensor g = Layouts.Take(Stages[^1].Out);   // the ReLU's backward writes in place: never gy itself
            Layouts.Reorder(scope.Of(gy, _pool5Plain), _pool5Plain, scope.Of(g, Stages[^1].Out), Stages[^1].Out);
            for (int i = Stages.Length - 1; i >= 0; i--)
            {
                Stage s = Stages[i];
                Tensor src = step.Inputs[i]!, y = step.Relus[i]!;
                if (s.PoolBackward != 0)
                {
                    Tensor before = Layouts.Take(s.Dst);
                    Layouts.Run(s.PoolBackward, new ExecArg(Dnnl.ArgDiffDst, scope.Of(g, s.Out)),
                        new ExecArg(Dnnl.ArgWorkspace, scope.Of(step.PoolWorkspaces[i]!, s.PoolWorkspace)),
                        new ExecArg(Dnnl.ArgDiffSrc, scope.Of(before, s.Dst)));
                    Layouts.Give(g);
                    g = before;
                }
                if (s.LrnBackward != 0)
                {
                    Tensor before = Layouts.Take(s.Dst);
                    Layouts.Run(s.LrnBackward, new ExecArg(Dnnl.ArgSrc, scope.Of(y, s.TowerView)),
                        new ExecArg(Dnnl.ArgDiffDst, scope.Of(g, s.TowerView)),
                        new ExecArg(Dnnl.ArgWorkspace, scope.Of(step.LrnWorkspaces[i]!, s.LrnWorkspace)),
                        new ExecArg(Dnnl.ArgDiffSrc, scope.Of(before, s.TowerView)));
                    Layouts.Give(g);
                    g = before;
                }
                nint diff = scope.Of(g, s.Dst);   // §3.1: through the ReLU, in place
                Layouts.Run(s.ReluBackward, new ExecArg(Dnnl.ArgDst, scope.Of(y, s.Dst)),
                    new ExecArg(Dnnl.ArgDiffDst, diff), new ExecArg(Dnnl.ArgDiffSrc, diff));
                Tensor gw = empty(weights[i].shape), gb = empty(s.Layer.Kernels);
                using (Tensor d = Layouts.Into(scope, g, s.Dst, s.GradDiffDst))
                using (Tensor x = Layouts.Into(scope, src, s.Src, s.GradSrc))
                using (Tensor gwb = Layouts.Buffer(s.GradDiffWeights, s.WeightsPlain, gw))
                {
                    Layouts.Run(s.Grad, new ExecArg(Dnnl.ArgSrc, scope.Of(x, s.GradSrc)),
                        new ExecArg(Dnnl.ArgDiffDst, scope.Of(d, s.GradDiffDst)),
                        new ExecArg(Dnnl.ArgDiffWeights, scope.Of(gwb, s.GradDiffWeights)),
                        new ExecArg(Dnnl.ArgDiffBias, scope.Of(gb, s.Bias)));
                    Layouts.Out(scope, gwb, s.GradDiffWeights, gw, s.WeightsPlain);
                }
                grads[i] = (gw, gb);
                if (i > 0)
                {
                    // the gradient of the previous stage's output, in the layout it lies in
                    Tensor before = Layouts.Take(s.Src);
                    using (Tensor d = Layouts.Into(scope, g, s.Dst, s.DataDiffDst))
                    using (Tensor w = Layouts.Into(scope, weights[i], s.WeightsPlain, s.DataWeights))
                    {
                        Layouts.Run(s.Data, new ExecArg(Dnnl.ArgDiffDst, scope.Of(d, s.DataDiffDst)),
                            new ExecArg(Dnnl.ArgWeights, scope.Of(w, s.DataWeights)),
                            new ExecArg(Dnnl.ArgDiffSrc, scope.Of(before, s.DataDiffSrc)));
                    }
                    Layouts.Give(g);
                    g = before;
                }
                step.Release(i);
            }
            Layouts.Give(g);
            return grads;
        }
    }
}
