// The tail of conv1 and conv2 (Figure 2): ReLU (§3.1) → LRN (§3.3) → overlapping max-pool (§3.4), as one
// operation with one pass each way. Composed from libtorch's ops this tail allocates and streams four
// full-size tensors forward and as many backward (ReLU, LRN output, LRN scale, pool indices, and each
// one's gradient); fused, the forward writes only the pooled output and the backward only the gradient
// of the conv output, recomputing the rest per image in cache-sized scratch.
//
// Shapes: x = conv output N×C×H×W; y = N×C×Ho×Wo with Ho = (H − z)/s + 1 (z = window, s = stride).
// Backward, per image:  a = max(x, 0);  s = k + α Σ_W a²;  b = a·s^−β;  ∂b from ∂y at each window's first
// maximum (libtorch's tie rule);  ∂a = ∂b·s^−β − 2αβ·a·Σ_{j: c∈W(j)} ∂b[j]·b[j]/s[j];  ∂x = ∂a·[x > 0].
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
            Kernel.Forward(c, y, p, window, stride);
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
            Tensor y = empty(OutputShape(x, args.Window, args.Stride));
            Kernel.Forward(x, y, args.P, args.Window, args.Stride);
            ctx.save_for_backward(new List<Tensor> { x });
            ctx.save_data("args", args);
            return y;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var args = (StageArgs)ctx.get_data("args");
            List<Tensor> saved = ctx.get_saved_variables();
            using Tensor gy = gradOutput.contiguous();
            Tensor gx = empty_like(saved[0]);
            Kernel.Backward(saved[0], gy, gx, args.P, args.Window, args.Stride);
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

        public static void Forward(Tensor x, Tensor y, LrnParams p, int window, int stride)
        {
            long[] s = x.shape;
            int n = (int)s[0], c = (int)s[1], h = (int)s[2], w = (int)s[3];
            int ho = (h - window) / stride + 1, wo = (w - window) / stride + 1;
            float* px = Ptr(x), py = Ptr(y);
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = LrnKernel.Threads }, img =>
            {
                int plane = h * w;
                float[] acc = ArrayPool<float>.Shared.Rent(plane);
                float[] b = ArrayPool<float>.Shared.Rent(plane);
                try
                {
                    ForwardImage(px + (long)img * c * plane, py + (long)img * c * ho * wo, c, h, w, ho, wo, p, window, stride, acc, b);
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(acc);
                    ArrayPool<float>.Shared.Return(b);
                }
            });
        }

        static void ForwardImage(float* x, float* y, int channels, int h, int w, int ho, int wo, LrnParams p, int window, int stride,
            float[] accArray, float[] bArray)
        {
            int plane = h * w;
            int lo = p.Size / 2, hi = (p.Size - 1) / 2;
            float k = (float)p.K, alpha = (float)p.Alpha, beta = (float)p.Beta;
            bool threeQuarters = beta == 0.75f;
            fixed (float* acc = accArray, b = bArray)
            {
                new Span<float>(acc, plane).Clear();
                for (int j = 0; j <= Math.Min(hi, channels - 1); j++)
                {
                    AddReluSquares(acc, x + (long)j * plane, plane, 1f);
                }
                for (int ch = 0; ch < channels; ch++)
                {
                    float* xc = x + (long)ch * plane;
                    Normalise(xc, acc, b, plane, k, alpha, beta, threeQuarters);
                    Pool(b, y + (long)ch * ho * wo, w, ho, wo, window, stride);
                    if (ch + hi + 1 < channels)
                    {
                        AddReluSquares(acc, x + (long)(ch + hi + 1) * plane, plane, 1f);
                    }
                    if (ch - lo >= 0)
                    {
                        AddReluSquares(acc, x + (long)(ch - lo) * plane, plane, -1f);
                    }
                }
            }
        }

        /// <summary>b = relu(x)·(k + α·acc)^−β over one plane.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void Normalise(float* x, float* acc, float* b, int plane, float k, float alpha, float beta, bool threeQuarters)
        {
            var vk = new Vector<float>(k);
            var va = new Vector<float>(alpha);
            int vw = Vector<float>.Count;
            int i = 0;
            for (; i <= plane - vw; i += vw)
            {
                Vector<float> z = vk + va * Vector.Max(Vector.LoadUnsafe(ref acc[i]), Vector<float>.Zero);
                Vector<float> a = Vector.Max(Vector.LoadUnsafe(ref x[i]), Vector<float>.Zero);
                (a * LrnKernel.NegPow(z, beta, threeQuarters)).StoreUnsafe(ref b[i]);
            }
            for (; i < plane; i++)
            {
                b[i] = MathF.Max(x[i], 0f) * MathF.Pow(k + alpha * MathF.Max(acc[i], 0f), -beta);
            }
        }

        static void Pool(float* b, float* y, int w, int ho, int wo, int window, int stride)
        {
            for (int oy = 0; oy < ho; oy++)
            {
                for (int ox = 0; ox < wo; ox++)
                {
                    float* start = b + oy * stride * w + ox * stride;
                    float m = float.NegativeInfinity;
                    for (int dy = 0; dy < window; dy++)
                    {
                        float* row = start + dy * w;
                        for (int dx = 0; dx < window; dx++)
                        {
                            m = MathF.Max(m, row[dx]);
                        }
                    }
                    y[oy * wo + ox] = m;
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static void AddReluSquares(float* acc, float* x, int len, float sign)
        {
            var vs = new Vector<float>(sign);
            int vw = Vector<float>.Count;
            int i = 0;
            for (; i <= len - vw; i += vw)
            {
                Vector<float> a = Vector.Max(Vector.LoadUnsafe(ref x[i]), Vector<float>.Zero);
                (Vector.LoadUnsafe(ref acc[i]) + vs * a * a).StoreUnsafe(ref acc[i]);
            }
            for (; i < len; i++)
            {
                float a = MathF.Max(x[i], 0f);
                acc[i] += sign * a * a;
            }
        }

        public static void Backward(Tensor x, Tensor gy, Tensor gx, LrnParams p, int window, int stride)
        {
            long[] s = x.shape;
            int n = (int)s[0], c = (int)s[1], h = (int)s[2], w = (int)s[3];
            int ho = (h - window) / stride + 1, wo = (w - window) / stride + 1;
            float* px = Ptr(x), pgy = Ptr(gy), pgx = Ptr(gx);
            int ring = p.Size + 1;
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = LrnKernel.Threads }, img =>
            {
                int plane = h * w;
                int size = c * plane;
                float[] sArr = ArrayPool<float>.Shared.Rent(ring * plane);
                float[] bArr = ArrayPool<float>.Shared.Rent(ring * plane);
                float[] gbArr = ArrayPool<float>.Shared.Rent(ring * plane);
                float[] squaresArr = ArrayPool<float>.Shared.Rent(plane);
                float[] ratiosArr = ArrayPool<float>.Shared.Rent(plane);
                try
                {
                    fixed (float* sc = sArr, b = bArr, gb = gbArr, squares = squaresArr, ratios = ratiosArr)
                    {
                        BackwardImage(px + (long)img * size, pgy + (long)img * c * ho * wo, pgx + (long)img * size,
                            c, h, w, ho, wo, p, window, stride, ring, sc, b, gb, squares, ratios);
                    }
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(sArr);
                    ArrayPool<float>.Shared.Return(bArr);
                    ArrayPool<float>.Shared.Return(gbArr);
                    ArrayPool<float>.Shared.Return(squaresArr);
                    ArrayPool<float>.Shared.Return(ratiosArr);
                }
            });
        }

        /// <summary>
        /// One image. Channel c's input gradient needs Σ ∂b·b/s over channels [c − hi, c + lo], so the recomputation of s, b
        /// and ∂b runs lo channels ahead of the gradient, and only a ring of <paramref name="ring"/> = n + 1 channel planes of
        /// each is kept: the scratch stays in L2 (all C planes of three arrays spilled it: 3 × 1.2 MB for conv1 of `paper`).
        /// </summary>
        static void BackwardImage(float* x, float* gy, float* gx, int channels, int h, int w, int ho, int wo, LrnParams p,
            int window, int stride, int ring, float* s, float* b, float* gb, float* squares, float* ratios)
        {
            int plane = h * w;
            int lo = p.Size / 2, hi = (p.Size - 1) / 2;
            float k = (float)p.K, alpha = (float)p.Alpha, beta = (float)p.Beta;
            bool threeQuarters = beta == 0.75f;
            int vw = Vector<float>.Count;
            var vk = new Vector<float>(k);
            var va = new Vector<float>(alpha);
            long Slot(int ch) => (long)(ch % ring) * plane;

            // Recompute s and b of channel `next` (the forward's rolling Σ a² in `squares`) and route ∂y to ∂b.
            int next = 0;
            void Produce()
            {
                int ch = next++;
                long off = Slot(ch);
                float* xc = x + (long)ch * plane;
                int i = 0;
                for (; i <= plane - vw; i += vw)
                {
                    Vector<float> z = vk + va * Vector.Max(Vector.LoadUnsafe(ref squares[i]), Vector<float>.Zero);
                    z.StoreUnsafe(ref s[off + i]);
                    Vector<float> a = Vector.Max(Vector.LoadUnsafe(ref xc[i]), Vector<float>.Zero);
                    (a * LrnKernel.NegPow(z, beta, threeQuarters)).StoreUnsafe(ref b[off + i]);
                }
                for (; i < plane; i++)
                {
                    float z = k + alpha * MathF.Max(squares[i], 0f);
                    s[off + i] = z;
                    b[off + i] = MathF.Max(xc[i], 0f) * MathF.Pow(z, -beta);
                }
                if (ch + hi + 1 < channels)
                {
                    AddReluSquares(squares, x + (long)(ch + hi + 1) * plane, plane, 1f);
                }
                if (ch - lo >= 0)
                {
                    AddReluSquares(squares, x + (long)(ch - lo) * plane, plane, -1f);
                }
                Unpool(b + off, gb + off, gy + (long)ch * ho * wo, plane, w, ho, wo, window, stride);
            }
            void AddRatio(int ch, float sign) => LrnKernel.AddRatio(ratios, gb + Slot(ch), b + Slot(ch), s + Slot(ch), plane, sign);

            new Span<float>(squares, plane).Clear();
            for (int j = 0; j <= Math.Min(hi, channels - 1); j++)
            {
                AddReluSquares(squares, x + (long)j * plane, plane, 1f);
            }
            new Span<float>(ratios, plane).Clear();
            for (int j = 0; j <= Math.Min(lo, channels - 1); j++)
            {
                Produce();
                AddRatio(j, 1f);
            }

            // LRN backward with the rolling Σ ∂b·b/s over [c − hi, c + lo], then ReLU's mask.
            var vc = new Vector<float>(2f * alpha * beta);
            for (int ch = 0; ch < channels; ch++)
            {
                long off = Slot(ch);
                float* xc = x + (long)ch * plane;
                float* gxc = gx + (long)ch * plane;
                int i = 0;
                for (; i <= plane - vw; i += vw)
                {
                    Vector<float> xv = Vector.LoadUnsafe(ref xc[i]);
                    Vector<float> a = Vector.Max(xv, Vector<float>.Zero);
                    Vector<float> ga = Vector.LoadUnsafe(ref gb[off + i]) * LrnKernel.NegPow(Vector.LoadUnsafe(ref s[off + i]), beta, threeQuarters)
                        - vc * a * Vector.LoadUnsafe(ref ratios[i]);
                    Vector.ConditionalSelect(Vector.GreaterThan(xv, Vector<float>.Zero), ga, Vector<float>.Zero).StoreUnsafe(ref gxc[i]);
                }
                for (; i < plane; i++)
                {
                    float a = MathF.Max(xc[i], 0f);
                    float ga = gb[off + i] * MathF.Pow(s[off + i], -beta) - 2f * alpha * beta * a * ratios[i];
                    gxc[i] = xc[i] > 0f ? ga : 0f;
                }
                if (ch + lo + 1 < channels)
                {
                    Produce();
                    AddRatio(ch + lo + 1, 1f);
                }
                if (ch - hi >= 0)
                {
                    AddRatio(ch - hi, -1f);   // its slot is reused only lo + hi + 1 = n channels later, and the ring holds n + 1
                }
            }
        }

        /// <summary>∂b = 0, then each ∂y[o] added at its window's first maximum in row-major order (libtorch's rule).</summary>
        static void Unpool(float* b, float* gb, float* gy, int plane, int w, int ho, int wo, int window, int stride)
        {
            new Span<float>(gb, plane).Clear();
            for (int oy = 0; oy < ho; oy++)
            {
                for (int ox = 0; ox < wo; ox++)
                {
                    int start = oy * stride * w + ox * stride;
                    int best = start;
                    float m = b[start];
                    for (int dy = 0; dy < window; dy++)
                    {
                        int row = start + dy * w;
                        for (int dx = 0; dx < window; dx++)
                        {
                            if (b[row + dx] > m)
                            {
                                m = b[row + dx];
                                best = row + dx;
                            }
                        }
                    }
                    gb[best] += gy[oy * wo + ox];
                }
            }
        }
    }
}
