// §6.1 "If two images produce feature activation vectors with a small Euclidean separation, we can say
// that the higher levels of the neural network consider them to be similar." The last hidden layer
// (fc7, 4096-d for the paper's net) of every image of a store, and exact nearest-neighbour search by
// batched matrix products: ‖q − x‖² = ‖q‖² + ‖x‖² − 2 q·x, one (queries × block) product per block.
// Cost: O(N·D) per query, one block of rows at a time from the memory-mapped file (64-bit offsets), so memory
// stays at one block whatever N is: ImageNet's 1.28 M × 4096 floats are 21 GB on disk.
using System;
using System.Collections.Generic;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Inference;
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Analysis;

public sealed record FeatureHeader(string Format, string Layer, int Count, int Dimensions,
    string Store, string Checkpoint);

public sealed record Neighbour(int Rank, int Index, double Distance, int Label, string Source);

public static class Retrieval
{
    public const string FeatureFormat = "alexnet-features-v1";

    /// <summary>
    /// Writes the <paramref name="layer"/> activations (centre view) of every record: FILE (float32 N×D) and FILE.json.
    /// </summary>
    public static FeatureHeader Extract(AlexNetModel model, ImageStore store,
        Augmentation augmentation, string layer, string path,
        string checkpoint, int batchSize = 256)
    {
        model.eval();
        var loader = new BatchLoader(store, augmentation, new LoaderOptions(batchSize));
        int dims = -1;
        AtomicFile.Write(path, file =>
        {
            using var _ = no_grad();
            foreach (Batch batch in loader.TestPass())
            {
                using (batch)
                using (NewDisposeScope())
                {
                    Tensor f = model.ForwardTo(batch.Inputs, layer).flatten(1).cpu().contiguous();
                    dims = (int)f.shape[1];
                    file.Write(f.bytes);
                }
            }
        });
        var header = new FeatureHeader(FeatureFormat, layer, store.Count, dims, Path.GetFullPath(store.Directory),
            Path.GetFullPath(checkpoint));
        Json.Write(path + ".json", header);
        return header;
    }

    /// <summary>
    /// Figure 4 (right): the <paramref name="k"/> images of <paramref name="store"/> whose features (in
    /// <paramref name="features"/>, written by Extract with <paramref name="net"/>) are nearest to the query record's.
    /// </summary>
    public static Neighbour[] Search(Classifier net, FeatureMatrix features, ImageStore store, byte[] query, int k)
    {
        CheckPair(features, store);
        return Rank(net.Features(new[] { query }, features.Header?.Layer ?? "fc7"), features, store, k);
    }

    /// <summary>Refuses a feature file that does not describe the store's images one for one.</summary>
    public static void CheckPair(FeatureMatrix features, ImageStore store)
    {
        if (features.Count != store.Count)
        {
            throw new ArgumentException(
                $"the feature file holds {features.Count} rows, the store {store.Directory} {store.Count} images: " +
                "write the features of this store with `alexnet features`.");
        }
    }

    /// <summary>
    /// The <paramref name="k"/> records of <paramref name="store"/> nearest to a query's features, exact (Nearest),
    /// with their classes.
    /// </summary>
    public static Neighbour[] Rank(float[] query, FeatureMatrix features, ImageStore store, int k)
    {
        if (k < 1 || k > features.Count)
        {
            throw new ArgumentException($"k = {k}: give 1 to {features.Count} (the images in the feature file).");
        }
        if (query.Length != features.Dimensions)
        {
            throw new ArgumentException(
                $"the net gives {query.Length}-d {features.Header?.Layer ?? "fc7"} features, the feature file " +
                $"holds {features.Dimensions}-d ones: it was written with another net; write it again with this " +
                "checkpoint.");
        }
        using Tensor q = tensor(query, new long[] { 1, query.Length });
        (long Index, double Distance)[] hits = Nearest(q, features, k)[0];
        IReadOnlyList<string> sources = store.Sources();
        return hits.Select((h, i) =>
        {
            int index = checked((int)h.Index);   // a store's records are int-indexed
            return new Neighbour(i + 1, index, h.Distance, store.Labels[index],
                index < sources.Count ? sources[index] : "");
        }).ToArray();
    }

