// The tail of conv1 and conv2 (Figure 2): ReLU (§3.1) → LRN (§3.3) → overlapping max-pool (§3.4), as one
// autograd operation with one pass each way. Composed from libtorch's ops this tail allocates and streams four
// full-size tensors forward and as many backward (ReLU, LRN output, LRN scale, pool indices, and each
// one's gradient); fused, the forward writes only the pooled output and each window's maximum's index, and
// the backward only the gradient of the conv output. The arithmetic is LrnKernel's (with ReLU applied to its
// input) and MaxPoolKernel's; this file only wires them per image. Nets without LRN (owt, §3.3's ablation)
// fuse ReLU → max-pool the same way: each plane rectified into scratch, then pooled.
//
// Shapes: x = conv output N×C×H×W; y = N×C×Ho×Wo with Ho = (H − z)/s + 1 (z = window, s = stride).
using System.Collections.Generic;
using System.Threading.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Model.Kernels;

public static class FusedStage
{
    public static bool Supports(Tensor x) => Planes.Supports(x);

    /// <summary>
    /// relu → LRN → max-pool(window, stride) of a conv output; with <paramref name="p"/> null, relu → max-pool.
    /// </summary>
    public static Tensor Apply(Tensor x, LrnParams? p, int window, int stride)
    {
        if (!torch.is_grad_enabled() || !x.requires_grad)
        {
            using Tensor c = x.contiguous();
            Tensor y = empty(OutputShape(c, window, stride));
            Kernel.Forward(c, y, null, p, window, stride);
            return y;
        }
        return StageFunction.apply(x, new StageArgs(p, window, stride));
    }

    /// <summary>
    /// The forward on raw buffers (n×c×h×w in, n×c×pooled out), for the oneDNN engine's plain-layout stretch
    /// (OneDnnNet.cs).
    /// </summary>
    internal static unsafe void Forward(float* x, float* y, int n, int c, int h, int w,
        LrnParams? p, int window, int stride) =>
        Kernel.Forward(x, y, null, n, c, h, w, p, window, stride);

    /// <summary>The same computation from libtorch's own operations, for any device and dtype.</summary>
    public static Tensor Reference(Tensor x, LrnParams? p, int window, int stride)
    {
        using var scope = NewDisposeScope();
        Tensor a = nn.functional.relu(x);
        Tensor b = p is null ? a : LocalResponseNorm.Reference(a, p);
        return nn.functional.max_pool2d(b, new long[] { window, window },
            new long[] { stride, stride }).MoveToOuterDisposeScope();
    }

    private static long[] OutputShape(Tensor x, int window, int stride)
    {
        long[] s = x.shape;
        return new[] { s[0], s[1], Shapes.PooledSize((int)s[2], window, stride),
            Shapes.PooledSize((int)s[3], window, stride) };
    }

    private sealed record StageArgs(LrnParams? P, int Window, int Stride);

