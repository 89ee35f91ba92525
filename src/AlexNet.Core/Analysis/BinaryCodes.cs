// §6.1's suggestion: "it could be made efficient by training an auto-encoder to compress these vectors to short
// binary codes." As Krizhevsky & Hinton (2011, "Using very deep autoencoders for content-based image retrieval")
// did, the code layer is logistic and Gaussian noise is added to its input during training, so the only way to
// carry information through the noise is to drive each unit to 0 or 1; at test time the units are thresholded at ½.
// One encoding layer (fc7 → B) and one linear decoding layer (B → fc7), trained on standardised features with
// §5's update (PaperSgd). The baseline an engineer tries first is here too: the signs of B random projections (LSH).
// Codes are packed 64 bits to a word; Hamming search over them is HammingIndex.cs. The paper's comparison, "applying
// auto-encoders to the raw pixels", is the same coder trained on PixelFeatures (at most 32×32 per channel, the size of
// Krizhevsky & Hinton's tiny images).
//  Files: CODER holds float32 Mean[D], Std[D], Weights[D×B], Bias[B]; CODER.json its CoderHeader (what it was trained
// on).
using System;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using AlexNet.Data;
using AlexNet.Training;
using static TorchSharp.torch;

namespace AlexNet.Analysis;

/// <summary>
/// A map from D-dimensional features to B-bit codes: standardise, then project (W, bias), then threshold at 0.
/// </summary>
/// <param name="Kind">"autoencoder" or "lsh".</param>
public sealed record BinaryCoder(string Kind, int Dimensions, int Bits, float[] Mean, float[] Std,
    float[] Weights, float[] Bias)
{
    public int Words => Bits / 64;

    /// <summary>Rows per product: memory stays at one block whatever N is.</summary>
    private const int EncodeBlock = 8192;

    /// <summary>
    /// Packed codes of N rows of features (N×D): N × Words ulongs, bit b of a row set where its unit b is on.
    /// </summary>
    public ulong[] Encode(ReadOnlySpan<float> features)
    {
        if (features.Length % Dimensions != 0)
        {
            throw new ArgumentException(
                $"the features are not rows of {Dimensions} values: this coder was trained on {Dimensions}-d " +
                "features of another net or layer.");
        }
        int n = features.Length / Dimensions;
        var codes = new ulong[n * Words];
        using Projection p = Project();
        for (int start = 0; start < n; start += EncodeBlock)
        {
            int rows = Math.Min(EncodeBlock, n - start);
            p.Encode(features.Slice(start * Dimensions, rows * Dimensions), codes.AsSpan(start * Words, rows * Words));
        }
        return codes;
    }

    /// <summary>Codes of every row of a feature file (any size: read a block at a time).</summary>
    public ulong[] Encode(FeatureMatrix features)
    {
        if (features.Dimensions != Dimensions)
        {
            throw new ArgumentException(
                $"the feature file holds {features.Dimensions}-d features, this coder was trained on {Dimensions}-d " +
                "ones (another net or layer).");
        }
        var codes = new ulong[checked((int)features.Count * Words)];
        using Projection p = Project();
        for (long start = 0; start < features.Count; start += EncodeBlock)
        {
            int rows = (int)Math.Min(EncodeBlock, features.Count - start);
            p.Encode(features.Rows(start, rows), codes.AsSpan((int)start * Words, rows * Words));
        }
        return codes;
    }

    private Projection Project() => new(this);

    /// <summary>The coder's arrays as tensors, made once for all the blocks of an encoding.</summary>
    private sealed class Projection(BinaryCoder coder) : IDisposable
    {
        private readonly Tensor _w = tensor(coder.Weights, new long[] { coder.Dimensions, coder.Bits });
        private readonly Tensor _mean = tensor(coder.Mean), _std = tensor(coder.Std), _bias = tensor(coder.Bias);

        /// <summary>The packed codes of one block of rows into <paramref name="codes"/> (rows × Words,
        /// zeroed).</summary>
        public void Encode(ReadOnlySpan<float> block, Span<ulong> codes)
        {
            using var scope = NewDisposeScope();
            int rows = block.Length / coder.Dimensions, bits = coder.Bits, words = coder.Words;
            Tensor x = tensor(block.ToArray(), new long[] { rows, coder.Dimensions });
            bool[] on = ((x - _mean) / _std).matmul(_w).add_(_bias).gt(0).data<bool>().ToArray();
            for (int i = 0; i < rows; i++)
            {
                Span<ulong> code = codes.Slice(i * words, words);
                for (int b = 0; b < bits; b++)
                {
                    if (on[i * bits + b])
                    {
                        code[b / 64] |= 1UL << (b % 64);
                    }
                }
            }
        }

        public void Dispose()
        {
            foreach (Tensor t in new[] { _w, _mean, _std, _bias })
            {
                t.Dispose();
            }
        }
    }

    /// <summary>
    /// Writes the coder to PATH (its float arrays) and PATH.json (<paramref name="header"/>), each whole or not at all.
    /// </summary>
    public void Save(string path, CoderHeader header)
    {
        AtomicFile.Write(path, f =>
        {
            foreach (float[] a in new[] { Mean, Std, Weights, Bias })
            {
                f.Write(MemoryMarshal.AsBytes(a.AsSpan()));
            }
        });
        Json.Write(path + ".json", header with { Kind = Kind, Dimensions = Dimensions, Bits = Bits });
    }

    /// <summary>Reads a coder written by Save, refusing one whose length does not match its header.</summary>
    public static (BinaryCoder Coder, CoderHeader Header) Load(string path)
    {
        string meta = path + ".json";
        if (!File.Exists(path) || !File.Exists(meta))
        {
            throw new FileNotFoundException(
                $"coder {path} (and {meta}) not found: train one with `alexnet codes train`.", path);
        }
        CoderHeader h = Json.Read<CoderHeader>(meta);
        if (h.Format != CoderHeader.FormatName || h.Bits < 64 || h.Bits % 64 != 0 || h.Dimensions < 1)
        {
            throw new InvalidDataException(
                $"{meta} is not the header of a coder written by `alexnet codes train` (format {h.Format}, {h.Bits} " +
                $"bits, {h.Dimensions}-d).");
        }
        long floats = 2L * h.Dimensions + (long)h.Dimensions * h.Bits + h.Bits;
        long length = new FileInfo(path).Length;
        if (length != floats * 4)
        {
            throw new InvalidDataException(
                $"{path} holds {length} bytes where {meta} promises a {h.Dimensions}→{h.Bits} coder ({floats * 4} " +
                "bytes): it was cut short or overwritten; train it again with `alexnet codes train`.");
        }
        float[] all = ImageStore.ReadArray<float>(path, checked((int)floats));
        int d = h.Dimensions, b = h.Bits;
        var coder = new BinaryCoder(h.Kind, d, b, all[..d], all[d..(2 * d)],
            all[(2 * d)..(2 * d + d * b)], all[(2 * d + d * b)..]);
        return (coder, h);
    }
}

