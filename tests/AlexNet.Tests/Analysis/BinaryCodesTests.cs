using System;
using System.Linq;
using System.Numerics;
using AlexNet.Analysis;
using Xunit;

namespace AlexNet.Tests.Analysis;

/// <summary>
/// §6.1's binary codes: Hamming search is exact, and both coders keep the classes of clustered features apart.
/// </summary>
public class BinaryCodesTests
{
    /// <summary> Every code length the vectorised counts handle (1, 2, 4, 8 words) and one they leave to popcnt (3), on
    /// one thread and split over three: the top k of a full sort by (distance, index). Near-duplicate codes make ties
    /// and small distances.
    /// </summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(3, 1)]
    [InlineData(4, 1)]
    [InlineData(4, 3)]
    [InlineData(8, 3)]
    public void HammingSearchIsTheExactTopKWithTiesToTheLowerIndex(int words, int threads)
    {
        var rng = new Random(4 + words);
        const int n = 13_001;   // not a multiple of a block, a vector or the threads
        ulong[] seeds = Enumerable.Range(0,
            40 * words).Select(_ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40)).ToArray();
        ulong[] codes = new ulong[n * words];
        for (int i = 0; i < n; i++)
        {
            for (int w = 0; w < words; w++)
            {
                codes[i * words + w] = seeds[(i % 40) * words +
                    w] ^ (1UL << rng.Next(64)) ^ (rng.Next(3) == 0 ? 1UL << rng.Next(64) : 0);
            }
        }
        var index = new HammingIndex(codes, 64 * words);
        ulong[] query = index.Code(7).ToArray();
        query[0] ^= 0b1011;
        HammingHit[] got = index.Nearest(query, 25, threads);
        HammingHit[] expected = Enumerable.Range(0, n)
            .Select(i => new HammingHit(i,
            Enumerable.Range(0, words).Sum(w => BitOperations.PopCount(query[w] ^ codes[i * words + w]))))
            .OrderBy(t => t.Distance).ThenBy(t => t.Index).Take(25).ToArray();
        Assert.Equal(expected, got);
        Assert.True(got[^1].Distance > got[0].Distance);
        Assert.Contains($"give 1 to {n}", Assert.Throws<ArgumentException>(() => index.Nearest(query, n + 1)).Message);
        Assert.Contains("encode it with the coder",
            Assert.Throws<ArgumentException>(() => index.Nearest(new ulong[words + 1], 3)).Message);
    }

    /// <summary>
    /// Both vector kernels (each where this CPU has it) count the same bits as popcnt, for every code length they take.
    /// </summary>
    [SkippableFact]
    public void TheVectorCountsArePopcnt()
    {
        var rng = new Random(9);
        ulong[] codes = Enumerable.Range(0, 8 * 40).Select(_ => (ulong)rng.NextInt64() * 3).ToArray();
        bool any = false;
        foreach (int words in new[] { 1, 2, 4, 8 })
        {
            ulong[] query = codes.AsSpan(8, words).ToArray();
            int[] expected = Enumerable.Range(0, codes.Length / words)
                .Select(i => Enumerable.Range(0,
                words).Sum(w => BitOperations.PopCount(query[w] ^ codes[i * words + w]))).ToArray();
            var got = new int[expected.Length];
            if (System.Runtime.Intrinsics.X86.Avx512BW.IsSupported)
            {
                Assert.Equal(expected.Length, HammingIndex.Distances512(query, codes, words, got));
                Assert.Equal(expected, got);
                any = true;
            }
            if (System.Runtime.Intrinsics.X86.Avx2.IsSupported && words <= 4)
            {
                Array.Clear(got);
                Assert.Equal(expected.Length, HammingIndex.Distances256(query, codes, words, got));
                Assert.Equal(expected, got);
                any = true;
            }
        }
        Skip.IfNot(any, "this CPU has neither AVX2 nor AVX-512BW: only popcnt runs here");
    }

    /// <summary>
    /// Four well-separated clusters in 32-d: a 64-bit code's nearest neighbours are of the query's cluster.
    /// </summary>
    [Theory]
    [InlineData("autoencoder")]
    [InlineData("lsh")]
    public void CodesKeepClustersApart(string kind)
    {
        const int d = 32, perClass = 150, classes = 4;
        var rng = new Random(1);
        float[][] centres = Enumerable.Range(0, classes).Select(_ => Enumerable.Range(0,
            d).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray()).ToArray();
        float[] rows = new float[classes * perClass * d];
        int[] labels = new int[classes * perClass];
        for (int i = 0; i < labels.Length; i++)
        {
            labels[i] = i % classes;
            for (int j = 0; j < d; j++)
            {
                rows[i * d + j] = centres[labels[i]][j] + (float)(rng.NextDouble() - 0.5);
            }
        }
        BinaryCoder coder = kind == "lsh" ? BinaryCodes.RandomProjections(rows, d, 64,
            seed: 2) : BinaryCodes.TrainAutoencoder(rows, d, 64, seed: 2, epochs: 15, batch: 60);
        ulong[] codes = coder.Encode(rows);
        Assert.Equal(labels.Length * 1, codes.Length);
        var index = new HammingIndex(codes, 64);
        double hits = 0;
        for (int q = 0; q < 40; q++)
        {
            hits += index.Nearest(codes.AsSpan(q, 1), 10).Count(h => labels[h.Index] == labels[q]);
        }
        Assert.True(hits / 400 > 0.95, $"{kind}: precision@10 {hits / 400:P1}");
        Assert.Contains("32-d", Assert.Throws<ArgumentException>(() => coder.Encode(new float[33])).Message);
    }
}

