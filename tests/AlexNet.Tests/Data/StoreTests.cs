using System;
using System.IO;
using System.Linq;
using AlexNet.Data;
using Xunit;

namespace AlexNet.Tests.Data;

public class StoreTests
{
    private static ClassInfo[] Classes(int n) =>
        Enumerable.Range(0, n).Select(i => new ClassInfo($"c{i}", $"class {i}")).ToArray();

    [Fact]
    public void RoundTripKeepsRecordsLabelsSourcesAndMean()
    {
        using var dir = new TestData.TempDir();
        var records = Enumerable.Range(0,
            5).Select(i => Enumerable.Range(0, 3 * 4 * 4).Select(p => (byte)(i * 40 + p)).ToArray()).ToArray();
        using (var w = new StoreWriter(dir["s"], 3, 4, 4, "fp"))
        {
            for (int i = 0; i < 5; i++)
            {
                w.Add(records[i], i % 2, $"file{i}.png");
            }
            w.Finish(Classes(2), "test");
        }
        using ImageStore s = ImageStore.Open(dir["s"]);
        Assert.Equal(5, s.Count);
        Assert.Equal((3, 4, 4), (s.Channels, s.Height, s.Width));
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(records[i], s.Record(i).ToArray());
            Assert.Equal(i % 2, s.Labels[i]);
        }
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"file{i}.png"), s.Sources());
        for (int p = 0; p < 48; p++)
        {
            Assert.Equal(records.Average(r => (double)r[p]), s.Mean[p], 4);
        }
        Assert.Equal("class 1", s.Manifest.Classes[1].Name);
    }

    [Fact]
    public void MeanAndPcaMatchADirectFloat64Computation()
    {
        using var dir = new TestData.TempDir();
        var rng = new Rng(5);
        var records = Enumerable.Range(0,
            7).Select(_ => Enumerable.Range(0, 3 * 5 * 5).Select(_ => (byte)rng.Next(256)).ToArray()).ToArray();
        // Correlate the channels so the PCA has structure: G follows R.
        foreach (byte[] r in records)
        {
            for (int p = 0; p < 25; p++)
            {
                r[25 + p] = (byte)(r[p] / 2 + r[25 + p] / 4);
            }
        }
        using (var w = new StoreWriter(dir["s"], 3, 5, 5, "fp"))
        {
            foreach (byte[] r in records)
            {
                w.Add(r, 0, "x");
            }
            w.Finish(Classes(1), "test");
        }
        using ImageStore s = ImageStore.Open(dir["s"]);
        // Covariance of RGB pixel values over all pixels of all images, by hand.
        var pixels = records.SelectMany(r => Enumerable.Range(0,
            25).Select(p => new double[] { r[p], r[25 + p], r[50 + p] })).ToArray();
        double[] mean = Enumerable.Range(0, 3).Select(c => pixels.Average(x => x[c])).ToArray();
        for (int a = 0; a < 3; a++)
        {
            for (int b = 0; b < 3; b++)
            {
                double cov = pixels.Average(x => (x[a] - mean[a]) * (x[b] - mean[b]));
                Assert.Equal(cov, s.Manifest.Pca.Covariance[a][b], 6);
            }
        }
        // Each eigenpair satisfies C p = λ p, eigenvalues descending, vectors orthonormal.
        var pca = s.Manifest.Pca;
        Assert.True(pca.Eigenvalues[0] >= pca.Eigenvalues[1] && pca.Eigenvalues[1] >= pca.Eigenvalues[2]);
        for (int i = 0; i < 3; i++)
        {
            for (int row = 0; row < 3; row++)
            {
                double cp = Enumerable.Range(0, 3).Sum(k => pca.Covariance[row][k] * pca.Eigenvectors[k][i]);
                Assert.Equal(pca.Eigenvalues[i] * pca.Eigenvectors[row][i], cp, 6);
            }
            for (int j = 0; j < 3; j++)
            {
                double dot = Enumerable.Range(0, 3).Sum(k => pca.Eigenvectors[k][i] * pca.Eigenvectors[k][j]);
                Assert.Equal(i == j ? 1.0 : 0.0, dot, 9);
            }
        }
    }

    [Fact]
    public void AnInterruptedPrepareResumesWithoutDuplicatesOrLosses()
    {
        using var dir = new TestData.TempDir();
        byte[] Rec(int i) => Enumerable.Repeat((byte)i, 4).ToArray();
        using (var w = new StoreWriter(dir["s"], 1, 2, 2, "fp"))
        {
            w.Add(Rec(0), 0, "a");
            w.Reject("bad", "not an image");
            w.Add(Rec(2), 1, "c");
            w.Commit();
            w.Add(Rec(3), 1, "d");   // written but not committed: the "crash" loses it
        }
        Assert.Throws<InvalidDataException>(() => ImageStore.Open(dir["s"]));   // incomplete: refused
        using (var w = new StoreWriter(dir["s"], 1, 2, 2, "fp"))
        {
            Assert.Equal(3, w.InputsDone);
            Assert.Equal(2, w.Records);
            Assert.Equal(1, w.Rejected);
            w.Add(Rec(3), 1, "d");
            w.Add(Rec(4), 0, "e");
            w.Finish(Classes(2), "test");
        }
        using ImageStore s = ImageStore.Open(dir["s"]);
        Assert.Equal(new[] { 0, 2, 3, 4 }, Enumerable.Range(0, s.Count).Select(i => (int)s.Record(i)[0]));
        Assert.Equal(new[] { "a", "c", "d", "e" }, s.Sources());
        Assert.Single(File.ReadAllLines(dir["s/rejects.tsv"]));
        Assert.Throws<IOException>(() => new StoreWriter(dir["s"], 1, 2, 2, "fp"));   // complete: never overwritten
    }

    [Fact]
    public void ResumingOverOtherInputsIsRefused()
    {
        using var dir = new TestData.TempDir();
        using (var w = new StoreWriter(dir["s"], 1, 2, 2, "fp-one"))
        {
            w.Add(new byte[4], 0, "a");
            w.Commit();
        }
        var e = Assert.Throws<IOException>(() => new StoreWriter(dir["s"], 1, 2, 2, "fp-two"));
        Assert.Contains("other inputs", e.Message);
    }

    [Fact]
    public void ADamagedStoreGetsAnErrorNamingTheFile()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["s"], 10, 2);
        using (var f = new FileStream(dir["s/images.u8"], FileMode.Open))
        {
            f.SetLength(f.Length - 5);
        }
        var e = Assert.Throws<InvalidDataException>(() => ImageStore.Open(dir["s"]));
        Assert.Contains("images.u8", e.Message);
        Assert.Contains("prepare", e.Message);
    }

    [Fact]
    public void SymmetricEigenOfAKnownMatrix()
    {
        (double[] values,
            double[][] vectors) = DatasetStats.SymmetricEigen(new[] { new[] { 2.0, 1.0 }, new[] { 1.0, 2.0 } });
        Assert.Equal(3.0, values[0], 10);
        Assert.Equal(1.0, values[1], 10);
        Assert.Equal(Math.Sqrt(0.5), vectors[0][0], 10);
        Assert.Equal(Math.Sqrt(0.5), vectors[1][0], 10);
    }

    [Fact]
    public void FashionMnistHasItsCountsAndClasses()
    {
        Assert.True(FashionMnist.IsInstalled(), "dataset-fashion-mnist must be installed (./setup.sh)");
        using var dir = new TestData.TempDir();
        StoreManifest train = FashionMnist.Prepare(FashionMnist.DefaultDirectory, true, dir["train"]);
        StoreManifest test = FashionMnist.Prepare(FashionMnist.DefaultDirectory, false, dir["test"]);
        Assert.Equal(60_000, train.Count);
        Assert.Equal(10_000, test.Count);
        Assert.Equal(10, train.Classes.Length);
        Assert.Equal((1, 28, 28), (train.Channels, train.Height, train.Width));
        using ImageStore s = ImageStore.Open(dir["test"]);
        Assert.Equal(1000, s.Labels.Count(l => l == 3));   // 1,000 test images per class
    }

    [Fact]
    public void Cifar10BinaryBatchesArePrepared()
    {
        using var dir = new TestData.TempDir();
        Directory.CreateDirectory(dir["cifar"]);
        foreach (string name in new[] { "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
            "data_batch_5", "test_batch" })
        {
            var bytes = new byte[3 * Cifar10.RecordBytes];
            for (int r = 0; r < 3; r++)
            {
                bytes[r * Cifar10.RecordBytes] = (byte)r;                              // label
                bytes[r * Cifar10.RecordBytes + 1] = 200;                              // R plane, first pixel
                bytes[r * Cifar10.RecordBytes + 1 + 1024] = 100;                       // G plane, first pixel
            }
            File.WriteAllBytes(dir[$"cifar/{name}.bin"], bytes);
        }
        StoreManifest m = Cifar10.Prepare(dir["cifar"], true, dir["train"]);
        Assert.Equal(15, m.Count);
        using ImageStore s = ImageStore.Open(dir["train"]);
        Assert.Equal((3, 32, 32), (s.Channels, s.Height, s.Width));
        Assert.Equal(new[] { 0, 1, 2 }, s.Labels.Take(3));
        Assert.Equal(200, s.Record(4)[0]);
        Assert.Equal(100, s.Record(4)[1024]);
        Assert.Equal("airplane", s.Manifest.Classes[0].Name);
        File.WriteAllBytes(dir["cifar/test_batch.bin"], new byte[100]);
        Assert.Contains("truncated",
            Assert.Throws<InvalidDataException>(() => Cifar10.Prepare(dir["cifar"], false, dir["test"])).Message);
    }

    [Fact]
    public void TheIlsvrcTableComesFromDebianPackagesInIdOrder()
    {
        var table = ClassNames.Ilsvrc2012();
        Assert.Equal(1000, table.Count);
        Assert.Equal(new ClassInfo("n01440764", "tench, Tinca tinca"), table[0]);
        Assert.Equal("n15075141", table[999].Id);
        Assert.StartsWith("toilet tissue", table[999].Name);
    }
}
