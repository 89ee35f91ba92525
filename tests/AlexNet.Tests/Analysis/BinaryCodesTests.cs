using System;
using System.Linq;
using System.Numerics;
using AlexNet.Analysis;
using Xunit;

namespace AlexNet.Tests.Analysis;

/// <summary>§6.1's binary codes: Hamming search is exact, and both coders keep the classes of clustered features apart.</summary>
public class BinaryCodesTests
{
    [Fact]
    public void HammingSearchIsTheExactTopKWithTiesToTheLowerIndex()
    {
        var rng = new Random(4);
        const int words = 2, n = 3000;
        ulong[] codes = Enumerable.Range(0, n * words).Select(_ => (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40)).ToArray();
        ulong[] query = { codes[7 * words] ^ 0b1011, codes[7 * words + 1] };
        (int Index, int Distance)[] got = BinaryCodes.Nearest(query, codes, words, 25);
        var expected = Enumerable.Range(0, n)
            .Select(i => (Index: i, Distance: BitOperations.PopCount(query[0] ^ codes[i * words]) + BitOperations.PopCount(query[1] ^ codes[i * words + 1])))
            .OrderBy(t => t.Distance).ThenBy(t => t.Index).Take(25).ToArray();
        Assert.Equal(expected, got);
        Assert.Equal((7, 3), got[0]);
        Assert.Contains("give 1 to 3000", Assert.Throws<ArgumentException>(() => BinaryCodes.Nearest(query, codes, words, n + 1)).Message);
    }

    /// <summary>Four well-separated clusters in 32-d: a 64-bit code's nearest neighbours are of the query's cluster.</summary>
    [Theory]
    [InlineData("autoencoder")]
    [InlineData("lsh")]
    public void CodesKeepClustersApart(string kind)
    {
        const int d = 32, perClass = 150, classes = 4;
        var rng = new Random(1);
        float[][] centres = Enumerable.Range(0, classes).Select(_ => Enumerable.Range(0, d).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray()).ToArray();
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
        BinaryCoder coder = kind == "lsh" ? BinaryCodes.RandomProjections(rows, d, 64, seed: 2) : BinaryCodes.TrainAutoencoder(rows, d, 64, seed: 2, epochs: 15, batch: 60);
        ulong[] codes = coder.Encode(rows);
        Assert.Equal(labels.Length * 1, codes.Length);
        double hits = 0;
        for (int q = 0; q < 40; q++)
        {
            hits += BinaryCodes.Nearest(codes.AsSpan(q, 1), codes, 1, 10).Count(h => labels[h.Index] == labels[q]);
        }
        Assert.True(hits / 400 > 0.95, $"{kind}: precision@10 {hits / 400:P1}");
        Assert.Contains("32-d", Assert.Throws<ArgumentException>(() => coder.Encode(new float[33])).Message);
    }
}

/// <summary>`alexnet codes eval` refuses queries and a database written from different nets, naming both files.</summary>
public class CodesCommandTests
{
    [Fact]
    public void FeaturesOfDifferentCheckpointsAreRefused()
    {
        using var dir = new TestData.TempDir();
        void Write(string name, string checkpoint)
        {
            System.IO.File.WriteAllBytes(dir[name], new byte[2 * 3 * 4]);
            Json.Write(dir[name] + ".json", new FeatureHeader("alexnet-features-v1", "fc7", 2, 3, dir["store"], checkpoint));
        }
        Write("train.f32", "/runs/a/last.ckpt");
        Write("test.f32", "/runs/b/last.ckpt");
        AlexNet.Tests.Cli.CliCapture.Refuses(2, new[] { "codes", "eval", "-f", dir["train.f32"], "-q", dir["test.f32"] },
            $"{dir["test.f32"]} holds fc7 of /runs/b/last.ckpt, {dir["train.f32"]} fc7 of /runs/a/last.ckpt");
    }
}
