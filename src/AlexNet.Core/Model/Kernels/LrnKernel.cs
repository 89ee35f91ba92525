// §3.3 Local response normalisation across channels, the one CPU kernel (the layer alone and the fused
// ReLU→LRN→pool stage both run it):
//   b[c] = a[c] / s[c]^β,   s[c] = k + α Σ_{j ∈ W(c)} a[j]²,   W(c) = [c − ⌊n/2⌋, c + ⌊(n−1)/2⌋] ∩ c's tower
// (a tower: all C channels, or with §3.2's two towers the half that holds c)
// with the paper's α (libtorch, Caffe and ONNX divide it by n). For odd n the window is centred, as the paper
// writes it; for even n it is PyTorch's (one more channel below than above). Its gradient:
//   ∂a[c] = ∂b[c]·s[c]^−β − 2αβ·a[c]·Σ_{j : c ∈ W(j)} ∂b[j]·b[j]/s[j]
//
// Why a hand-written kernel: libtorch computes LRN through avg_pool3d with a slow backward, about half of a
// training step of the paper's net (docs/performance.md). Here each direction is one pass over an image's
// channels with a rolling sum over the window, vectorised along H×W; z^−¾ takes no division or square root.
// The backward recomputes s instead of saving it: one tensor less to write and read.
//
// Shapes: N = batch, C = channels, P = H×W (one plane); an image is C contiguous planes.
using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AlexNet.Model.Kernels;

/// <summary>
/// Where the forward pass puts each channel's b: straight into the output, or into scratch that a pooling pass reads.
/// </summary>
internal unsafe interface IPlaneSink
{
    /// <summary>Where channel <paramref name="c"/>'s b goes.</summary>
    float* Target(int c);

    /// <summary>Channel <paramref name="c"/>'s b is written at <paramref name="b"/>.</summary>
    void Written(int c, float* b);
}

/// <summary>
/// Where the backward pass reads ∂L/∂b of a channel: the output gradient, or the pooled gradient scattered back.
/// </summary>
internal unsafe interface IPlaneGradient
{
    /// <summary>∂L/∂b of channel <paramref name="c"/>, one plane.</summary>
    float* Gradient(int c);
}

internal static unsafe class LrnKernel
{
    /// <summary>Scratch planes the forward pass needs per image.</summary>
    public const int ForwardScratchPlanes = 2;

    /// <summary>Scratch planes the backward pass needs per image: two rings of n + 1 planes and three more.</summary>
    public static int BackwardScratchPlanes(LrnParams p) => 2 * (p.Size + 1) + 3;

    /// <summary>
    /// One image: for each channel c in order, b = f(x_c)·s^−β is written where <paramref name="sink"/> says and
    /// handed back to it. <paramref name="scratch"/> has <see cref="ForwardScratchPlanes"/> planes. With
    /// <see cref="LrnParams.Towers"/> &gt; 1 each tower's channels are normalised among themselves (§3.2: a GPU
    /// normalises its own kernel maps), as if the window met zeros at the towers' border.
    /// </summary>
    public static void ForwardImage<TAct,
        TSink>(float* x, int channels, int plane, LrnParams p, Scratch scratch, ref TSink sink)
        where TAct : IActivation
        where TSink : IPlaneSink
    {
        int perTower = channels / p.Towers;
        for (int from = 0; from < channels; from += perTower)
        {
            ForwardTower<TAct, TSink>(x, from, from + perTower, plane, p, scratch, ref sink);
        }
    }

    private static void ForwardTower<TAct,
        TSink>(float* x, int from, int to, int plane, LrnParams p, Scratch scratch, ref TSink sink)
        where TAct : IActivation
        where TSink : IPlaneSink
    {
        float* squares = scratch[0], zero = scratch[1];
        new Span<float>(squares, scratch.Slot).Clear();
        int lo = p.Size / 2, hi = (p.Size - 1) / 2;
        var terms = new Terms(p);
        float* Channel(int c) => c >= from && c < to ? x + (long)c * plane : zero;
        for (int j = from; j <= Math.Min(from + hi, to - 1); j++)
        {
            Roll<TAct>(squares, Channel(j), zero, plane);
        }
        int vw = Vector<float>.Count;
        for (int c = from; c < to; c++)
        {
            float* xc = Channel(c), entering = Channel(c + hi + 1), leaving = Channel(c - lo);
            float* b = sink.Target(c);
            for (int i = 0; i < plane; i += vw)
            {
                Vector<float> a = TAct.Forward(Planes.Load(xc, i, plane));
                Vector<float> sq = Vector.LoadUnsafe(ref squares[i]);
                Planes.Store(b, i, plane, a * NegPow(terms.Scale(sq), terms.Beta, terms.ThreeQuarters));
                Vector<float> e = TAct.Forward(Planes.Load(entering, i, plane)),
                    l = TAct.Forward(Planes.Load(leaving, i, plane));
                (sq + e * e - l * l).StoreUnsafe(ref squares[i]);
            }
            sink.Written(c, b);
        }
    }