    // The same autograd glue as LocalResponseNorm's LrnFunction (save the input and what the backward needs, hand
    // both to the kernel, free the saved wrappers): TorchSharp's custom functions have no base to share it in.
    private sealed class StageFunction : autograd.SingleTensorFunction<StageFunction>
    {
        public override string Name => "AlexNetReluLrnPool";   // or ReLU → pool where P is null

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var args = (StageArgs)vars[1];
            Tensor x = ((Tensor)vars[0]).contiguous();
            long[] shape = OutputShape(x, args.Window, args.Stride);
            Tensor y = empty(shape);
            Tensor argmax = empty(shape, ScalarType.Int32);
            Kernel.Forward(x, y, argmax, args.P, args.Window, args.Stride);
            ctx.save_for_backward(new List<Tensor> { x, argmax });
            ctx.save_data("args", args);
            return y;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var args = (StageArgs)ctx.get_data("args");
            List<Tensor> saved = ctx.get_saved_variables();
            using Tensor gy = gradOutput.contiguous();
            Tensor gx = empty_like(saved[0]);
            Kernel.Backward(saved[0], saved[1], gy, gx, args.P, args.Window, args.Stride);
            foreach (Tensor t in saved)
            {
                t.Dispose();
            }
            // TorchSharp hands the incoming gradient over in a fresh wrapper that nothing reads after this call.
            gradOutput.Dispose();
            return new List<Tensor> { gx, null! };
        }
    }

    /// <summary>Per image: LrnKernel's passes with ReLU on their input, feeding or fed by MaxPoolKernel.</summary>
    private static unsafe class Kernel
    {
        public static void Forward(Tensor x, Tensor y, Tensor? argmax, LrnParams? p, int window, int stride)
        {
            long[] s = x.shape;
            Forward(Planes.Ptr(x), Planes.Ptr(y), argmax is null ? null : Planes.IntPtr(argmax), (int)s[0], (int)s[1],
                (int)s[2], (int)s[3], p, window, stride);
        }

        /// <summary>x: n×c×h×w, y: n×c×pooled (argmax likewise, or null), contiguous.</summary>
        public static void Forward(float* px, float* py, int* pi, int n, int c, int h, int w,
            LrnParams? p, int window, int stride)
        {
            int pooled = Shapes.PooledSize(h, window, stride) * Shapes.PooledSize(w, window, stride);
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = Planes.Threads }, img =>
            {
                using var scratch = new Scratch(h * w,
                    LrnKernel.ForwardScratchPlanes + MaxPoolKernel.ScratchPlanes + 1);
                long o = (long)img * c * pooled;
                var sink = new PoolingSink(py + o, pi == null ? null : pi + o, h, w, window, stride, pooled, scratch);
                float* image = px + (long)img * c * h * w;
                if (p is not null)
                {
                    LrnKernel.ForwardImage<Relu, PoolingSink>(image, c, h * w, p, scratch, ref sink);
                    return;
                }
                for (int ch = 0; ch < c; ch++)
                {
                    float* b = sink.Target(ch);
                    Rectify(image + (long)ch * h * w, b, h * w);
                    sink.Written(ch, b);
                }
            });
        }

        /// <summary>b = max(0, a) over one plane, into padded scratch.</summary>
        private static void Rectify(float* a, float* b, int plane)
        {
            int vw = System.Numerics.Vector<float>.Count;
            for (int i = 0; i < plane; i += vw)
            {
                Planes.Store(b, i, plane, Relu.Forward(Planes.Load(a, i, plane)));
            }
        }

        public static void Backward(Tensor x, Tensor argmax, Tensor gy, Tensor gx, LrnParams? p, int window, int stride)
        {
            long[] s = x.shape;
            int n = (int)s[0], c = (int)s[1], h = (int)s[2], w = (int)s[3];
            int pooled = Shapes.PooledSize(h, window, stride) * Shapes.PooledSize(w, window, stride);
            float* px = Planes.Ptr(x), pgy = Planes.Ptr(gy), pgx = Planes.Ptr(gx);
            int* pi = Planes.IntPtr(argmax);
            int lrnPlanes = p is null ? 0 : LrnKernel.BackwardScratchPlanes(p);
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = Planes.Threads }, img =>
            {
                using var scratch = new Scratch(h * w, lrnPlanes + 1);
                long o = (long)img * c * pooled, image = (long)img * c * h * w;
                var grad = new PooledGradient(pgy + o, pi + o, pooled, h * w, scratch[lrnPlanes]);
                if (p is not null)
                {
                    LrnKernel.BackwardImage<Relu, PooledGradient>(px + image, pgx + image,
                        c, h * w, p, scratch, ref grad);
                    return;
                }
                int plane = h * w;
                int vw = System.Numerics.Vector<float>.Count;
                for (int ch = 0; ch < c; ch++)
                {
                    float* gb = grad.Gradient(ch), xc = px + image + (long)ch * plane,
                        gxc = pgx + image + (long)ch * plane;
                    for (int i = 0; i < plane; i += vw)
                    {
                        Planes.Store(gxc, i, plane,
                            Relu.Backward(Planes.Load(xc, i, plane), System.Numerics.Vector.LoadUnsafe(ref gb[i])));
                    }
                }
            });
        }
    }

    /// <summary>The forward's b of each channel goes to scratch and is pooled at once.</summary>
    private unsafe struct PoolingSink : IPlaneSink
    {
        private readonly float* _y, _b, _rowMax;
        private readonly int* _argmax, _rowArg;
        private readonly int _h, _w, _window, _stride, _pooled;

        public PoolingSink(float* y, int* argmax, int h, int w, int window, int stride, int pooled, Scratch scratch)
        {
            _y = y;
            _argmax = argmax;
            (_h, _w, _window, _stride, _pooled) = (h, w, window, stride, pooled);
            int first = LrnKernel.ForwardScratchPlanes;
            _rowMax = scratch[first];
            _rowArg = (int*)scratch[first + 1];
            _b = scratch[first + 2];
        }

        public float* Target(int c) => _b;

        public void Written(int c, float* b)
        {
            long o = (long)c * _pooled;
            MaxPoolKernel.Forward(b, _y + o, _argmax == null ? null : _argmax + o, _h, _w,
                _window, _stride, _rowMax, _rowArg);
        }
    }

    /// <summary>∂L/∂b of a channel: the pooled gradient routed back to the forward's maxima.</summary>
    private readonly unsafe struct PooledGradient : IPlaneGradient
    {
        private readonly float* _gy, _gb;
        private readonly int* _argmax;
        private readonly int _pooled, _plane;

        public PooledGradient(float* gy, int* argmax, int pooled, int plane, float* gb)
        {
            _gy = gy;
            _argmax = argmax;
            _gb = gb;
            (_pooled, _plane) = (pooled, plane);
        }

        public float* Gradient(int c)
        {
            long o = (long)c * _pooled;
            MaxPoolKernel.Backward(_gy + o, _argmax + o, _pooled, _gb, _plane);
            return _gb;
        }
    }
}