    /// <summary> Figure 4 (right) by §6.1's short codes: the <paramref name="k"/> records whose codes are nearest to
    /// the query's in Hamming distance; with <paramref name="features"/> and <paramref name="rerank"/> ≥ k, the top
    /// <paramref name="rerank"/> by Hamming distance re-ordered by exact Euclidean fc7 (reading only those rows), and
    /// Distance is that instead.
    /// </summary>
    public static Neighbour[] RankByCodes(float[] query, BinaryCoder coder, HammingIndex codes, ImageStore store, int k,
        FeatureMatrix? features = null, int rerank = 0, int threads = 1)
    {
        if (codes.Count != store.Count)
        {
            throw new ArgumentException(
                $"the code file holds {codes.Count} codes, the store {store.Directory} {store.Count} images: encode " +
                "the features of this store with `alexnet codes encode`.");
        }
        if (codes.Bits != coder.Bits)
        {
            throw new ArgumentException(
                $"the code file holds {codes.Bits}-bit codes, the coder gives {coder.Bits}-bit ones: encode the " +
                "database with this coder.");
        }
        if (query.Length != coder.Dimensions)
        {
            throw new ArgumentException(
                $"the net gives {query.Length}-d features, the coder was trained on {coder.Dimensions}-d ones: it " +
                "belongs to another net; train a coder on this net's features.");
        }
        if (k < 1 || k > codes.Count)
        {
            throw new ArgumentException($"k = {k}: give 1 to {codes.Count} (the images in the code file).");
        }
        bool exact = features is not null && rerank > 0;
        if (exact && features!.Count != codes.Count)
        {
            throw new ArgumentException(
                $"the feature file holds {features.Count} rows, the code file {codes.Count}: give the features the " +
                "codes were encoded from.");
        }
        HammingHit[] hits = codes.Nearest(coder.Encode(query), exact ? Math.Clamp(rerank, k, codes.Count) : k, threads);
        (int Index, double Distance)[] ranked = exact
            ? hits.Select(h => (h.Index,
            Euclidean(query, features!.Rows(h.Index, 1)))).OrderBy(t => t.Item2).ThenBy(t => t.Index).Take(k).ToArray()
            : hits.Select(h => (h.Index, (double)h.Distance)).ToArray();
        IReadOnlyList<string> sources = store.Sources();
        return ranked.Select((h, i) => new Neighbour(i + 1, h.Index, h.Distance, store.Labels[h.Index],
            h.Index < sources.Count ? sources[h.Index] : "")).ToArray();
    }

