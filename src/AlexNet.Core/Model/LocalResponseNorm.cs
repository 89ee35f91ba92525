// §3.3 Local response normalisation across channels:
//   b[c] = a[c] / (k + α Σ_{j ∈ W(c)} a[j]²)^β,   W(c) = [c − n/2, c + (n−1)/2] ∩ [0, C)
// with the paper's α (libtorch's local_response_norm would need α·n). Its gradient:
//   ∂L/∂a[c] = g[c]·s[c]^−β − 2αβ·a[c]·Σ_{j : c ∈ W(j)} g[j]·b[j]/s[j],   s = k + α Σ a²
//
// Why a hand-written kernel: libtorch computes LRN through avg_pool3d with a slow backward, which took
// about half of every training step of the paper's net (docs/performance.md). This is one pass over the
// tensor each way: a rolling sum over the channel window, vectorised along H×W, z^−¾ by two square roots.
//
// Shapes: N = batch, C = channels, P = H×W; tensors are contiguous N×C×H×W float32.
using System;
using System.Collections.Generic;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Threading.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Model;

/// <summary>The §3.3 layer. Float32 CPU tensors take the fused kernel; anything else (CUDA, float64) takes libtorch's.</summary>
public sealed class LocalResponseNorm : nn.Module<Tensor, Tensor>
{
    readonly LrnParams _p;

    public LocalResponseNorm(LrnParams p) : base(nameof(LocalResponseNorm))
    {
        if (p.Size < 1 || p.K < 0 || p.Alpha < 0)
        {
            throw new ArgumentException($"LRN needs n ≥ 1, k ≥ 0, α ≥ 0; got n={p.Size}, k={p.K}, α={p.Alpha}.");
        }
        _p = p;
    }

    public LrnParams Params => _p;

    /// <summary>When false every call takes libtorch's own LRN: the reference the fused kernel is tested against.</summary>
    public static bool UseFusedKernel { get; set; } = true;

    public override Tensor forward(Tensor input) => Apply(input, _p, UseFusedKernel);

    public static Tensor Apply(Tensor input, LrnParams p, bool fused = true)
    {
        if (!fused || !LrnKernel.Supports(input))
        {
            return nn.functional.local_response_norm(input, p.Size, p.TorchAlpha, p.Beta, p.K);
        }
        if (!torch.is_grad_enabled() || !input.requires_grad)
        {
            using Tensor contiguous = input.contiguous();
            Tensor output = empty_like(contiguous);
            LrnKernel.Forward(contiguous, output, scale: null, p);
            return output;
        }
        return LrnFunction.apply(input, p);
    }

    sealed class LrnFunction : autograd.SingleTensorFunction<LrnFunction>
    {
        public override string Name => "AlexNetLocalResponseNorm";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var p = (LrnParams)vars[1];
            Tensor input = ((Tensor)vars[0]).contiguous();
            Tensor output = empty_like(input);
            Tensor scale = empty_like(input);
            LrnKernel.Forward(input, output, scale, p);
            ctx.save_for_backward(new List<Tensor> { input, output, scale });
            ctx.save_data("p", p);
            return output;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var p = (LrnParams)ctx.get_data("p");
            List<Tensor> saved = ctx.get_saved_variables();
            using Tensor g = gradOutput.contiguous();
            Tensor gradInput = empty_like(saved[0]);
            LrnKernel.Backward(saved[0], saved[1], saved[2], g, gradInput, p);
            foreach (Tensor t in saved)
            {
                t.Dispose();
            }
            // TorchSharp hands the incoming gradient over in a fresh wrapper that nothing reads after this call.
            gradOutput.Dispose();
            return new List<Tensor> { gradInput, null! };
        }
    }
}

/// <summary>The fused forward and backward passes over raw float32 memory.</summary>
internal static unsafe class LrnKernel
{
    /// <summary>
    /// Spatial positions one work item covers. Whole planes (up to 4096 floats) stream contiguously, which
    /// the prefetchers follow; 256-float pieces of each plane measured 3× slower (a new page every 1 KB).
    /// </summary>
    const int Chunk = 4096;

    public static int Threads { get; set; } = Environment.ProcessorCount;

    public static bool Supports(Tensor t) =>
        t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32 && t.dim() == 4;