/// <summary>
/// `alexnet codes eval` refuses queries and a database written from different nets, naming both files.
/// </summary>
public class CodesCommandTests
{
    [Fact]
    public void FeaturesOfDifferentCheckpointsAreRefused()
    {
        using var dir = new TestData.TempDir();
        void Write(string name, string checkpoint)
        {
            System.IO.File.WriteAllBytes(dir[name], new byte[2 * 3 * 4]);
            Json.Write(dir[name] + ".json",
                new FeatureHeader("alexnet-features-v1", "fc7", 2, 3, dir["store"], checkpoint));
        }
        Write("train.f32", "/runs/a/last.ckpt");
        Write("test.f32", "/runs/b/last.ckpt");
        AlexNet.Tests.Cli.CliCapture.Refuses(2,
            new[] { "codes", "eval", "-f", dir["train.f32"], "-q", dir["test.f32"] },
            $"{dir["test.f32"]} holds fc7 of /runs/b/last.ckpt, {dir["train.f32"]} fc7 of /runs/a/last.ckpt");

        // A coder of one net and the features of another: refused, and no code file written.
        AlexNet.Tests.Cli.CliCapture.Refuses(0, new[] { "codes", "train", "-f", dir["train.f32"], "--kind", "lsh",
            "--bits", "64", "-o", dir["a.coder"] }, "");
        AlexNet.Tests.Cli.CliCapture.Refuses(2,
            new[] { "codes", "encode", "-c", dir["a.coder"], "-f", dir["test.f32"], "-o", dir["b.codes"] },
            $"{dir["a.coder"]} was trained on 3-d fc7 of /runs/a/last.ckpt, {dir["test.f32"]} holds 3-d fc7 of " +
            "/runs/b/last.ckpt");
        Assert.False(System.IO.File.Exists(dir["b.codes"]));
        AlexNet.Tests.Cli.CliCapture.Refuses(0,
            new[] { "codes", "encode", "-c", dir["a.coder"], "-f", dir["train.f32"], "-o", dir["a.codes"] }, "Wrote");
        Assert.Equal(2 * 8, new System.IO.FileInfo(dir["a.codes"]).Length);
    }
}

/// <summary>
/// Coder and code files: written whole, read back the same, a cut-short copy refused naming the file.
/// </summary>
public class CodeFileTests
{
    private static (float[] Rows, int D) Clusters()
    {
        const int d = 24, n = 400;
        var rng = new Random(2);
        float[] rows = Enumerable.Range(0,
            n * d).Select(i => (float)((i / d % 5) * ((i % d) % 3 - 1) + rng.NextDouble())).ToArray();
        return (rows, d);
    }

    [Fact]
    public void ACoderRoundTripsAndACutShortOneIsRefused()
    {
        using var dir = new TestData.TempDir();
        (float[] rows, int d) = Clusters();
        BinaryCoder coder = BinaryCodes.TrainAutoencoder(rows, d, 128, seed: 3, epochs: 2, batch: 50);
        coder.Save(dir["c.coder"], new CoderHeader(CoderHeader.FormatName, "", 0, 0, 3, 2, "fc7", "f", "s", "ck"));
        (BinaryCoder back, CoderHeader h) = BinaryCoder.Load(dir["c.coder"]);
        Assert.Equal(("autoencoder", d, 128, "ck"), (h.Kind, h.Dimensions, h.Bits, h.Checkpoint));
        Assert.Equal(coder.Encode(rows), back.Encode(rows));
        byte[] whole = System.IO.File.ReadAllBytes(dir["c.coder"]);
        System.IO.File.WriteAllBytes(dir["c.coder"], whole[..^4]);
        string message = Assert.Throws<System.IO.InvalidDataException>(() => BinaryCoder.Load(dir["c.coder"])).Message;
        Assert.Contains(dir["c.coder"], message);
        Assert.Contains("cut short", message);
        Assert.Contains("codes train",
            Assert.Throws<System.IO.FileNotFoundException>(() => BinaryCoder.Load(dir["none"])).Message);
    }

