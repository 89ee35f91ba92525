// §6.1's suggestion: "it could be made efficient by training an auto-encoder to compress these vectors to short
// binary codes." As Krizhevsky & Hinton (2011, "Using very deep autoencoders for content-based image retrieval")
// did, the code layer is logistic and Gaussian noise is added to its input during training, so the only way to
// carry information through the noise is to drive each unit to 0 or 1; at test time the units are thresholded at ½.
// One encoding layer (fc7 → B) and one linear decoding layer (B → fc7), trained on standardised features with
// §5's update (PaperSgd). The baseline an engineer tries first is here too: the signs of B random projections (LSH).
// Codes are packed 64 bits to a word; Hamming search is popcount over XOR, top-k by a bounded heap.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Numerics;
using AlexNet.Training;
using static TorchSharp.torch;

namespace AlexNet.Analysis;

/// <summary>A map from D-dimensional features to B-bit codes: standardise, then project (W, bias), then threshold at 0.</summary>
/// <param name="Kind">"autoencoder" or "lsh".</param>
public sealed record BinaryCoder(string Kind, int Dimensions, int Bits, float[] Mean, float[] Std, float[] Weights, float[] Bias)
{
    public int Words => Bits / 64;

    /// <summary>Packed codes of N rows of features (N×D): N × Words ulongs, bit b of a row set where its unit b is on.</summary>
    public ulong[] Encode(ReadOnlySpan<float> features)
    {
        if (features.Length % Dimensions != 0)
        {
            throw new ArgumentException($"the features are not rows of {Dimensions} values: this coder was trained on {Dimensions}-d features of another net or layer.");
        }
        int n = features.Length / Dimensions;
        var codes = new ulong[n * Words];
        using var scope = NewDisposeScope();
        using Tensor x = tensor(features.ToArray(), new long[] { n, Dimensions });
        Tensor z = ((x - tensor(Mean)) / tensor(Std)).matmul(tensor(Weights, new long[] { Dimensions, Bits })) + tensor(Bias);
        bool[] on = (z > 0).data<bool>().ToArray();
        for (int i = 0; i < n; i++)
        {
            for (int b = 0; b < Bits; b++)
            {
                if (on[i * Bits + b])
                {
                    codes[i * Words + b / 64] |= 1UL << (b % 64);
                }
            }
        }
        return codes;
    }
}

public static class BinaryCodes
{
    static (float[] Mean, float[] Std) Standardisation(float[] features, int d)
    {
        int n = features.Length / d;
        var mean = new double[d];
        var sq = new double[d];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < d; j++)
            {
                double v = features[i * d + j];
                mean[j] += v;
                sq[j] += v * v;
            }
        }
        float[] m = mean.Select(s => (float)(s / n)).ToArray();
        float[] s = sq.Select((q, j) => (float)Math.Sqrt(Math.Max(q / n - m[j] * (double)m[j], 0) + 1e-6)).ToArray();
        return (m, s);
    }

    static void CheckBits(int bits)
    {
        if (bits < 64 || bits % 64 != 0 || bits > 4096)
        {
            throw new ArgumentException($"--bits {bits}: give a multiple of 64 (64, 128, 256 …).");
        }
    }

    /// <summary>The baseline: the signs of <paramref name="bits"/> Gaussian random projections of the standardised features.</summary>
    public static BinaryCoder RandomProjections(float[] features, int dimensions, int bits, int seed)
    {
        CheckBits(bits);
        (float[] mean, float[] std) = Standardisation(features, dimensions);
        using var g = new Generator((ulong)seed);
        using Tensor w = randn(new long[] { dimensions, bits }, generator: g);
        return new BinaryCoder("lsh", dimensions, bits, mean, std, w.data<float>().ToArray(), new float[bits]);
    }

    /// <summary>
    /// The auto-encoder: code = σ(x̂W + b + noise), x̂ ≈ code·V + c, squared error, §5's update with momentum 0.9. The noise
    /// (σ = <paramref name="noise"/>) is what makes the code binary; thresholding σ(·) at ½ is the sign of xW + b.
    /// </summary>
    public static BinaryCoder TrainAutoencoder(float[] features, int dimensions, int bits, int seed, int epochs = 20, int batch = 256,
        double learningRate = 0.01, double noise = 4, Action<int, double>? progress = null)
    {
        CheckBits(bits);
        (float[] mean, float[] std) = Standardisation(features, dimensions);
        int n = features.Length / dimensions;
        using var g = new Generator((ulong)seed);
        using Tensor all = (tensor(features, new long[] { n, dimensions }) - tensor(mean)) / tensor(std);
        var w = new TorchSharp.Modules.Parameter(randn(new long[] { dimensions, bits }, generator: g) * (1.0 / Math.Sqrt(dimensions)));
        var b = new TorchSharp.Modules.Parameter(zeros(bits));
        var v = new TorchSharp.Modules.Parameter(randn(new long[] { bits, dimensions }, generator: g) * (1.0 / Math.Sqrt(bits)));
        var c = new TorchSharp.Modules.Parameter(zeros(dimensions));
        using var sgd = new PaperSgd(new[] { w, b, v, c }, learningRate, 0.9, 0.0);
        var order = new Data.Rng((ulong)seed + 17);
        int[] index = Enumerable.Range(0, n).ToArray();
        for (int epoch = 1; epoch <= epochs; epoch++)
        {
            for (int i = n - 1; i > 0; i--)   // Fisher–Yates
            {
                int j = order.Next(i + 1);
                (index[i], index[j]) = (index[j], index[i]);
            }
            double sum = 0;
            int batches = 0;
            for (int start = 0; start + batch <= n; start += batch)
            {
                using var scope = NewDisposeScope();
                Tensor x = all.index_select(0, tensor(index.AsSpan(start, batch).ToArray().Select(i => (long)i).ToArray()));
                Tensor code = (x.matmul(w) + b + randn(new long[] { batch, bits }, generator: g) * noise).sigmoid();
                Tensor loss = (code.matmul(v) + c - x).pow(2).sum(1).mean();
                sgd.ZeroGrad();
                loss.backward();
                sgd.Step();
                sum += loss.item<float>();
                batches++;
            }
            progress?.Invoke(epoch, sum / Math.Max(1, batches));
        }
        var coder = new BinaryCoder("autoencoder", dimensions, bits, mean, std, w.detach().data<float>().ToArray(), b.detach().data<float>().ToArray());
        foreach (var p in new[] { w, b, v, c })
        {
            p.Dispose();
        }
        return coder;
    }

    /// <summary>
    /// The <paramref name="k"/> codes nearest to <paramref name="query"/> in Hamming distance (ties: the lower index),
    /// by popcount over XOR and a bounded max-heap: O(N·words) time, O(k) memory.
    /// </summary>
    public static (int Index, int Distance)[] Nearest(ReadOnlySpan<ulong> query, ReadOnlySpan<ulong> codes, int words, int k)
    {
        int n = codes.Length / words;
        if (k < 1 || k > n)
        {
            throw new ArgumentException($"k = {k}: give 1 to {n} (the codes in the database).");
        }
        // The heap's top is the worst kept: (distance, index) largest first.
        var heap = new PriorityQueue<int, (int Distance, int Index)>(k + 1, Comparer<(int Distance, int Index)>.Create((a, b) => b.CompareTo(a)));
        int worst = int.MaxValue;
        for (int i = 0; i < n; i++)
        {
            int d = 0;
            ReadOnlySpan<ulong> row = codes.Slice(i * words, words);
            for (int w = 0; w < words; w++)
            {
                d += BitOperations.PopCount(query[w] ^ row[w]);
            }
            if (heap.Count < k)
            {
                heap.Enqueue(i, (d, i));
            }
            else if (d < worst)
            {
                heap.EnqueueDequeue(i, (d, i));
            }
            else
            {
                continue;
            }
            if (heap.Count == k)
            {
                heap.TryPeek(out _, out var top);
                worst = top.Distance;
            }
        }
        var result = new List<(int, int)>(k);
        while (heap.TryDequeue(out int idx, out var pr))
        {
            result.Add((idx, pr.Distance));
        }
        result.Reverse();
        return result.ToArray();
    }
}

