// The machine's own float32 peak, the yardstick `bench` divides by: fused multiply-adds on the widest vectors
// the CPU has (AVX-512 where present, else AVX2), twelve independent accumulators per thread so the FMA
// units never wait on a result (latency 4 × 2 ports needs ≥ 8 in flight), on the bench's threads at once.
using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Threading;

namespace AlexNet.Performance;

public sealed record PeakRate(double Gflops, string Vectors, int Threads);

/// <summary>
/// The int8 yardsticks, in GOP/s (a u8·s8 multiply-add counts 2): VNNI's dot product (vpdpbusd) on 256-bit vectors, the
/// widest .NET 10 exposes (0 without AVX-VNNI), and oneDNN's own u8·s8 GEMM on large matrices, which uses the 512-bit
/// form where the CPU has AVX-512 VNNI.
/// </summary>
public sealed record Int8PeakRate(double VnniYmmGops, double OneDnnGemmGops, int Threads);

public static class PeakProbe
{
    /// <summary>
    /// Best of three runs of ~<paramref name="seconds"/> each: GFLOP/s (an FMA counts 2 FLOPs per lane).
    /// </summary>
    public static PeakRate Measure(int threads, double seconds = 0.25)
    {
        string vectors = Avx512F.IsSupported ? "AVX-512" : Fma.IsSupported ? "AVX2+FMA" : "scalar-width Vector<T>";
        double best = Best(threads, seconds, Avx512F.IsSupported ? Loop512 : Loop256,
            2.0 * 12 * (Avx512F.IsSupported ? 16 : 8));
        return new PeakRate(best, vectors, threads);
    }

    /// <summary>
    /// Best of three runs of <paramref name="loop"/> on every thread, each lengthened until it lasts <paramref
    /// name="seconds"/>: G-operations per second.
    /// </summary>
    private static double Best(int threads, double seconds, Func<long, double> loop, double perIteration)
    {
        double best = 0;
        for (int round = 0; round < 3; round++)
        {
            long iterations = 1 << 20;
            while (true)
            {
                (double elapsed, double ops) = Run(threads, iterations, loop, perIteration);
                if (elapsed >= seconds)
                {
                    best = Math.Max(best, ops / elapsed / 1e9);
                    break;
                }
                iterations *= 2;
            }
        }
        return best;
    }

    /// <summary>The int8 rates, best of three each (oneDNN's GEMM: 2048³, its threads set to <paramref
    /// name="threads"/>).</summary>
    public static unsafe Int8PeakRate MeasureInt8(int threads, double seconds = 0.25)
    {
        double vnni = AvxVnni.IsSupported ? Best(threads, seconds, LoopVnni, 2.0 * 12 * 8 * 4) : 0;
        double gemm = 0;
        if (AlexNet.Model.Kernels.OneDnnNet.Unavailable is null)
        {
            const int n = 2048;
            byte* a = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(n * n, 64);
            sbyte* b = (sbyte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(n * n, 64);
            int* c = (int*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)n * n * 4, 64);
            new Span<byte>(a, n * n).Fill(3);
            new Span<byte>(b, n * n).Fill(5);
            AlexNet.Model.Kernels.Dnnl.UseThreads(threads);
            for (int round = 0; round < 4; round++)
            {
                var clock = Stopwatch.StartNew();
                AlexNet.Model.Kernels.Dnnl.Gemm(n, n, n, a, b, c);
                double elapsed = clock.Elapsed.TotalSeconds;
                // the first call makes the kernels
                gemm = round == 0 ? 0 : Math.Max(gemm, 2.0 * n * n * n / elapsed / 1e9);
            }
            System.Runtime.InteropServices.NativeMemory.AlignedFree(a);
            System.Runtime.InteropServices.NativeMemory.AlignedFree(b);
            System.Runtime.InteropServices.NativeMemory.AlignedFree(c);
        }
        return new Int8PeakRate(vnni, gemm, threads);
    }

    /// <summary>Runs <paramref name="loop"/> on every thread at once; operations = iterations × threads ×
    /// perIteration.</summary>
    private static (double Seconds, double Ops) Run(int threads, long iterations,
        Func<long, double> loop, double perIteration)
    {
        var start = new Barrier(threads + 1);
        var workers = new Thread[threads];
        double[] sink = new double[threads];
        for (int t = 0; t < threads; t++)
        {
            int id = t;
            workers[t] = new Thread(() =>
            {
                start.SignalAndWait();
                sink[id] = loop(iterations);
            });
            workers[t].Start();
        }
        start.SignalAndWait();
        var clock = Stopwatch.StartNew();
        foreach (Thread w in workers)
        {
            w.Join();
        }
        double elapsed = clock.Elapsed.TotalSeconds;
        GC.KeepAlive(sink);
        return (elapsed, perIteration * iterations * threads);
    }