    [Fact]
    public void ACodeFileRoundTripsAndACutShortOneIsRefused()
    {
        using var dir = new TestData.TempDir();
        (float[] rows, int d) = Clusters();
        BinaryCoder coder = BinaryCodes.RandomProjections(rows, d, 64, seed: 1);
        ulong[] codes = coder.Encode(rows);
        var header = new CodesHeader(HammingIndex.Format, codes.Length, 64, "lsh", "c", "f", "s", "ck", "fc7");
        HammingIndex.Write(dir["db.codes"], codes, header);
        Assert.Equal(8L * codes.Length, new System.IO.FileInfo(dir["db.codes"]).Length);   // B/8 bytes a code
        HammingIndex back = HammingIndex.Open(dir["db.codes"]);
        Assert.Equal(index0(codes), back.Nearest(codes.AsSpan(0, 1), 5));
        System.IO.File.WriteAllBytes(dir["db.codes"], System.IO.File.ReadAllBytes(dir["db.codes"])[..^8]);
        string message = Assert.Throws<System.IO.InvalidDataException>(() =>
            HammingIndex.Open(dir["db.codes"])).Message;
        Assert.Contains(dir["db.codes"], message);
        Assert.Contains("codes encode", message);

        static HammingHit[] index0(ulong[] c) => new HammingIndex(c, 64).Nearest(c.AsSpan(0, 1), 5);
    }

    /// <summary>Re-ranking all N by exact distance is the exact search; re-ranking none is the Hamming order.</summary>
    [Fact]
    public void RerankingEveryCodeIsTheExactSearch()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["store"], 400, 5);
        using var store = AlexNet.Data.ImageStore.Open(dir["store"]);
        (float[] rows, int d) = Clusters();
        using var features = new FeatureMatrix(rows, d);
        BinaryCoder coder = BinaryCodes.RandomProjections(rows, d, 64, seed: 1);
        var index = new HammingIndex(coder.Encode(rows), 64);
        float[] query = rows.AsSpan(17 * d, d).ToArray();
        query[0] += 0.3f;
        Neighbour[] exact = Retrieval.Rank(query, features, store, 6);
        Neighbour[] reranked = Retrieval.RankByCodes(query, coder, index, store, 6, features, rerank: 400);
        Assert.Equal(exact.Select(h => h.Index), reranked.Select(h => h.Index));
        Assert.Equal(exact.Select(h => h.Distance), reranked.Select(h => h.Distance), (a, b) => Math.Abs(a - b) < 1e-4);
        Neighbour[] hamming = Retrieval.RankByCodes(query, coder, index, store, 6);
        Assert.Equal(index.Nearest(coder.Encode(query), 6).Select(h => (h.Index, (double)h.Distance)),
            hamming.Select(h => (h.Index, h.Distance)));
        Assert.Contains("another net", Assert.Throws<ArgumentException>(() => Retrieval.RankByCodes(new float[d + 1],
            coder, index, store, 6)).Message);
        Assert.Contains("give 1 to 400",
            Assert.Throws<ArgumentException>(() => Retrieval.RankByCodes(query, coder, index, store, 401)).Message);
    }

    /// <summary>The raw-pixel arm: 28×28 records whole; larger ones averaged to 32×32 per channel.</summary>
    [Fact]
    public void PixelFeaturesAreTheRecordsAtMost32PixelsASide()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["small"], 6, 3);
        TestData.WriteSyntheticStore(dir["large"], 4, 2, channels: 3, size: 64);
        using (var store = AlexNet.Data.ImageStore.Open(dir["small"]))
        using (FeatureMatrix f = BinaryCodes.PixelFeatures(store, 100))
        {
            Assert.Equal((6L, 28 * 28), (f.Count, f.Dimensions));
            Assert.Equal(store.Record(4)[100], f.Rows(4, 1)[100]);
        }
        using (var store = AlexNet.Data.ImageStore.Open(dir["large"]))
        using (FeatureMatrix f = BinaryCodes.PixelFeatures(store, 3))
        {
            Assert.Equal((3L, 3 * 32 * 32), (f.Count, f.Dimensions));
            ReadOnlySpan<byte> r = store.Record(2);
            // channel 0, rows 10–11, columns 6–7
            double mean = (r[64 * 10 + 6] + r[64 * 10 + 7] + r[64 * 11 + 6] + r[64 * 11 + 7]) / 4.0;
            Assert.Equal(mean, f.Rows(2, 1)[32 * 5 + 3], 3);
        }
    }
}