    public static void Forward(Tensor input, Tensor output, Tensor? scale, LrnParams p)
    {
        (int n, int c, int plane) = Dims(input);
        float* a = Ptr(input);
        float* b = Ptr(output);
        float* s = scale is null ? null : Ptr(scale);
        int chunks = (plane + Chunk - 1) / Chunk;
        float k = (float)p.K, alpha = (float)p.Alpha, beta = (float)p.Beta;
        int lo = p.Size / 2, hi = (p.Size - 1) / 2;
        Parallel.For(0, n * chunks, new ParallelOptions { MaxDegreeOfParallelism = Threads }, item =>
        {
            long image = (long)(item / chunks) * c * plane;
            int start = item % chunks * Chunk;
            int len = Math.Min(Chunk, plane - start);
            ForwardChunk(a + image + start, b + image + start, s == null ? null : s + image + start,
                c, plane, len, k, alpha, beta, lo, hi);
        });
    }

    static void ForwardChunk(float* a, float* b, float* s, int channels, int plane, int len,
        float k, float alpha, float beta, int lo, int hi)
    {
        float* acc = stackalloc float[Chunk];
        new Span<float>(acc, len).Clear();
        for (int j = 0; j <= Math.Min(hi, channels - 1); j++)
        {
            AddSquares(acc, a + (long)j * plane, len, 1f);
        }
        var vk = new Vector<float>(k);
        var valpha = new Vector<float>(alpha);
        bool threeQuarters = beta == 0.75f;
        int w = Vector<float>.Count;
        for (int ch = 0; ch < channels; ch++)
        {
            float* ac = a + (long)ch * plane;
            float* bc = b + (long)ch * plane;
            float* sc = s == null ? null : s + (long)ch * plane;
            int i = 0;
            for (; i <= len - w; i += w)
            {
                // max(acc, 0): the rolling sum may dip a rounding error below zero when large values leave.
                Vector<float> z = vk + valpha * Vector.Max(Vector.LoadUnsafe(ref acc[i]), Vector<float>.Zero);
                Vector<float> x = Vector.LoadUnsafe(ref ac[i]);
                (x * NegPow(z, beta, threeQuarters)).StoreUnsafe(ref bc[i]);
                if (sc != null)
                {
                    z.StoreUnsafe(ref sc[i]);
                }
            }
            for (; i < len; i++)
            {
                float z = k + alpha * MathF.Max(acc[i], 0f);
                bc[i] = ac[i] * MathF.Pow(z, -beta);
                if (sc != null)
                {
                    sc[i] = z;
                }
            }
            if (ch + hi + 1 < channels)
            {
                AddSquares(acc, a + (long)(ch + hi + 1) * plane, len, 1f);
            }
            if (ch - lo >= 0)
            {
                AddSquares(acc, a + (long)(ch - lo) * plane, len, -1f);
            }
        }
    }

    public static void Backward(Tensor input, Tensor output, Tensor scale, Tensor gradOutput, Tensor gradInput, LrnParams p)
    {
        (int n, int c, int plane) = Dims(input);
        float* a = Ptr(input);
        float* b = Ptr(output);
        float* s = Ptr(scale);
        float* g = Ptr(gradOutput);
        float* ga = Ptr(gradInput);
        int chunks = (plane + Chunk - 1) / Chunk;
        float alpha = (float)p.Alpha, beta = (float)p.Beta;
        int lo = p.Size / 2, hi = (p.Size - 1) / 2;
        Parallel.For(0, n * chunks, new ParallelOptions { MaxDegreeOfParallelism = Threads }, item =>
        {
            long image = (long)(item / chunks) * c * plane;
            int start = item % chunks * Chunk;
            int len = Math.Min(Chunk, plane - start);
            long o = image + start;
            BackwardChunk(a + o, b + o, s + o, g + o, ga + o, c, plane, len, alpha, beta, lo, hi);
        });
    }