    private static double Euclidean(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int d = 0; d < a.Length; d++)
        {
            double diff = a[d] - b[d];
            sum += diff * diff;
        }
        return Math.Sqrt(sum);
    }

    /// <summary>
    /// Opens a feature file memory-mapped: N×D floats of any size (64-bit offsets), one block in memory at a time.
    /// </summary>
    public static FeatureMatrix Open(string path)
    {
        string meta = path + ".json";
        if (!File.Exists(path) || !File.Exists(meta))
        {
            throw new FileNotFoundException(
                $"feature file {path} (and {meta}) not found: write it with `alexnet features`.", path);
        }
        FeatureHeader h = Json.Read<FeatureHeader>(meta);
        if (h.Format != FeatureFormat || new FileInfo(path).Length != (long)h.Count * h.Dimensions * 4)
        {
            throw new InvalidDataException(
                $"{path} does not hold {h.Count}×{h.Dimensions} floats as {meta} says: write it again with `alexnet " +
                "features`.");
        }
        return FeatureMatrix.Map(path, h);
    }

    /// <summary> The k rows of <paramref name="features"/> (rows [<paramref name="from"/>, <paramref name="to"/>), all
    /// by default) nearest to each query row (Euclidean), exact. Rows are read one block at a time.
    /// </summary>
    public static (long Index, double Distance)[][] Nearest(Tensor queries, FeatureMatrix features, int k,
        int block = 8192, long from = 0, long to = -1)
    {
        using var scope = NewDisposeScope();
        int dims = features.Dimensions;
        long end = to < 0 ? features.Count : Math.Min(to, features.Count);
        Tensor q = queries.to(ScalarType.Float32);
        Tensor qq = q.pow(2).sum(1, keepdim: true);
        Tensor bestD = full(q.shape[0], 0, double.PositiveInfinity);
        Tensor bestI = zeros(new long[] { q.shape[0], 0 }, ScalarType.Int64);
        for (long start = from; start < end; start += block)
        {
            // A scope per block: only the running best outlives it, so memory stays at one block (21 GB files
            // included).
            using var step = NewDisposeScope();
            int n = (int)Math.Min(block, end - start);
            Tensor x = tensor(features.Rows(start, n).ToArray(), new long[] { n, dims });
            Tensor d = (qq + x.pow(2).sum(1).unsqueeze(0) - 2 * q.matmul(x.t())).clamp_min(0);
            Tensor allD = cat(new[] { bestD, d }, 1);
            Tensor allI = cat(new[] { bestI,
                arange(start, start + n, ScalarType.Int64).unsqueeze(0).expand(q.shape[0], n) }, 1);
            (Tensor vals, Tensor idx) = allD.topk((int)Math.Min(k, allD.shape[1]), dim: 1, largest: false);
            bestD = vals.MoveToOuterDisposeScope();
            bestI = allI.gather(1, idx).MoveToOuterDisposeScope();
        }
        long[] index = bestI.data<long>().ToArray();
        float[] qs = q.contiguous().data<float>().ToArray();
        int kk = (int)bestD.shape[1];
        // The expansion above loses digits to cancellation when ‖q‖ is large; the k winners get their exact distance.
        double Exact(int r, long i) => Euclidean(qs.AsSpan(r * dims, dims), features.Rows(i, 1));
        return Enumerable.Range(0, (int)q.shape[0])
            .Select(r => Enumerable.Range(0, kk).Select(j => (index[r * kk + j], Exact(r, index[r * kk + j])))
                .OrderBy(t => t.Item2).ToArray()).ToArray();
    }
}

/// <summary>
/// N×D float32 features, in memory or memory-mapped from a feature file; rows addressed with 64-bit offsets.
/// </summary>
public sealed unsafe class FeatureMatrix : IDisposable
{
    private readonly float[]? _memory;
    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly float* _base;

    public long Count { get; }
    public int Dimensions { get; }
    public FeatureHeader? Header { get; }

    public FeatureMatrix(float[] rows, int dimensions)
    {
        _memory = rows;
        Dimensions = dimensions;
        Count = rows.LongLength / dimensions;
    }

    private FeatureMatrix(MemoryMappedFile map, MemoryMappedViewAccessor view, FeatureHeader header)
    {
        (_map, _view, Header) = (map, view, header);
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _base = (float*)(p + view.PointerOffset);
        Count = header.Count;
        Dimensions = header.Dimensions;
    }

    internal static FeatureMatrix Map(string path, FeatureHeader header)
    {
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        return new FeatureMatrix(map, map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read), header);
    }

    /// <summary>
    /// Float offset of a row: 64-bit, so files past 2³¹ floats (ImageNet's 1.28 M × 4096 is 5.2·10⁹) are addressed
    /// right.
    /// </summary>
    public static long Offset(long row, int dimensions) => row * dimensions;

    /// <summary>Rows [start, start + n) as one span (n·D must fit an int: one block).</summary>
    public ReadOnlySpan<float> Rows(long start, int n)
    {
        if (start < 0 || n < 0 || start + n > Count)
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"rows {start}..{start + n} of {Count}");
        }
        int length = checked(n * Dimensions);
        return _memory is not null ? _memory.AsSpan().Slice(checked((int)Offset(start, Dimensions)), length)
            : new ReadOnlySpan<float>(_base + Offset(start, Dimensions), length);
    }

    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
