// §6.1's efficiency claim at ImageNet's size: Hamming search over 1.28 M packed codes against exact Euclidean search
// over 1.28 M × 4096 fc7 floats (21 GB), on this machine. Both are passes over memory (or disk), so each is reported
// in GB/s beside the machine's own read bandwidth, measured here by summing a 1 GiB array on the same threads.
// The codes are random bits and the features random floats (synthetic: a search's cost does not depend on the values).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Threading.Tasks;
using AlexNet.Analysis;
using static TorchSharp.torch;

namespace AlexNet.Performance;

/// <summary>
/// One search method's cost: per query alone (latency) and with queries one per thread (throughput).
/// </summary>
/// <param name="ResidentBytes">The process's resident memory right after the measurement (a memory-mapped feature
/// file's pages count).</param>
public sealed record SearchCost(string Method, long DatabaseBytes, int Threads,
    double MillisecondsPerQuery, double QueriesPerSecond,
    double GigabytesPerSecond, long ResidentBytes = 0);

public sealed record CodesBenchResult(string Cpu, int Count, int Dimensions, bool Synthetic, double ReadBandwidthGBps,
    SearchCost[] Costs);

public static class CodesBenchmark
{
    /// <summary>
    /// The machine's read bandwidth: a 1 GiB array summed by <paramref name="threads"/> threads, best of 5 passes.
    /// </summary>
    public static double ReadBandwidth(int threads, long bytes = 1L << 30)
    {
        var data = new ulong[bytes / 8];
        new Random(1).NextBytes(MemoryMarshal.AsBytes(data.AsSpan()));
        double best = 0;
        for (int pass = 0; pass < 5; pass++)
        {
            var clock = Stopwatch.StartNew();
            long share = data.LongLength / threads;
            var sums = new ulong[threads];
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                ReadOnlySpan<Vector256<ulong>> v =
                    MemoryMarshal.Cast<ulong, Vector256<ulong>>(data.AsSpan((int)(t * share), (int)share));
                Vector256<ulong> a = default, b = default;
                for (int i = 0; i + 1 < v.Length; i += 2)
                {
                    a += v[i];
                    b += v[i + 1];
                }
                sums[t] = Vector256.Sum(a + b);
            });
            best = Math.Max(best, bytes / clock.Elapsed.TotalSeconds / 1e9);
            GC.KeepAlive(sums);
        }
        return best;
    }

    /// <summary> Hamming search over <paramref name="count"/> random <paramref name="bits"/>-bit codes: <paramref
    /// name="queries"/> queries alone on 1 and on <paramref name="threads"/> threads (the database split), and all of
    /// them one per thread.
    /// </summary>
    public static List<SearchCost> Hamming(int count, int bits, int queries, int threads, int k = 10)
    {
        var rng = new Random(7);
        var codes = new ulong[(long)count * bits / 64];
        rng.NextBytes(MemoryMarshal.AsBytes(codes.AsSpan()));
        var index = new HammingIndex(codes, bits);
        ulong[][] q = Enumerable.Range(0, queries).Select(i => index.Code(rng.Next(count)).ToArray()).ToArray();
        long bytes = (long)count * bits / 8;
        index.Nearest(q[0], k, threads);   // warm-up: pages touched, code jitted
        var costs = new List<SearchCost>();
        foreach (int t in new[] { 1, threads }.Distinct())
        {
            var ms = new List<double>();
            foreach (ulong[] query in q)
            {
                var clock = Stopwatch.StartNew();
                index.Nearest(query, k, t);
                ms.Add(clock.Elapsed.TotalMilliseconds);
            }
            double m = Benchmark.Median(ms);
            costs.Add(new SearchCost($"hamming {bits}-bit, one query at a time", bytes, t, m, 1000 / m,
                bytes / m / 1e6, Resident()));
        }
        var all = Stopwatch.StartNew();
        Parallel.ForEach(q, new ParallelOptions
        {
            MaxDegreeOfParallelism = threads,
        }, query => index.Nearest(query, k, 1));
        double perQuery = all.Elapsed.TotalMilliseconds / queries;
        costs.Add(new SearchCost($"hamming {bits}-bit, queries one per thread", bytes, threads,
            perQuery * threads, 1000 / perQuery,
            bytes / perQuery / 1e6, Resident()));
        return costs;
    }

    /// <summary> Exact Euclidean search (Retrieval.Nearest) over a feature file: one pass for a single query, and one
    /// for a batch of
    /// <paramref name="batch"/> queries sharing the pass.
    /// </summary>
    public static List<SearchCost> Exact(string featureFile, int threads, int batch = 64, int k = 10)
    {
        using FeatureMatrix features = Retrieval.Open(featureFile);
        long bytes = features.Count * features.Dimensions * 4L;
        var costs = new List<SearchCost>();
        Compute.UseThreads(threads);
        foreach (int n in new[] { 1, batch })
        {
            using Tensor q = randn(n, features.Dimensions);
            var clock = Stopwatch.StartNew();
            Retrieval.Nearest(q, features, k);
            double ms = clock.Elapsed.TotalMilliseconds;
            costs.Add(new SearchCost($"exact fc7, {n} {(n == 1 ? "query" : "queries")} per pass", bytes, threads,
                ms / n, n * 1000 / ms, bytes / ms / 1e6,
                Resident()));
        }
        return costs;
    }

    private static long Resident()
    {
        using var self = Process.GetCurrentProcess();
        return self.WorkingSet64;
    }

    /// <summary>
    /// Writes <paramref name="count"/> × <paramref name="dimensions"/> random floats as a feature file (synthetic fc7).
    /// </summary>
    public static void WriteSyntheticFeatures(string path, int count, int dimensions)
    {
        AtomicFile.Write(path, f =>
        {
            var rng = new Random(3);
            var row = new float[dimensions * 1024];
            for (int start = 0; start < count; start += 1024)
            {
                int n = Math.Min(1024, count - start);
                for (int i = 0; i < n * dimensions; i++)
                {
                    row[i] = (float)rng.NextDouble();
                }
                f.Write(MemoryMarshal.AsBytes(row.AsSpan(0, n * dimensions)));
            }
        });
        Json.Write(path + ".json",
            new FeatureHeader(Retrieval.FeatureFormat, "fc7 (synthetic)", count, dimensions, "", ""));
    }
}
