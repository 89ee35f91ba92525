// The tail of conv1 and conv2 (Figure 2): ReLU (§3.1) → LRN (§3.3) → overlapping max-pool (§3.4), as one
// operation with one pass each way. Composed from libtorch's ops this tail allocates and streams four
// full-size tensors forward and as many backward (ReLU, LRN output, LRN scale, pool indices, and each
// one's gradient); fused, the forward writes only the pooled output and each window's maximum's index, and
// the backward only the gradient of the conv output, recomputing the LRN scale per image in cache-sized scratch.
//
// Shapes: x = conv output N×C×H×W; y = N×C×Ho×Wo with Ho = (H − z)/s + 1 (z = window, s = stride).
// Backward, per image:  a = max(x, 0);  s = k + α Σ_W a²;  b = a·s^−β;  ∂b = ∂y scattered to the saved maxima
// (libtorch's first maximum);  ∂a = ∂b·s^−β − 2αβ·a·Σ_{j: c∈W(j)} ∂b[j]·b[j]/s[j];  ∂x = ∂a·[x > 0].
using System;
using System.Buffers;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Model;

public static class FusedStage
{
    public static bool Supports(Tensor x) => x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32 && x.dim() == 4;

    /// <summary>relu → LRN → max-pool(window, stride) of a conv output.</summary>
    public static Tensor Apply(Tensor x, LrnParams p, int window, int stride)
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

    /// <summary>The same computation from libtorch's own operations, for any device and dtype.</summary>
    public static Tensor Reference(Tensor x, LrnParams p, int window, int stride)
    {
        using var scope = NewDisposeScope();
        Tensor a = nn.functional.relu(x);
        Tensor b = nn.functional.local_response_norm(a, p.Size, p.TorchAlpha, p.Beta, p.K);
        return nn.functional.max_pool2d(b, new long[] { window, window }, new long[] { stride, stride }).MoveToOuterDisposeScope();
    }

    static long[] OutputShape(Tensor x, int window, int stride)
    {
        long[] s = x.shape;
        return new[] { s[0], s[1], (s[2] - window) / stride + 1, (s[3] - window) / stride + 1 };
    }

    sealed record StageArgs(LrnParams P, int Window, int Stride);

    sealed class StageFunction : autograd.SingleTensorFunction<StageFunction>
    {
        public override string Name => "AlexNetReluLrnPool";

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

    internal static unsafe class Kernel
    {
        static float* Ptr(Tensor t) => LrnKernel.Ptr(t);

        /// <summary>Scratch floats past a plane's end: the vector pooling reads up to a vector beyond its last window.</summary>
        static int Pad => 2 * Vector<float>.Count;

        /// <summary>Forward: y = pool(b), and with <paramref name="argmax"/> each window's first maximum as an index into its plane.</summary>
        public static void Forward(Tensor x, Tensor y, Tensor? argmax, LrnParams p, int window, int stride)
        {
            long[] s = x.shape;
            int n = (int)s[0], c = (int)s[1], h = (int)s[2], w = (int)s[3];
            int ho = (h - window) / stride + 1, wo = (w - window) / stride + 1;
            float* px = Ptr(x), py = Ptr(y);
            int* pi = argmax is null ? null : (int*)LrnKernel.Ptr(argmax);
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = LrnKernel.Threads }, img =>
            {
                int plane = h * w;
                float[] acc = ArrayPool<float>.Shared.Rent(plane + Pad);
                float[] b = ArrayPool<float>.Shared.Rent(plane + Pad);
                float[] zero = ArrayPool<float>.Shared.Rent(plane + Pad);
                float[] rowMax = ArrayPool<float>.Shared.Rent(plane + Pad);
                int[] rowArg = ArrayPool<int>.Shared.Rent(plane + Pad);
                try
                {
                    long outPlanes = (long)img * c * ho * wo;
                    ForwardImage(px + (long)img * c * plane, py + outPlanes, pi == null ? null : pi + outPlanes,
                        c, h, w, ho, wo, p, window, stride, acc, b, zero, rowMax, rowArg);
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(acc);
                    ArrayPool<float>.Shared.Return(b);
                    ArrayPool<float>.Shared.Return(zero);
                    ArrayPool<float>.Shared.Return(rowMax);
                    ArrayPool<int>.Shared.Return(rowArg);
                }
            });
        }

