// conv1 of the small nets on grayscale images (Figure 2's first layer scaled to Fashion-MNIST's 28 px): a k×k,
// stride-1 convolution of a one-channel image. libtorch runs it as a matrix product whose inner dimension is only
// C·k² = 25, far from what its kernels are built for: at batch 128 its weight gradient took ~20 ms (4 GMAC/s,
// against 35–40 for conv2–conv5). Computed directly, four output channels at a time with their rows in registers,
// it takes ~8 ms forward (libtorch ~9) and ~12 ms for the weight and bias gradients (libtorch ~20). With three
// channels libtorch's product is long enough and faster than this kernel (measured), so RGB stays with libtorch.
// conv1's input is the data, which needs no gradient, so only the weight and bias gradients are computed; an
// input that requires one goes to libtorch.
//
// Shapes: x = N×C×H×W, w = O×C×k×k, y = N×O×Ho×Wo with Ho = H + 2p − k + 1 (stride 1).
//   y[n,o,i,j] = b[o] + Σ_{c,u,v} w[o,c,u,v]·xp[n,c,i+u,j+v]      (xp: x zero-padded by p)
//   ∂w[o,c,u,v] = Σ_{n,i,j} ∂y[n,o,i,j]·xp[n,c,i+u,j+v];   ∂b[o] = Σ_{n,i,j} ∂y[n,o,i,j]
using System;
using System.Buffers;
using System.Collections.Generic;
using System.Numerics;
using System.Threading.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Model;

public static class DirectConv
{
    /// <summary>Grayscale only: with three channels libtorch's own convolution measured faster than this kernel.</summary>
    public const int MaxInputChannels = 1;

    public static bool Supports(Tensor x, ConvLayer layer) =>
        x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32 && x.dim() == 4 && x.shape[1] <= MaxInputChannels
        && layer.Stride == 1 && layer.Groups == 1 && !x.requires_grad;

    /// <summary>The convolution, with the weight and bias gradients when they are wanted.</summary>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor bias, int padding)
    {
        if (!torch.is_grad_enabled() || !(weight.requires_grad || bias.requires_grad))
        {
            using Tensor c = x.contiguous();
            using Tensor w = weight.detach().contiguous();
            using Tensor b = bias.detach().contiguous();
            return Kernel.Forward(c, w, b, padding);
        }
        return ConvFunction.apply(x, weight, bias, padding);
    }

    /// <summary>libtorch's convolution of the same layer, the reference the kernel is tested against.</summary>
    public static Tensor Reference(Tensor x, Tensor weight, Tensor bias, int padding) =>
        nn.functional.conv2d(x, weight, bias, padding: new long[] { padding, padding });

