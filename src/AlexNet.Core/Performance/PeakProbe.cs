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

public static class PeakProbe
{
    /// <summary>
    /// Best of three runs of ~<paramref name="seconds"/> each: GFLOP/s (an FMA counts 2 FLOPs per lane).
    /// </summary>
    public static PeakRate Measure(int threads, double seconds = 0.25)
    {
        string vectors = Avx512F.IsSupported ? "AVX-512" : Fma.IsSupported ? "AVX2+FMA" : "scalar-width Vector<T>";
        double best = 0;
        for (int round = 0; round < 3; round++)
        {
            long iterations = 1 << 20;
            double rate;
            while (true)
            {
                (double elapsed, double flops) = Run(threads, iterations);
                rate = flops / elapsed / 1e9;
                if (elapsed >= seconds)
                {
                    break;
                }
                iterations *= 2;
            }
            best = Math.Max(best, rate);
        }
        return new PeakRate(best, vectors, threads);
    }

    private static (double Seconds, double Flops) Run(int threads, long iterations)
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
                sink[id] = Avx512F.IsSupported ? Loop512(iterations) : Loop256(iterations);
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
        int lanes = Avx512F.IsSupported ? 16 : 8;
        GC.KeepAlive(sink);
        return (elapsed, 2.0 * 12 * lanes * iterations * threads);
    }

    // Loop256 and Loop512 are twins on purpose: twelve independent FMA chains at one vector width each, written out so
    // that the JIT keeps them in registers (a loop over an array of accumulators would measure loads and stores).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static double Loop256(long iterations)
    {
        Vector256<float> m = Vector256.Create(0.999999f), a = Vector256.Create(1e-7f);
        Vector256<float> x0 = Vector256.Create(1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;
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
        Vector512<float> x0 = Vector512.Create(1f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0, x8 = x0, x9 = x0, x10 = x0, x11 = x0;
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