    /// <summary>
    /// c ∈ W(j) ⇔ c − hi ≤ j ≤ c + lo, so the sum Σ g[j]·b[j]/s[j] rolls over [c − hi, c + lo].
    /// </summary>
    static void BackwardChunk(float* a, float* b, float* s, float* g, float* ga, int channels, int plane, int len,
        float alpha, float beta, int lo, int hi)
    {
        float* acc = stackalloc float[Chunk];
        new Span<float>(acc, len).Clear();
        for (int j = 0; j <= Math.Min(lo, channels - 1); j++)
        {
            AddRatio(acc, g + (long)j * plane, b + (long)j * plane, s + (long)j * plane, len, 1f);
        }
        float twoAlphaBeta = 2f * alpha * beta;
        var vc = new Vector<float>(twoAlphaBeta);
        bool threeQuarters = beta == 0.75f;
        int w = Vector<float>.Count;
        for (int ch = 0; ch < channels; ch++)
        {
            long off = (long)ch * plane;
            int i = 0;
            for (; i <= len - w; i += w)
            {
                Vector<float> z = Vector.LoadUnsafe(ref s[off + i]);
                Vector<float> gv = Vector.LoadUnsafe(ref g[off + i]);
                Vector<float> av = Vector.LoadUnsafe(ref a[off + i]);
                Vector<float> r = Vector.LoadUnsafe(ref acc[i]);
                (gv * NegPow(z, beta, threeQuarters) - vc * av * r).StoreUnsafe(ref ga[off + i]);
            }
            for (; i < len; i++)
            {
                ga[off + i] = g[off + i] * MathF.Pow(s[off + i], -beta) - twoAlphaBeta * a[off + i] * acc[i];
            }
            if (ch + lo + 1 < channels)
            {
                long j = (long)(ch + lo + 1) * plane;
                AddRatio(acc, g + j, b + j, s + j, len, 1f);
            }
            if (ch - hi >= 0)
            {
                long j = (long)(ch - hi) * plane;
                AddRatio(acc, g + j, b + j, s + j, len, -1f);
            }
        }
    }

    /// <summary>acc += sign·x² over one channel's chunk.</summary>
    static void AddSquares(float* acc, float* x, int len, float sign)
    {
        var vs = new Vector<float>(sign);
        int w = Vector<float>.Count;
        int i = 0;
        for (; i <= len - w; i += w)
        {
            Vector<float> v = Vector.LoadUnsafe(ref x[i]);
            (Vector.LoadUnsafe(ref acc[i]) + vs * v * v).StoreUnsafe(ref acc[i]);
        }
        for (; i < len; i++)
        {
            acc[i] += sign * x[i] * x[i];
        }
    }

    /// <summary>acc += sign·g·b/s over one channel's chunk.</summary>
    static void AddRatio(float* acc, float* g, float* b, float* s, int len, float sign)
    {
        var vs = new Vector<float>(sign);
        int w = Vector<float>.Count;
        int i = 0;
        for (; i <= len - w; i += w)
        {
            Vector<float> inv = Rsqrt(Vector.LoadUnsafe(ref s[i]));
            Vector<float> r = Vector.LoadUnsafe(ref g[i]) * Vector.LoadUnsafe(ref b[i]) * inv * inv;
            (Vector.LoadUnsafe(ref acc[i]) + vs * r).StoreUnsafe(ref acc[i]);
        }
        for (; i < len; i++)
        {
            acc[i] += sign * g[i] * b[i] / s[i];
        }
    }

    /// <summary>
    /// z^−β. For the paper's β = ¾: with r = z^−½ and q = r^−½ (each a hardware reciprocal square root plus one
    /// Newton step, ~23 bits), z^−¾ = r·r·q — no division and no square root, which are the slow units here.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector<float> NegPow(Vector<float> z, float beta, bool threeQuarters)
    {
        return threeQuarters ? NegThreeQuarters(z).Power : NegPowGeneral(z, beta);
    }

    /// <summary>z^−¾ as in <see cref="NegPow"/>, and 1/z = r·r from the same reciprocal square root.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static (Vector<float> Power, Vector<float> Inverse) NegThreeQuarters(Vector<float> z)
    {
        Vector<float> r = Rsqrt(z);
        Vector<float> inverse = r * r;
        return (inverse * Rsqrt(r), inverse);
    }

    /// <summary>1/√z to about 23 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector<float> Rsqrt(Vector<float> z)
    {
        if (Avx.IsSupported && Vector<float>.Count == 8)
        {
            Vector<float> y = Avx.ReciprocalSqrt(z.AsVector256()).AsVector();
            return y * (new Vector<float>(1.5f) - new Vector<float>(0.5f) * z * y * y);   // Newton: y(3 − zy²)/2
        }
        return Vector<float>.One / Vector.SquareRoot(z);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static Vector<float> NegPowGeneral(Vector<float> z, float beta)
    {
        Span<float> lanes = stackalloc float[Vector<float>.Count];
        z.CopyTo(lanes);
        for (int i = 0; i < lanes.Length; i++)
        {
            lanes[i] = MathF.Pow(lanes[i], -beta);
        }
        return new Vector<float>(lanes);
    }

    /// <summary>The first float of a contiguous CPU tensor; libtorch keeps the storage alive while the tensor lives.</summary>
    internal static float* Ptr(Tensor t) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    static (int N, int C, int Plane) Dims(Tensor t)
    {
        long[] shape = t.shape;
        return ((int)shape[0], (int)shape[1], checked((int)(shape[2] * shape[3])));
    }
}