/// <summary>
/// What a coder was trained on (full paths; Layer "pixels" and no checkpoint for the raw-pixel coder).
/// </summary>
public sealed record CoderHeader(string Format, string Kind, int Dimensions, int Bits,
    int Seed, int Epochs, string Layer,
    string Features, string Store, string Checkpoint)
{
    public const string FormatName = "alexnet-coder-v1";
}

public static class BinaryCodes
{
    private static (float[] Mean, float[] Std) Standardisation(float[] features, int d)
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

    private static void CheckBits(int bits)
    {
        if (bits < 64 || bits % 64 != 0 || bits > 4096)
        {
            throw new ArgumentException($"--bits {bits}: give a multiple of 64 (64, 128, 256 …).");
        }
    }

    /// <summary>
    /// The baseline: the signs of <paramref name="bits"/> Gaussian random projections of the standardised features.
    /// </summary>
    public static BinaryCoder RandomProjections(float[] features, int dimensions, int bits, int seed)
    {
        CheckBits(bits);
        (float[] mean, float[] std) = Standardisation(features, dimensions);
        using var g = new Generator((ulong)seed);
        using Tensor w = randn(new long[] { dimensions, bits }, generator: g);
        return new BinaryCoder("lsh", dimensions, bits, mean, std, w.data<float>().ToArray(), new float[bits]);
    }

    /// <summary> The auto-encoder: code = σ(x̂W + b + noise), x̂ ≈ code·V + c, squared error, §5's update with momentum
    /// 0.9. The noise (σ = <paramref name="noise"/>) is what makes the code binary; thresholding σ(·) at ½ is the sign
    /// of xW + b.
    /// </summary>
    public static BinaryCoder TrainAutoencoder(float[] features, int dimensions, int bits, int seed,
        int epochs = 20, int batch = 256,
        double learningRate = 0.01, double noise = 4, Action<int, double>? progress = null)
    {
        CheckBits(bits);
        (float[] mean, float[] std) = Standardisation(features, dimensions);
        int n = features.Length / dimensions;
        using var g = new Generator((ulong)seed);
        using Tensor all = (tensor(features, new long[] { n, dimensions }) - tensor(mean)) / tensor(std);
        var w = new TorchSharp.Modules.Parameter(randn(new long[] { dimensions, bits },
            generator: g) * (1.0 / Math.Sqrt(dimensions)));
        var b = new TorchSharp.Modules.Parameter(zeros(bits));
        var v = new TorchSharp.Modules.Parameter(randn(new long[] { bits, dimensions },
            generator: g) * (1.0 / Math.Sqrt(bits)));
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
                Tensor x = all.index_select(0,
                    tensor(index.AsSpan(start, batch).ToArray().Select(i => (long)i).ToArray()));
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
        var coder = new BinaryCoder("autoencoder", dimensions, bits, mean, std, w.detach().data<float>().ToArray(),
            b.detach().data<float>().ToArray());
        foreach (var p in new[] { w, b, v, c })
        {
            p.Dispose();
        }
        return coder;
    }