    /// <summary>
    /// One image: ∂x from ∂b (read through <paramref name="grad"/>) and x. Per channel j, t_j = ∂b·s^−β and
    /// r_j = ∂b·a·s^−β/s (= ∂b·b/s), with s recomputed from the rolling Σ a². Channel c needs Σ r_j over
    /// j ∈ [c − hi, c + lo], so t and r run lo + 1 channels ahead of it in rings of n + 1 planes that stay in L2.
    /// <paramref name="scratch"/> has <see cref="BackwardScratchPlanes"/> planes.
    /// </summary>
    public static void BackwardImage<TAct,
        TGrad>(float* x, float* gx, int channels, int plane, LrnParams p, Scratch scratch, ref TGrad grad)
        where TAct : IActivation
        where TGrad : IPlaneGradient
    {
        int perTower = channels / p.Towers;
        for (int from = 0; from < channels; from += perTower)
        {
            BackwardTower<TAct, TGrad>(x, gx, from, from + perTower, plane, p, scratch, ref grad);
        }
    }

    private static void BackwardTower<TAct,
        TGrad>(float* x, float* gx, int from, int to, int plane, LrnParams p, Scratch scratch, ref TGrad grad)
        where TAct : IActivation
        where TGrad : IPlaneGradient
    {
        int lo = p.Size / 2, hi = (p.Size - 1) / 2;
        int ring = p.Size + 1;
        float* squares = scratch[2 * ring], ratios = scratch[2 * ring + 1], zero = scratch[2 * ring + 2];
        float* T(int c) => scratch[c % ring];
        float* R(int c) => scratch[ring + c % ring];
        new Span<float>(squares, scratch.Slot).Clear();
        new Span<float>(ratios, scratch.Slot).Clear();
        float* Channel(int c) => c >= from && c < to ? x + (long)c * plane : zero;
        var terms = new Terms(p);
        int vw = Vector<float>.Count;

        // t and r of channel j; the rolling Σ a² moves on to channel j + 1.
        void Produce(int j, ref TGrad g)
        {
            float* d = g.Gradient(j);
            float* xj = Channel(j), tj = T(j), rj = R(j);
            float* entering = Channel(j + hi + 1), leaving = Channel(j - lo);
            for (int i = 0; i < plane; i += vw)
            {
                Vector<float> sq = Vector.LoadUnsafe(ref squares[i]);
                (Vector<float> pow, Vector<float> powOverS) = terms.Powers(terms.Scale(sq));
                Vector<float> dv = Planes.Load(d, i, plane);
                (dv * pow).StoreUnsafe(ref tj[i]);
                (dv * TAct.Forward(Planes.Load(xj, i, plane)) * powOverS).StoreUnsafe(ref rj[i]);
                Vector<float> e = TAct.Forward(Planes.Load(entering, i, plane)),
                    l = TAct.Forward(Planes.Load(leaving, i, plane));
                (sq + e * e - l * l).StoreUnsafe(ref squares[i]);
            }
        }

        for (int j = from; j <= Math.Min(from + hi, to - 1); j++)
        {
            Roll<TAct>(squares, Channel(j), zero, plane);
        }
        for (int j = from; j <= Math.Min(from + lo, to - 1); j++)
        {
            Produce(j, ref grad);
            Planes.Add(ratios, R(j), plane);
        }

        // ∂a = t − 2αβ·a·Σ r, then the activation's derivative; the Σ r window moves on by one channel in the same
        // pass.
        var twoAlphaBeta = new Vector<float>((float)(2 * p.SumScale * p.Beta));
        for (int c = from; c < to; c++)
        {
            int entering = c + lo + 1, leaving = c - hi;
            if (entering < to)
            {
                Produce(entering, ref grad);
            }
            float* rin = entering < to ? R(entering) : zero;
            float* rout = leaving >= from ? R(leaving) : zero;
            float* xc = x + (long)c * plane, tc = T(c), gxc = gx + (long)c * plane;
            for (int i = 0; i < plane; i += vw)
            {
                Vector<float> xv = Planes.Load(xc, i, plane);
                Vector<float> sum = Vector.LoadUnsafe(ref ratios[i]);
                Vector<float> ga = Vector.LoadUnsafe(ref tc[i]) - twoAlphaBeta * TAct.Forward(xv) * sum;
                Planes.Store(gxc, i, plane, TAct.Backward(xv, ga));
                (sum + Vector.LoadUnsafe(ref rin[i]) - Vector.LoadUnsafe(ref rout[i])).StoreUnsafe(ref ratios[i]);
            }
        }
    }