/// <summary>One retrieval method's quality over a set of queries: precision@k of the same class, recall of the exact fc7 top-k.</summary>
public sealed record RetrievalScore(string Method, int Bits, int Seed, double PrecisionAtK, double RecallOfExact, double MillisecondsPerQuery);

public static class RetrievalEvaluation
{
    /// <summary>The baseline every coder is scored against: each query's k nearest database rows by exact Euclidean fc7, and their score.</summary>
    public static (RetrievalScore Score, long[][] Neighbours) Exact(FeatureMatrix database, int[] databaseLabels, float[] queries, int[] queryLabels, int k)
    {
        int q = queryLabels.Length;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using Tensor qt = tensor(queries, new long[] { q, database.Dimensions });
        long[][] exact = Retrieval.Nearest(qt, database, k).Select(r => r.Select(h => h.Index).ToArray()).ToArray();
        double ms = clock.Elapsed.TotalMilliseconds / q;
        double precision = Enumerable.Range(0, q).Sum(i => exact[i].Count(j => databaseLabels[j] == queryLabels[i]) / (double)k) / q;
        return (new RetrievalScore("exact fc7", 32 * database.Dimensions, 0, precision, 1, ms), exact);
    }

    /// <summary>
    /// §6.1's claim measured: for each query row, the k nearest database rows by Hamming distance between the coder's
    /// codes; the fraction of those of the query's class, and of the exact top-k (<paramref name="exact"/>, from Exact) found.
    /// </summary>
    public static RetrievalScore Score(BinaryCoder coder, int seed, FeatureMatrix database, int[] databaseLabels,
        float[] queries, int[] queryLabels, long[][] exact, int k)
    {
        int q = queryLabels.Length;
        ulong[] codes = coder.Encode(database.Rows(0, checked((int)database.Count)));
        ulong[] queryCodes = coder.Encode(queries);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var hamming = new (int Index, int Distance)[q][];
        for (int i = 0; i < q; i++)
        {
            hamming[i] = BinaryCodes.Nearest(queryCodes.AsSpan(i * coder.Words, coder.Words), codes, coder.Words, k);
        }
        double codeMs = clock.Elapsed.TotalMilliseconds / q;
        double precision = 0, recall = 0;
        for (int i = 0; i < q; i++)
        {
            precision += hamming[i].Count(h => databaseLabels[h.Index] == queryLabels[i]) / (double)k;
            var truth = exact[i].ToHashSet();
            recall += hamming[i].Count(h => truth.Contains(h.Index)) / (double)k;
        }
        return new RetrievalScore(coder.Kind, coder.Bits, seed, precision / q, recall / q, codeMs);
    }
}
