// §6.1 "If two images produce feature activation vectors with a small Euclidean separation, we can say
// that the higher levels of the neural network consider them to be similar." The last hidden layer
// (fc7, 4096-d for the paper's net) of every image of a store, and exact nearest-neighbour search by
// batched matrix products: ‖q − x‖² = ‖q‖² + ‖x‖² − 2 q·x, one (queries × block) product per block.
// Cost: O(N·D) per query, the products taken one block of rows at a time; the feature file itself is read
// into one array (int offsets: up to 2³¹ floats, e.g. 524,287 images × 4096; issue #13 asks for a memory map).
using System;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Analysis;

public sealed record FeatureHeader(string Format, string Layer, int Count, int Dimensions, string Store, string Checkpoint);

public sealed record Neighbour(int Rank, int Index, double Distance, int Label, string Source);

public static class Retrieval
{
    const string Format = "alexnet-features-v1";

    /// <summary>Writes the <paramref name="layer"/> activations (centre view) of every record: FILE (float32 N×D) and FILE.json.</summary>
    public static FeatureHeader Extract(AlexNetModel model, ImageStore store, Augmentation augmentation, string layer, string path,
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
                    Tensor f = model.ForwardTo(batch.Inputs, layer).flatten(1).contiguous();
                    dims = (int)f.shape[1];
                    file.Write(f.bytes);
                }
            }
        });
        var header = new FeatureHeader(Format, layer, store.Count, dims, Path.GetFullPath(store.Directory), Path.GetFullPath(checkpoint));
        Json.Write(path + ".json", header);
        return header;
    }

    public static (FeatureHeader Header, float[] Data) Load(string path)
    {
        string meta = path + ".json";
        if (!File.Exists(path) || !File.Exists(meta))
        {
            throw new FileNotFoundException($"feature file {path} (and {meta}) not found: write it with `alexnet features`.", path);
        }
        FeatureHeader h = Json.Read<FeatureHeader>(meta);
        if (h.Format != Format || new FileInfo(path).Length != (long)h.Count * h.Dimensions * 4)
        {
            throw new InvalidDataException($"{path} does not hold {h.Count}×{h.Dimensions} floats as {meta} says: write it again with `alexnet features`.");
        }
        var data = new float[(long)h.Count * h.Dimensions];
        using FileStream f = File.OpenRead(path);
        f.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
        return (h, data);
    }

    /// <summary>The k rows of <paramref name="features"/> nearest to each query row (Euclidean), exact.</summary>
    public static (int Index, double Distance)[][] Nearest(Tensor queries, float[] features, int dims, int k, int block = 8192)
    {
        using var scope = NewDisposeScope();
        long count = features.LongLength / dims;
        Tensor q = queries.to(ScalarType.Float32);
        Tensor qq = q.pow(2).sum(1, keepdim: true);
        Tensor bestD = full(q.shape[0], 0, double.PositiveInfinity);
        Tensor bestI = zeros(new long[] { q.shape[0], 0 }, ScalarType.Int64);
        for (long start = 0; start < count; start += block)
        {
            long n = Math.Min(block, count - start);
            Tensor x = tensor(features.AsSpan((int)(start * dims), (int)(n * dims)).ToArray(), new long[] { n, dims });
            Tensor d = (qq + x.pow(2).sum(1).unsqueeze(0) - 2 * q.matmul(x.t())).clamp_min(0);
            Tensor allD = cat(new[] { bestD, d }, 1);
            Tensor allI = cat(new[] { bestI, arange(start, start + n, ScalarType.Int64).unsqueeze(0).expand(q.shape[0], n) }, 1);
            (Tensor vals, Tensor idx) = allD.topk((int)Math.Min(k, allD.shape[1]), dim: 1, largest: false);
            bestD = vals;
            bestI = allI.gather(1, idx);
        }
        long[] index = bestI.data<long>().ToArray();
        float[] qs = q.contiguous().data<float>().ToArray();
        int kk = (int)bestD.shape[1];
        // The expansion above loses digits to cancellation when ‖q‖ is large; the k winners get their exact distance.
        double Exact(int r, long i)
        {
            double sum = 0;
            for (int d = 0; d < dims; d++)
            {
                double diff = qs[r * dims + d] - features[i * dims + d];
                sum += diff * diff;
            }
            return Math.Sqrt(sum);
        }
        return Enumerable.Range(0, (int)q.shape[0])
            .Select(r => Enumerable.Range(0, kk).Select(j => ((int)index[r * kk + j], Exact(r, index[r * kk + j])))
                .OrderBy(t => t.Item2).ToArray()).ToArray();
    }
}