        static void ForwardImage(float* x, float* y, int* argmax, int channels, int h, int w, int ho, int wo, LrnParams p,
            int window, int stride, float[] accArray, float[] bArray, float[] zeroArray, float[] rowMaxArray, int[] rowArgArray)
        {
            int plane = h * w;
            int lo = p.Size / 2, hi = (p.Size - 1) / 2;
            var lrn = new Lrn(p);
            fixed (float* acc = accArray, b = bArray, zero = zeroArray, rowMax = rowMaxArray)
            fixed (int* rowArg = rowArgArray)
            {
                new Span<float>(acc, plane + Pad).Clear();   // whole vectors run past the plane: keep those lanes finite
                new Span<float>(zero, plane + Pad).Clear();
                new Span<float>(b + plane, Pad).Clear();
                for (int j = 0; j <= Math.Min(hi, channels - 1); j++)
                {
                    Roll(acc, x + (long)j * plane, zero, plane);
                }
                for (int ch = 0; ch < channels; ch++)
                {
                    float* entering = ch + hi + 1 < channels ? x + (long)(ch + hi + 1) * plane : zero;
                    float* leaving = ch - lo >= 0 ? x + (long)(ch - lo) * plane : zero;
                    lrn.Normalise(x + (long)ch * plane, acc, b, entering, leaving, plane);
                    long o = (long)ch * ho * wo;
                    Pool(b, y + o, argmax == null ? null : argmax + o, h, w, ho, wo, window, stride, rowMax, rowArg);
                }
            }
        }