    /// <summary>Twelve independent vpdpbusd chains (each lane: four u8·s8 products added to an int32).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static double LoopVnni(long iterations)
    {
        Vector256<byte> u = Vector256.Create((byte)1);
        Vector256<sbyte> s = Vector256.Create((sbyte)1);
        Vector256<int> x0 = Vector256<int>.Zero, x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0,
            x8 = x0, x9 = x0, x10 = x0, x11 = x0;
        for (long i = 0; i < iterations; i++)
        {
            x0 = AvxVnni.MultiplyWideningAndAdd(x0, u, s);
            x1 = AvxVnni.MultiplyWideningAndAdd(x1, u, s);
            x2 = AvxVnni.MultiplyWideningAndAdd(x2, u, s);
            x3 = AvxVnni.MultiplyWideningAndAdd(x3, u, s);
            x4 = AvxVnni.MultiplyWideningAndAdd(x4, u, s);
            x5 = AvxVnni.MultiplyWideningAndAdd(x5, u, s);
            x6 = AvxVnni.MultiplyWideningAndAdd(x6, u, s);
            x7 = AvxVnni.MultiplyWideningAndAdd(x7, u, s);
            x8 = AvxVnni.MultiplyWideningAndAdd(x8, u, s);
            x9 = AvxVnni.MultiplyWideningAndAdd(x9, u, s);
            x10 = AvxVnni.MultiplyWideningAndAdd(x10, u, s);
            x11 = AvxVnni.MultiplyWideningAndAdd(x11, u, s);
        }
        return Vector256.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }

    // Loop256, Loop512 and LoopVnni are triplets on purpose: twelve independent chains (FMA at one vector width each,
    // or VNNI's dot product), written out so that the JIT keeps them in registers (a loop over an array of accumulators
    // would measure loads and stores).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static double Loop256(long iterations)
    {
        Vector256<float> m = Vector256.Create(0.999999f), a = Vector256.Create(1e-7f);
        Vector256<float> x0 = Vector256.Create(1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0,
            x8 = x0, x9 = x0, x10 = x0, x11 = x0;
        for (long i = 0; i < iterations; i++)
        {
            x0 = Vector256.FusedMultiplyAdd(x0, m, a);
            x1 = Vector256.FusedMultiplyAdd(x1, m, a);
            x2 = Vector256.FusedMultiplyAdd(x2, m, a);
            x3 = Vector256.FusedMultiplyAdd(x3, m, a);
            x4 = Vector256.FusedMultiplyAdd(x4, m, a);
            x5 = Vector256.FusedMultiplyAdd(x5, m, a);
            x6 = Vector256.FusedMultiplyAdd(x6, m, a);
            x7 = Vector256.FusedMultiplyAdd(x7, m, a);
            x8 = Vector256.FusedMultiplyAdd(x8, m, a);
            x9 = Vector256.FusedMultiplyAdd(x9, m, a);
            x10 = Vector256.FusedMultiplyAdd(x10, m, a);
            x11 = Vector256.FusedMultiplyAdd(x11, m, a);
        }
        return Vector256.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static double Loop512(long iterations)
    {
        Vector512<float> m = Vector512.Create(0.999999f), a = Vector512.Create(1e-7f);
        Vector512<float> x0 = Vector512.Create(1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0,
            x8 = x0, x9 = x0, x10 = x0, x11 = x0;
        for (long i = 0; i < iterations; i++)
        {
            x0 = Vector512.FusedMultiplyAdd(x0, m, a);
            x1 = Vector512.FusedMultiplyAdd(x1, m, a);
            x2 = Vector512.FusedMultiplyAdd(x2, m, a);
            x3 = Vector512.FusedMultiplyAdd(x3, m, a);
            x4 = Vector512.FusedMultiplyAdd(x4, m, a);
            x5 = Vector512.FusedMultiplyAdd(x5, m, a);
            x6 = Vector512.FusedMultiplyAdd(x6, m, a);
            x7 = Vector512.FusedMultiplyAdd(x7, m, a);
            x8 = Vector512.FusedMultiplyAdd(x8, m, a);
            x9 = Vector512.FusedMultiplyAdd(x9, m, a);
            x10 = Vector512.FusedMultiplyAdd(x10, m, a);
            x11 = Vector512.FusedMultiplyAdd(x11, m, a);
        }
        return Vector512.Sum(x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + x8 + x9 + x10 + x11);
    }
}