    sealed class ConvFunction : autograd.SingleTensorFunction<ConvFunction>
    {
        public override string Name => "AlexNetDirectConv";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            Tensor x = ((Tensor)vars[0]).contiguous();
            int padding = (int)vars[3];
            using Tensor w = ((Tensor)vars[1]).detach().contiguous();
            using Tensor b = ((Tensor)vars[2]).detach().contiguous();
            ctx.save_for_backward(new List<Tensor> { x });
            ctx.save_data("padding", padding);
            ctx.save_data("kernel", (int)w.shape[2]);
            return Kernel.Forward(x, w, b, padding);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            int padding = (int)ctx.get_data("padding"), k = (int)ctx.get_data("kernel");
            List<Tensor> saved = ctx.get_saved_variables();
            using Tensor gy = gradOutput.contiguous();
            (Tensor gw, Tensor gb) = Kernel.WeightGradient(saved[0], gy, k, padding);
            foreach (Tensor t in saved)
            {
                t.Dispose();
            }
            gradOutput.Dispose();
            return new List<Tensor> { null!, gw, gb, null! };
        }
    }

    internal static unsafe class Kernel
    {
        static int Vw => Vector<float>.Count;

        /// <summary>Padded geometry of one image: rows of `Stride` floats, output rows rounded up to whole vectors.</summary>
        readonly record struct Geometry(int C, int H, int W, int K, int P, int Ho, int Wo, int Wv, int Stride, int Hp)
        {
            public static Geometry Of(long[] xShape, int k, int p)
            {
                int c = (int)xShape[1], h = (int)xShape[2], w = (int)xShape[3];
                int ho = h + 2 * p - k + 1, wo = w + 2 * p - k + 1;
                if (ho < 1 || wo < 1)
                {
                    throw new ArgumentException($"a {k}×{k} kernel with padding {p} does not fit a {h}×{w} input.");
                }
                int wv = (wo + Vector<float>.Count - 1) / Vector<float>.Count * Vector<float>.Count;
                return new Geometry(c, h, w, k, p, ho, wo, wv, wv + Vector<float>.Count + k - 1, h + 2 * p);
            }

            public int PaddedImage => C * Hp * Stride;

            /// <summary>One output row of one channel in the forward's scratch, whole vector pairs.</summary>
            public int RowScratch => Wv + Vector<float>.Count;
        }

        /// <summary>xp: the image zero-padded by p, each row `Stride` floats so that every vector load of a window stays inside.</summary>
        static void PadImage(float* x, float* xp, Geometry g)
        {
            new Span<float>(xp, g.PaddedImage).Clear();
            for (int c = 0; c < g.C; c++)
            {
                for (int i = 0; i < g.H; i++)
                {
                    new ReadOnlySpan<float>(x + ((long)c * g.H + i) * g.W, g.W).CopyTo(new Span<float>(xp + ((long)c * g.Hp + i + g.P) * g.Stride + g.P, g.W));
                }
            }
        }

        public static Tensor Forward(Tensor x, Tensor weight, Tensor bias, int padding)
        {
            long[] shape = x.shape;
            int n = (int)shape[0], o = (int)weight.shape[0], k = (int)weight.shape[2];
            var g = Geometry.Of(shape, k, padding);
            Tensor y = empty(n, o, g.Ho, g.Wo);
            float* px = LrnKernel.Ptr(x), pw = LrnKernel.Ptr(weight), pb = LrnKernel.Ptr(bias), py = LrnKernel.Ptr(y);
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = LrnKernel.Threads }, img =>
            {
                float[] padded = ArrayPool<float>.Shared.Rent(g.PaddedImage);
                float[] row = ArrayPool<float>.Shared.Rent(4 * g.RowScratch);
                try
                {
                    fixed (float* xp = padded, r = row)
                    {
                        PadImage(px + (long)img * g.C * g.H * g.W, xp, g);
                        ForwardImage(xp, pw, pb, py + (long)img * o * g.Ho * g.Wo, o, g, r);
                    }
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(padded);
                    ArrayPool<float>.Shared.Return(row);
                }
            });
            return y;
        }

        /// <summary>
        /// Each output row, for four output channels at once: 4 × 2 vectors of sums stay in registers across all C·k² taps,
        /// so each input vector loaded serves four channels (one channel per load ran no faster than libtorch).
        /// </summary>
        static void ForwardImage(float* xp, float* w, float* b, float* y, int outChannels, Geometry g, float* row)
        {
            int taps = g.C * g.K * g.K;
            int oc = 0;
            for (; oc + 4 <= outChannels; oc += 4)
            {
                float* w0 = w + (long)oc * taps, w1 = w0 + taps, w2 = w1 + taps, w3 = w2 + taps;
                for (int i = 0; i < g.Ho; i++)
                {
                    for (int j = 0; j < g.Wv; j += 2 * Vw)
                    {
                        var a0 = new Vector<float>(b[oc]);
                        var a1 = new Vector<float>(b[oc + 1]);
                        var a2 = new Vector<float>(b[oc + 2]);
                        var a3 = new Vector<float>(b[oc + 3]);
                        Vector<float> c0 = a0, c1 = a1, c2 = a2, c3 = a3;
                        int t = 0;
                        for (int c = 0; c < g.C; c++)
                        {
                            for (int u = 0; u < g.K; u++)
                            {
                                float* src = xp + ((long)c * g.Hp + i + u) * g.Stride + j;
                                for (int v = 0; v < g.K; v++, t++)
                                {
                                    Vector<float> lo = Vector.LoadUnsafe(ref src[v]), hi = Vector.LoadUnsafe(ref src[v + Vw]);
                                    var k0 = new Vector<float>(w0[t]);
                                    var k1 = new Vector<float>(w1[t]);
                                    var k2 = new Vector<float>(w2[t]);
                                    var k3 = new Vector<float>(w3[t]);
                                    a0 += k0 * lo;
                                    c0 += k0 * hi;
                                    a1 += k1 * lo;
                                    c1 += k1 * hi;
                                    a2 += k2 * lo;
                                    c2 += k2 * hi;
                                    a3 += k3 * lo;
                                    c3 += k3 * hi;
                                }
                            }
                        }
                        // The second vector may lie past the row's end (scratch, padded): `row` holds 2 × Vw per channel.
                        a0.StoreUnsafe(ref row[j]);
                        c0.StoreUnsafe(ref row[j + Vw]);
                        a1.StoreUnsafe(ref row[g.RowScratch + j]);
                        c1.StoreUnsafe(ref row[g.RowScratch + j + Vw]);
                        a2.StoreUnsafe(ref row[2 * g.RowScratch + j]);
                        c2.StoreUnsafe(ref row[2 * g.RowScratch + j + Vw]);
                        a3.StoreUnsafe(ref row[3 * g.RowScratch + j]);
                        c3.StoreUnsafe(ref row[3 * g.RowScratch + j + Vw]);
                    }
                    for (int q = 0; q < 4; q++)
                    {
                        new ReadOnlySpan<float>(row + q * g.RowScratch, g.Wo).CopyTo(new Span<float>(y + ((long)(oc + q) * g.Ho + i) * g.Wo, g.Wo));
                    }
                }
            }
            for (; oc < outChannels; oc++)
            {
                float* wo = w + (long)oc * taps;
                for (int i = 0; i < g.Ho; i++)
                {
                    for (int j = 0; j < g.Wv; j += Vw)
                    {
                        var a0 = new Vector<float>(b[oc]);
                        int t = 0;
                        for (int c = 0; c < g.C; c++)
                        {
                            for (int u = 0; u < g.K; u++)
                            {
                                float* src = xp + ((long)c * g.Hp + i + u) * g.Stride + j;
                                for (int v = 0; v < g.K; v++, t++)
                                {
                                    a0 += new Vector<float>(wo[t]) * Vector.LoadUnsafe(ref src[v]);
                                }
                            }
                        }
                        a0.StoreUnsafe(ref row[j]);
                    }
                    new ReadOnlySpan<float>(row, g.Wo).CopyTo(new Span<float>(y + ((long)oc * g.Ho + i) * g.Wo, g.Wo));
                }
            }
        }

        /// <summary>
        /// ∂w and ∂b summed over the batch. The images are cut into as many fixed runs as threads, each run's sums kept
        /// apart and added in run order, so the result does not depend on which thread finished first: the same
        /// seed gives the same weights (resuming a run relies on it).
        /// </summary>
        public static (Tensor Weight, Tensor Bias) WeightGradient(Tensor x, Tensor gy, int k, int padding)
        {
            long[] shape = x.shape;
            int n = (int)shape[0], o = (int)gy.shape[1];
            var g = Geometry.Of(shape, k, padding);
            int taps = g.C * k * k;
            float* px = LrnKernel.Ptr(x), pgy = LrnKernel.Ptr(gy);
            int runs = Math.Max(1, Math.Min(LrnKernel.Threads, n));
            var partW = new double[runs][];
            var partB = new double[runs][];
            Parallel.For(0, runs, new ParallelOptions { MaxDegreeOfParallelism = LrnKernel.Threads }, run =>
            {
                int first = (int)((long)n * run / runs), last = (int)((long)n * (run + 1) / runs);
                float[] padded = ArrayPool<float>.Shared.Rent(g.PaddedImage);
                float[] grads = ArrayPool<float>.Shared.Rent(g.Ho * g.Wv);
                var sw = new double[o * taps];
                var sb = new double[o];
                try
                {
                    fixed (float* xp = padded, gp = grads)
                    {
                        new Span<float>(gp, g.Ho * g.Wv).Clear();
                        for (int img = first; img < last; img++)
                        {
                            PadImage(px + (long)img * g.C * g.H * g.W, xp, g);
                            for (int oc = 0; oc < o; oc++)
                            {
                                float* src = pgy + ((long)img * o + oc) * g.Ho * g.Wo;
                                for (int i = 0; i < g.Ho; i++)
                                {
                                    new ReadOnlySpan<float>(src + (long)i * g.Wo, g.Wo).CopyTo(new Span<float>(gp + i * g.Wv, g.Wo));
                                }
                                GradientPlane(xp, gp, g, sw.AsSpan(oc * taps, taps), ref sb[oc]);
                            }
                        }
                    }
                }
                finally
                {
                    ArrayPool<float>.Shared.Return(padded);
                    ArrayPool<float>.Shared.Return(grads);
                }
                partW[run] = sw;
                partB[run] = sb;
            });
            var gw = new float[o * taps];
            var gb = new float[o];
            for (int i = 0; i < gw.Length; i++)
            {
                double s = 0;
                for (int run = 0; run < runs; run++)
                {
                    s += partW[run][i];
                }
                gw[i] = (float)s;
            }
            for (int i = 0; i < o; i++)
            {
                double s = 0;
                for (int run = 0; run < runs; run++)
                {
                    s += partB[run][i];
                }
                gb[i] = (float)s;
            }
            return (tensor(gw).reshape(o, g.C, k, k), tensor(gb));
        }

        /// <summary>One image and output channel: Σ ∂y·xp for each tap, and Σ ∂y. ∂y's rows are padded with zeros to whole vectors.</summary>
        static void GradientPlane(float* xp, float* gp, Geometry g, Span<double> sw, ref double sb)
        {
            Vector<float> total = Vector<float>.Zero;
            for (int i = 0; i < g.Ho; i++)
            {
                for (int j = 0; j < g.Wv; j += Vw)
                {
                    total += Vector.LoadUnsafe(ref gp[i * g.Wv + j]);
                }
            }
            sb += Vector.Sum(total);
            int t = 0;
            for (int c = 0; c < g.C; c++)
            {
                for (int u = 0; u < g.K; u++)
                {
                    for (int v = 0; v < g.K; v++, t++)
                    {
                        Vector<float> acc = Vector<float>.Zero;
                        for (int i = 0; i < g.Ho; i++)
                        {
                            float* src = xp + ((long)c * g.Hp + i + u) * g.Stride + v;
                            float* d = gp + i * g.Wv;
                            for (int j = 0; j < g.Wv; j += Vw)
                            {
                                acc += Vector.LoadUnsafe(ref d[j]) * Vector.LoadUnsafe(ref src[j]);
                            }
                        }
                        sw[t] += Vector.Sum(acc);
                    }
                }
            }
        }
    }
}