        /// <summary>The LRN arithmetic of §3.3 on whole vectors, tails included, so that equal inputs give equal outputs.</summary>
        readonly struct Lrn
        {
            readonly Vector<float> _k, _alpha;
            readonly float _beta;
            readonly bool _threeQuarters;

            public Lrn(LrnParams p)
            {
                _k = new Vector<float>((float)p.K);
                _alpha = new Vector<float>((float)p.Alpha);
                _beta = (float)p.Beta;
                _threeQuarters = _beta == 0.75f;
            }

            public Vector<float> Scale(Vector<float> squares) => _k + _alpha * Vector.Max(squares, Vector<float>.Zero);

            /// <summary>(s^−β, s^−β/s): the forward's divisor and the factor of the cross-channel gradient term.</summary>
            public (Vector<float> Pow, Vector<float> PowOverS) Powers(Vector<float> s)
            {
                if (_threeQuarters)
                {
                    (Vector<float> pow, Vector<float> inverse) = LrnKernel.NegThreeQuarters(s);   // no division
                    return (pow, pow * inverse);
                }
                Vector<float> general = LrnKernel.NegPow(s, _beta, false);
                return (general, general / s);
            }

            /// <summary>b = relu(x)·s^−β with s from the rolling Σ a², which then moves one channel on.</summary>
            public void Normalise(float* x, float* acc, float* b, float* entering, float* leaving, int plane)
            {
                int vw = Vector<float>.Count;
                for (int i = 0; i < plane; i += vw)
                {
                    Vector<float> a = Relu(Load(x, i, plane));
                    Vector<float> sq = Vector.LoadUnsafe(ref acc[i]);
                    (a * LrnKernel.NegPow(Scale(sq), _beta, _threeQuarters)).StoreUnsafe(ref b[i]);
                    Vector<float> e = Relu(Load(entering, i, plane)), l = Relu(Load(leaving, i, plane));
                    (sq + e * e - l * l).StoreUnsafe(ref acc[i]);
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector<float> Relu(Vector<float> v) => Vector.Max(v, Vector<float>.Zero);

        /// <summary>A vector at p[i]; past the plane's end the lanes are 0 (tensor memory may end there).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static Vector<float> Load(float* p, int i, int plane) =>
            i + Vector<float>.Count <= plane ? Vector.LoadUnsafe(ref p[i]) : LoadTail(p, i, plane);

        [MethodImpl(MethodImplOptions.NoInlining)]
        static Vector<float> LoadTail(float* p, int i, int plane)
        {
            Span<float> lanes = stackalloc float[Vector<float>.Count];
            lanes.Clear();
            new ReadOnlySpan<float>(p + i, plane - i).CopyTo(lanes);
            return new Vector<float>(lanes);
        }

        /// <summary>acc += relu(entering)² − relu(leaving)² (the window's first channels, before the forward's loop).</summary>
        static void Roll(float* acc, float* entering, float* leaving, int plane)
        {
            int vw = Vector<float>.Count;
            for (int i = 0; i < plane; i += vw)
            {
                Vector<float> e = Relu(Load(entering, i, plane)), l = Relu(Load(leaving, i, plane));
                (Vector.LoadUnsafe(ref acc[i]) + e * e - l * l).StoreUnsafe(ref acc[i]);
            }
        }

        /// <summary>
        /// Max-pool of one plane, separably and on whole vectors: each row's window maximum at every column, then
        /// the maximum of those down each window's rows. Strict "greater than" in both passes keeps the leftmost of
        /// equal values within a row and then the topmost row: libtorch's first maximum in row-major order. NaN wins.
        /// </summary>
        static void Pool(float* b, float* y, int* argmax, int h, int w, int ho, int wo, int window, int stride, float* rowMax, int* rowArg)
        {
            int vw = Vector<float>.Count;
            int cols = w - window + 1;   // window starts along a row
            Span<int> iota = stackalloc int[vw];
            for (int l = 0; l < vw; l++)
            {
                iota[l] = l;
            }
            var lanes = new Vector<int>(iota);
            int rows = (ho - 1) * stride + window;
            for (int r = 0; r < rows; r++)
            {
                float* row = b + r * w;
                for (int x0 = 0; x0 < cols; x0 += vw)
                {
                    Vector<float> m = Vector.LoadUnsafe(ref row[x0]);
                    Vector<int> start = lanes + new Vector<int>(r * w + x0);
                    Vector<int> at = start;
                    for (int dx = 1; dx < window; dx++)
                    {
                        Vector<float> v = Vector.LoadUnsafe(ref row[x0 + dx]);
                        Vector<int> take = Vector.GreaterThan(v, m) | ~Vector.Equals(v, v);
                        m = Vector.ConditionalSelect(take, v, m);
                        at = Vector.ConditionalSelect(take, start + new Vector<int>(dx), at);
                    }
                    m.StoreUnsafe(ref rowMax[r * w + x0]);
                    at.StoreUnsafe(ref rowArg[r * w + x0]);
                }
            }
            Span<float> windowMax = stackalloc float[cols + vw];
            Span<int> windowArg = stackalloc int[cols + vw];
            for (int oy = 0; oy < ho; oy++)
            {
                int top = oy * stride * w;
                for (int x0 = 0; x0 < cols; x0 += vw)
                {
                    Vector<float> m = Vector.LoadUnsafe(ref rowMax[top + x0]);
                    Vector<int> at = Vector.LoadUnsafe(ref rowArg[top + x0]);
                    for (int dy = 1; dy < window; dy++)
                    {
                        Vector<float> v = Vector.LoadUnsafe(ref rowMax[top + dy * w + x0]);
                        Vector<int> take = Vector.GreaterThan(v, m) | ~Vector.Equals(v, v);
                        m = Vector.ConditionalSelect(take, v, m);
                        at = Vector.ConditionalSelect(take, Vector.LoadUnsafe(ref rowArg[top + dy * w + x0]), at);
                    }
                    m.StoreUnsafe(ref windowMax[x0]);
                    at.StoreUnsafe(ref windowArg[x0]);
                }
                // The pooled values are those of the windows that start at every stride-th column.
                float* yo = y + oy * wo;
                for (int ox = 0; ox < wo; ox++)
                {
                    yo[ox] = windowMax[ox * stride];
                }
                if (argmax != null)
                {
                    int* io = argmax + oy * wo;
                    for (int ox = 0; ox < wo; ox++)
                    {
                        io[ox] = windowArg[ox * stride];
                    }
                }
            }
        }

        public static void Backward(Tensor x, Tensor argmax, Tensor gy, Tensor gx, LrnParams p, int window, int stride)
        {
            long[] s = x.shape;
            int n = (int)s[0], c = (int)s[1], h = (int)s[2], w = (int)s[3];
            int ho = (h - window) / stride + 1, wo = (w - window) / stride + 1;
            float* px = Ptr(x), pgy = Ptr(gy), pgx = Ptr(gx);
            int* pi = (int*)LrnKernel.Ptr(argmax);
            int ring = p.Size + 1;
            int slot = h * w + Pad;
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = LrnKernel.Threads }, img =>
            {
                int plane = h * w;
                float[] tArr = ArrayPool<float>.Shared.Rent(ring * slot);
                float[] rArr = ArrayPool<float>.Shared.Rent(ring * slot);
                float[] gbArr = ArrayPool<float>.Shared.Rent(slot);
                float[] squaresArr = ArrayPool<float>.Shared.Rent(slot);
                float[] ratiosArr = ArrayPool<float>.Shared.Rent(slot);
                float[] zeroArr = ArrayPool<float>.Shared.Rent(slot);
                try
                {
                    fixed (float* t = tArr, r = rArr, gb = gbArr, squares = squaresArr, ratios = ratiosArr, zero = zeroArr)
                    {
                        long outPlanes = (long)img * c * ho * wo;
                        BackwardImage(px + (long)img * c * plane, pi + outPlanes, pgy + outPlanes, pgx + (long)img * c * plane,
                            c, plane, ho * wo, p, ring, slot, t, r, gb, squares, ratios, zero);
                    }
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(tArr);
                    ArrayPool<float>.Shared.Return(rArr);
                    ArrayPool<float>.Shared.Return(gbArr);
                    ArrayPool<float>.Shared.Return(squaresArr);
                    ArrayPool<float>.Shared.Return(ratiosArr);
                    ArrayPool<float>.Shared.Return(zeroArr);
                }
            });
        }

        /// <summary>
        /// One image. ∂b is ∂y scattered to the forward's saved maxima; from it, per channel j, t_j = ∂b·s^−β and
        /// r_j = ∂b·b/s = ∂b·a·s^−β/s, with s recomputed from the rolling Σ a². Channel c's gradient needs Σ r_j over
        /// j ∈ [c − hi, c + lo], so t and r run lo + 1 channels ahead of it in a ring of n + 1 planes that stays in L2.
        /// </summary>
        static void BackwardImage(float* x, int* argmax, float* gy, float* gx, int channels, int plane, int pooled, LrnParams p,
            int ring, int slot, float* t, float* r, float* gb, float* squares, float* ratios, float* zero)
        {
            int lo = p.Size / 2, hi = (p.Size - 1) / 2;
            var lrn = new Lrn(p);
            int vw = Vector<float>.Count;
            long Slot(int ch) => (long)(ch % ring) * slot;
            float* Channel(int ch) => ch >= 0 && ch < channels ? x + (long)ch * plane : zero;

            // t and r of channel j, moving the rolling Σ a² on to channel j + 1.
            void Produce(int j)
            {
                new Span<float>(gb, plane).Clear();
                int* at = argmax + (long)j * pooled;
                float* g = gy + (long)j * pooled;
                for (int o = 0; o < pooled; o++)
                {
                    gb[at[o]] += g[o];
                }
                float* xj = x + (long)j * plane, tj = t + Slot(j), rj = r + Slot(j);
                float* entering = Channel(j + hi + 1), leaving = Channel(j - lo);
                for (int i = 0; i < plane; i += vw)
                {
                    Vector<float> sq = Vector.LoadUnsafe(ref squares[i]);
                    (Vector<float> pow, Vector<float> powOverS) = lrn.Powers(lrn.Scale(sq));
                    Vector<float> d = Vector.LoadUnsafe(ref gb[i]);
                    (d * pow).StoreUnsafe(ref tj[i]);
                    (d * Relu(Load(xj, i, plane)) * powOverS).StoreUnsafe(ref rj[i]);
                    Vector<float> e = Relu(Load(entering, i, plane)), l = Relu(Load(leaving, i, plane));
                    (sq + e * e - l * l).StoreUnsafe(ref squares[i]);
                }
            }

            new Span<float>(zero, slot).Clear();
            new Span<float>(gb + plane, slot - plane).Clear();
            new Span<float>(squares, slot).Clear();
            for (int j = 0; j <= Math.Min(hi, channels - 1); j++)
            {
                Roll(squares, x + (long)j * plane, zero, plane);
            }
            new Span<float>(ratios, slot).Clear();
            for (int j = 0; j <= Math.Min(lo, channels - 1); j++)
            {
                Produce(j);
                AddPlane(ratios, r + Slot(j), plane);
            }

            // ∂a = t − 2αβ·a·Σ r, then ReLU's mask; the Σ r window moves on by one channel in the same pass.
            var vc = new Vector<float>((float)(2 * p.Alpha * p.Beta));
            for (int ch = 0; ch < channels; ch++)
            {
                int entering = ch + lo + 1, leaving = ch - hi;
                if (entering < channels)
                {
                    Produce(entering);
                }
                float* rin = entering < channels ? r + Slot(entering) : zero;
                float* rout = leaving >= 0 ? r + Slot(leaving) : zero;
                float* xc = x + (long)ch * plane, tc = t + Slot(ch), gxc = gx + (long)ch * plane;
                for (int i = 0; i < plane; i += vw)
                {
                    Vector<float> xv = Load(xc, i, plane);
                    Vector<float> sum = Vector.LoadUnsafe(ref ratios[i]);
                    Vector<float> ga = Vector.LoadUnsafe(ref tc[i]) - vc * Relu(xv) * sum;
                    Store(gxc, i, plane, Vector.ConditionalSelect(Vector.GreaterThan(xv, Vector<float>.Zero), ga, Vector<float>.Zero));
                    (sum + Vector.LoadUnsafe(ref rin[i]) - Vector.LoadUnsafe(ref rout[i])).StoreUnsafe(ref ratios[i]);
                }
            }
        }

        /// <summary>acc += v over one plane (whole vectors; the scratch is padded).</summary>
        static void AddPlane(float* acc, float* v, int plane)
        {
            int vw = Vector<float>.Count;
            for (int i = 0; i < plane; i += vw)
            {
                (Vector.LoadUnsafe(ref acc[i]) + Vector.LoadUnsafe(ref v[i])).StoreUnsafe(ref acc[i]);
            }
        }

        /// <summary>Stores v at p[i], only the lanes before the plane's end.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Store(float* p, int i, int plane, Vector<float> v)
        {
            if (i + Vector<float>.Count <= plane)
            {
                v.StoreUnsafe(ref p[i]);
                return;
            }
            StoreTail(p, i, plane, v);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        static void StoreTail(float* p, int i, int plane, Vector<float> v)
        {
            Span<float> lanes = stackalloc float[Vector<float>.Count];
            v.CopyTo(lanes);
            lanes[..(plane - i)].CopyTo(new Span<float>(p + i, plane - i));
        }
    }
}
