// §2's rescale, "such that the shorter side was of length 256", as an antialiased bicubic filter: Keys'
// cubic with a = −0.5 whose support widens with the reduction, so every input pixel counts (PIL's BICUBIC
// and torchvision's resize(antialias=True), the preprocessing ImageNet models are trained and evaluated with).
// Separable: the vertical pass runs along whole rows of RGBA bytes on vectors, the horizontal pass takes
// each pixel's four channels as one 128-bit vector. Output: planar RGB bytes.
using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace AlexNet.Data;

internal static unsafe class Resampler
{
    /// <summary>Filter taps of each output position along one axis, normalised to sum 1.</summary>
    private sealed class Taps
    {
        public required int[] Start { get; init; }
        public required int[] Count { get; init; }
        public required float[] Weights { get; init; }   // output o's taps at [o·Width, o·Width + Count[o])
        public required int Width { get; init; }
    }

    /// <summary>Keys' cubic convolution kernel, a = −0.5 (Catmull–Rom).</summary>
    private static double Cubic(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        return x < 1 ? ((a + 2) * x - (a + 3)) * x * x + 1
            : x < 2 ? (((x - 5) * x + 8) * x - 4) * a
            : 0;
    }

    /// <summary>PIL's taps for <paramref name="input"/> → <paramref name="output"/> samples.</summary>
    private static Taps For(int input, int output)
    {
        double scale = (double)input / output;
        double filterScale = Math.Max(scale, 1);
        double support = 2 * filterScale;
        int width = (int)Math.Ceiling(support) * 2 + 1;
        var start = new int[output];
        var count = new int[output];
        var weights = new float[output * width];
        var w = new double[width];
        for (int o = 0; o < output; o++)
        {
            double centre = (o + 0.5) * scale;
            int lo = Math.Max(0, (int)(centre - support + 0.5));
            int hi = Math.Min(input, (int)(centre + support + 0.5));
            double sum = 0;
            for (int i = lo; i < hi; i++)
            {
                w[i - lo] = Cubic((i - centre + 0.5) / filterScale);
                sum += w[i - lo];
            }
            start[o] = lo;
            count[o] = hi - lo;
            for (int i = 0; i < hi - lo; i++)
            {
                weights[o * width + i] = (float)(w[i] / sum);
            }
        }
        return new Taps { Start = start, Count = count, Weights = weights, Width = width };
    }

    /// <summary>
    /// The <paramref name="side"/>² square at (<paramref name="x0"/>, <paramref name="y0"/>) of an RGBA8888 image
    /// (<paramref name="stride"/> bytes a row) rescaled to <paramref name="size"/>², as planar R, G, B bytes.
    /// </summary>
    public static byte[] SquareToPlanar(ReadOnlySpan<byte> rgba, int stride, int x0, int y0, int side, int size)
    {
        Taps taps = For(side, size);
        int rowFloats = side * 4;
        // size rows × side pixels × RGBA; pooled, as a fresh array this large would come from the large-object heap
        // every image
        float[] vertical = System.Buffers.ArrayPool<float>.Shared.Rent(size * rowFloats);
        Array.Clear(vertical, 0, size * rowFloats);
        try
        {
            return Resample(rgba, stride, x0, y0, size, taps, rowFloats, vertical);
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(vertical);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot from the first image: no unoptimised first tier
    private static byte[] Resample(ReadOnlySpan<byte> rgba, int stride, int x0, int y0, int size, Taps taps,
        int rowFloats, float[] vertical)
    {
        fixed (byte* src = rgba)
        fixed (float* v = vertical)
        {
            // Vertical: each output row is a weighted sum of input rows, along whole rows.
            for (int oy = 0; oy < size; oy++)
            {
                float* acc = v + (long)oy * rowFloats;
                for (int k = 0; k < taps.Count[oy]; k++)
                {
                    byte* line = src + (long)(y0 + taps.Start[oy] + k) * stride + x0 * 4;
                    AddScaled(acc, line, rowFloats, taps.Weights[oy * taps.Width + k]);
                }
            }
            // Horizontal: each output pixel a weighted sum of four-channel pixels; then round into the planes.
            var result = new byte[3 * size * size];
            int plane = size * size;
            fixed (int* start = taps.Start, count = taps.Count)
            fixed (float* weights = taps.Weights)
            fixed (byte* output = result)
            {
                for (int oy = 0; oy < size; oy++)
                {
                    float* line = v + (long)oy * rowFloats;
                    byte* r = output + oy * size, g = r + plane, b = g + plane;
                    for (int ox = 0; ox < size; ox++)
                    {
                        float* first = line + start[ox] * 4;
                        float* w = weights + ox * taps.Width;
                        int n = count[ox];
                        // two chains hide the add latency
                        Vector128<float> even = Vector128<float>.Zero, odd = Vector128<float>.Zero;
                        int k = 0;
                        for (; k + 1 < n; k += 2)
                        {
                            even += Vector128.Load(first + k * 4) * w[k];
                            odd += Vector128.Load(first + k * 4 + 4) * w[k + 1];
                        }
                        if (k < n)
                        {
                            even += Vector128.Load(first + k * 4) * w[k];
                        }
                        Vector128<int> rounded = Vector128.Clamp(Vector128.ConvertToInt32(Vector128.Round(even + odd)),
                            Vector128<int>.Zero, Vector128.Create(255));
                        r[ox] = (byte)rounded.GetElement(0);
                        g[ox] = (byte)rounded.GetElement(1);
                        b[ox] = (byte)rounded.GetElement(2);
                    }
                }
            }
            return result;
        }
    }

    /// <summary>acc[i] += w · bytes[i] over one row, on vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void AddScaled(float* acc, byte* bytes, int n, float w)
    {
        int vb = Vector<byte>.Count, vf = Vector<float>.Count;
        var weight = new Vector<float>(w);
        int i = 0;
        for (; i + vb <= n; i += vb)
        {
            var b = Vector.LoadUnsafe(ref bytes[i]);
            Vector.Widen(b, out Vector<ushort> lo, out Vector<ushort> hi);
            Widen(lo, acc + i, weight);
            Widen(hi, acc + i + 2 * vf, weight);
        }
        for (; i < n; i++)
        {
            acc[i] += w * bytes[i];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Widen(Vector<ushort> u, float* acc, Vector<float> weight)
    {
        Vector.Widen(u, out Vector<uint> a, out Vector<uint> b);
        int vf = Vector<float>.Count;
        (Vector.LoadUnsafe(ref acc[0]) + Vector.ConvertToSingle(a) * weight).StoreUnsafe(ref acc[0]);
        (Vector.LoadUnsafe(ref acc[vf]) + Vector.ConvertToSingle(b) * weight).StoreUnsafe(ref acc[vf]);
    }
}