    /// <summary> The raw-pixel arm of §6.1's comparison: the first <paramref name="count"/> records of a store as rows
    /// of pixel values, averaged down to at most 32×32 per channel (Krizhevsky &amp; Hinton's tiny images;
    /// Fashion-MNIST's 28×28 stay whole).
    /// </summary>
    public static FeatureMatrix PixelFeatures(ImageStore store, int count)
    {
        count = Math.Min(count, store.Count);
        long side = Math.Min(32, Math.Min(store.Height, store.Width));
        int dims = (int)(store.Channels * (store.Height <= 32 && store.Width <= 32
            ? store.Height * store.Width : side * side));
        var rows = new float[(long)count * dims];
        const int block = 1024;
        for (int start = 0; start < count; start += block)
        {
            using var scope = NewDisposeScope();
            int n = Math.Min(block, count - start);
            var bytes = new byte[n * store.Manifest.RecordBytes];
            for (int i = 0; i < n; i++)
            {
                store.Record(start + i).CopyTo(bytes.AsSpan(i * store.Manifest.RecordBytes));
            }
            Tensor x = tensor(bytes,
                new long[] { n, store.Channels, store.Height, store.Width }).to(ScalarType.Float32);
            if (store.Height > 32 || store.Width > 32)
            {
                x = nn.functional.adaptive_avg_pool2d(x, new[] { side, side });
            }
            x.contiguous().data<float>().CopyTo(rows.AsSpan(start * dims, n * dims));
        }
        return new FeatureMatrix(rows, dims);
    }
}

/// <summary>
/// One retrieval method's quality over a set of queries: precision@k of the same class, recall of the exact fc7 top-k.
/// </summary>
public sealed record RetrievalScore(string Method, int Bits, int Seed, double PrecisionAtK,
    double RecallOfExact, double MillisecondsPerQuery);

public static class RetrievalEvaluation
{
    /// <summary>
    /// The baseline every coder is scored against: each query's k nearest database rows by exact Euclidean fc7, and
    /// their score.
    /// </summary>
    public static (RetrievalScore Score, long[][] Neighbours) Exact(FeatureMatrix database, int[] databaseLabels,
        float[] queries, int[] queryLabels, int k)
    {
        int q = queryLabels.Length;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using Tensor qt = tensor(queries, new long[] { q, database.Dimensions });
        long[][] exact = Retrieval.Nearest(qt, database, k).Select(r => r.Select(h => h.Index).ToArray()).ToArray();
        double ms = clock.Elapsed.TotalMilliseconds / q;
        double precision = Enumerable.Range(0,
            q).Sum(i => exact[i].Count(j => databaseLabels[j] == queryLabels[i]) / (double)k) / q;
        return (new RetrievalScore("exact fc7", 32 * database.Dimensions, 0, precision, 1, ms), exact);
    }

    /// <summary> §6.1's claim measured: for each query row, the k nearest database rows by Hamming distance between the
    /// coder's codes; the fraction of those of the query's class, and of the exact top-k (<paramref name="exact"/>,
    /// from Exact) found.
    /// </summary>
    /// <param name="found">Receives each query's Hamming neighbours (for a figure), or null.</param>
    public static RetrievalScore Score(BinaryCoder coder, int seed, FeatureMatrix database, int[] databaseLabels,
        float[] queries, int[] queryLabels, long[][] exact, int k, Action<HammingHit[][]>? found = null)
    {
        int q = queryLabels.Length;
        var index = new HammingIndex(coder.Encode(database), coder.Bits);
        ulong[] queryCodes = coder.Encode(queries);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var hamming = new HammingHit[q][];
        for (int i = 0; i < q; i++)
        {
            hamming[i] = index.Nearest(queryCodes.AsSpan(i * coder.Words, coder.Words), k);
        }
        double codeMs = clock.Elapsed.TotalMilliseconds / q;
        found?.Invoke(hamming);
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