    /// <summary>
    /// acc += f(entering)² − f(leaving)² over one plane (the window's first channels, before a pass's loop).
    /// </summary>
    private static void Roll<TAct>(float* acc, float* entering, float* leaving, int plane)
        where TAct : IActivation
    {
        int vw = Vector<float>.Count;
        for (int i = 0; i < plane; i += vw)
        {
            Vector<float> e = TAct.Forward(Planes.Load(entering, i, plane)),
                l = TAct.Forward(Planes.Load(leaving, i, plane));
            (Vector.LoadUnsafe(ref acc[i]) + e * e - l * l).StoreUnsafe(ref acc[i]);
        }
    }

    /// <summary>The §3.3 constants as vectors.</summary>
    private readonly struct Terms
    {
        private readonly Vector<float> _k, _alpha;

        public float Beta { get; }
        public bool ThreeQuarters { get; }

        public Terms(LrnParams p)
        {
            _k = new Vector<float>((float)p.K);
            _alpha = new Vector<float>((float)p.SumScale);
            Beta = (float)p.Beta;
            ThreeQuarters = Beta == 0.75f;
        }

        /// <summary>
        /// s = k + α Σ a²; max(Σ, 0) because the rolling sum may dip a rounding error below zero when large values
        /// leave.
        /// </summary>
        public Vector<float> Scale(Vector<float> squares) => _k + _alpha * Vector.Max(squares, Vector<float>.Zero);

        /// <summary>(s^−β, s^−β/s): the forward's divisor and the factor of the cross-channel gradient term.</summary>
        public (Vector<float> Pow, Vector<float> PowOverS) Powers(Vector<float> s)
        {
            if (ThreeQuarters)
            {
                (Vector<float> pow, Vector<float> inverse) = NegThreeQuarters(s);   // no division
                return (pow, pow * inverse);
            }
            Vector<float> general = NegPowGeneral(s, Beta);
            return (general, general / s);
        }
    }

    /// <summary>z^−β.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> NegPow(Vector<float> z, float beta, bool threeQuarters) =>
        threeQuarters ? NegThreeQuarters(z).Power : NegPowGeneral(z, beta);

    /// <summary>
    /// The paper's β = ¾: with r = z^−½ and q = r^−½ (each a hardware reciprocal square root plus one Newton step,
    /// ~23 bits), z^−¾ = r·r·q and 1/z = r·r, with no division and no square root (the slow units here).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector<float> Power, Vector<float> Inverse) NegThreeQuarters(Vector<float> z)
    {
        Vector<float> r = Rsqrt(z);
        Vector<float> inverse = r * r;
        return (inverse * Rsqrt(r), inverse);
    }

    /// <summary>1/√z to about 23 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<float> Rsqrt(Vector<float> z)
    {
        if (Avx.IsSupported && Vector<float>.Count == 8)
        {
            Vector<float> y = Avx.ReciprocalSqrt(z.AsVector256()).AsVector();
            return y * (new Vector<float>(1.5f) - new Vector<float>(0.5f) * z * y * y);   // Newton: y(3 − zy²)/2
        }
        return Vector<float>.One / Vector.SquareRoot(z);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Vector<float> NegPowGeneral(Vector<float> z, float beta)
    {
        Span<float> lanes = stackalloc float[Vector<float>.Count];
        z.CopyTo(lanes);
        for (int i = 0; i < lanes.Length; i++)
        {
            lanes[i] = MathF.Pow(lanes[i], -beta);
        }
        return new Vector<float>(lanes);
    }
}
