using System;
using System.Linq;
using AlexNet.Data;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Data;

/// <summary>§4.1's crops, reflections and PCA noise, and the loader's determinism.</summary>
public class AugmentationTests
{
    private const int S = 8;

    /// <summary>An 8×8 one-channel record whose pixel (y, x) holds 10y + x.</summary>
    private static byte[] Ramp() => Enumerable.Range(0, S * S).Select(i => (byte)(i / S * 10 + i % S)).ToArray();

    private static PcaStats NoPca(int c) => new(new double[c], Enumerable.Range(0, c).Select(i => Enumerable.Range(0,
        c).Select(j => i == j ? 1.0 : 0).ToArray()).ToArray(), Array.Empty<double[]>());

    private static Augmentation Plain(int crop, int pad = 0) =>
        new(1, S, S, new float[S * S], NoPca(1), new AugmentOptions(crop, pad, PcaStd: 0, SubtractMean: false));

    [Theory]
    [InlineData(View.TopLeft, 0, 0, false)]
    [InlineData(View.TopRight, 0, 2, false)]
    [InlineData(View.BottomLeft, 2, 0, false)]
    [InlineData(View.BottomRight, 2, 2, false)]
    [InlineData(View.Centre, 1, 1, false)]
    [InlineData(View.TopLeftFlipped, 0, 0, true)]
    [InlineData(View.CentreFlipped, 1, 1, true)]
    [InlineData(View.BottomRightFlipped, 2, 2, true)]
    public void TheTenViewsArePlacedAndReflectedAsSection41Says(View view, int top, int left, bool flipped)
    {
        Augmentation aug = Plain(crop: 6);
        var output = new float[36];
        aug.Test(Ramp(), output, view);
        for (int y = 0; y < 6; y++)
        {
            for (int x = 0; x < 6; x++)
            {
                int sx = left + (flipped ? 5 - x : x);
                Assert.Equal(10 * (top + y) + sx, output[y * 6 + x]);
            }
        }
    }

    [Fact]
    public void PaddedCropsReadZeroOutsideTheImageAndCentreCropIsTheImage()
    {
        Augmentation aug = Plain(crop: S, pad: 2);
        var centre = new float[S * S];
        aug.Test(Ramp(), centre, View.Centre);
        Assert.Equal(Ramp().Select(b => (float)b), centre);
        var corner = new float[S * S];
        aug.Test(Ramp(), corner, View.TopLeft);   // shifted by the 2-pixel padding
        Assert.Equal(0f, corner[0]);
        Assert.Equal(0f, corner[1 * S + 1]);
        Assert.Equal(0f, corner[2 * S + 2 - 1]);
        Assert.Equal(Ramp()[0], corner[2 * S + 2]);
    }

    [Fact]
    public void MeanSubtractionAndScaleApply()
    {
        float[] mean = Enumerable.Repeat(5f, S * S).ToArray();
        var aug = new Augmentation(1, S, S, mean, NoPca(1),
            new AugmentOptions(S, PcaStd: 0, Scale: 0.5f, RandomCrop: false, Flip: false));
        var output = new float[S * S];
        var rng = new Rng(1);
        aug.Train(Ramp(), output, ref rng);
        Assert.Equal((Ramp()[13] - 5f) * 0.5f, output[13]);
    }

    [Fact]
    public void PcaNoiseHasTheStatedStatistics()
    {
        // p1 = (1,1,0)/√2 with λ1 = 400 (σ 20 along it), p2 = (1,−1,0)/√2 with λ2 = 25, p3 = (0,0,1) with λ3 = 0.
        double r = Math.Sqrt(0.5);
        var pca = new PcaStats(new[] { 400.0, 25.0, 0.0 },
            new[] { new[] { r, r, 0 }, new[] { r, -r, 0 }, new[] { 0.0, 0, 1 } }, Array.Empty<double[]>());
        var aug = new Augmentation(3, 2, 2, new float[12], pca,
            new AugmentOptions(2, RandomCrop: false, Flip: false, PcaStd: 0.1, SubtractMean: false));
        var record = new byte[12];
        var output = new float[12];
        int n = 20_000;
        double s1 = 0, s11 = 0, s2 = 0, s22 = 0, s3 = 0;
        for (int i = 0; i < n; i++)
        {
            Rng rng = Rng.For(7, 0, i);
            aug.Train(record, output, ref rng);
            double red = output[0], green = output[4], blue = output[8];
            Assert.Equal(red, output[3], 4);                 // the same shift on every pixel of a channel
            double a1 = (red + green) * r, a2 = (red - green) * r;   // coordinates along p1, p2
            s1 += a1;
            s11 += a1 * a1;
            s2 += a2;
            s22 += a2 * a2;
            s3 += Math.Abs(blue);
        }
        Assert.InRange(s1 / n, -0.1, 0.1);
        Assert.InRange(Math.Sqrt(s11 / n), 0.1 * 20 * 0.97, 0.1 * 20 * 1.03);   // α σ: 0.1 × √400
        Assert.InRange(Math.Sqrt(s22 / n), 0.1 * 5 * 0.97, 0.1 * 5 * 1.03);
        Assert.Equal(0, s3);
    }

    [Fact]
    public void TrainingCropsAreRandomButFixedBySeedEpochAndImage()
    {
        Augmentation aug = new(1, S, S, new float[S * S], NoPca(1),
            new AugmentOptions(6, PcaStd: 0, SubtractMean: false));
        float[] Cut(long seed, int epoch, int image)
        {
            var o = new float[36];
            Rng rng = Rng.For(seed, epoch, image);
            aug.Train(Ramp(), o, ref rng);
            return o;
        }
        Assert.Equal(Cut(1, 2, 3), Cut(1, 2, 3));
        var distinct = Enumerable.Range(0, 40).Select(e => string.Join(",", Cut(1, e, 3))).Distinct().Count();
        Assert.InRange(distinct, 10, 18);   // 3×3 positions × 2 reflections = 18 possible patches
    }

    [Fact]
    public void LoaderBatchesDependOnlyOnSeedAndEpochNotOnWorkers()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["s"], 50, 5);
        using ImageStore store = ImageStore.Open(dir["s"]);
        var aug = new Augmentation(store, AugmentOptions.PaperFor(28));
        float[][] Epoch(int workers, int epoch) => new BatchLoader(store, aug,
            new LoaderOptions(16, workers)).TrainEpoch(3, epoch)
            .Select(b => { using (b) { return b.Inputs.data<float>().ToArray().Concat(b.Labels.data<long>().ToArray().Select(l => (float)l)).ToArray(); } }).ToArray();
        float[][] one = Epoch(1, 0), two = Epoch(2, 0), again = Epoch(2, 0), next = Epoch(1, 1);
        Assert.Equal(4, one.Length);   // 50 images in batches of 16: 16, 16, 16, 2
        for (int b = 0; b < one.Length; b++)
        {
            Assert.Equal(one[b], two[b]);
            Assert.Equal(one[b], again[b]);
        }
        Assert.NotEqual(one[0], next[0]);
        // Each epoch visits every image once.
        var loader = new BatchLoader(store, aug, new LoaderOptions(16, 2));
        var seen = loader.TrainEpoch(3,
            5).SelectMany(b => { using (b) { return b.Indices; } }).OrderBy(i => i).ToArray();
        Assert.Equal(Enumerable.Range(0, 50), seen);
    }

    [Fact]
    public void StoppingEarlyFreesTheWorkers()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["s"], 200, 4);
        using ImageStore store = ImageStore.Open(dir["s"]);
        var loader = new BatchLoader(store,
            new Augmentation(store, AugmentOptions.PaperFor(28)), new LoaderOptions(8, 2, 2));
        using (Batch first = loader.TrainEpoch(1, 0).First())
        {
            Assert.Equal(8, first.Count);
        }
        using Batch skipped = loader.TrainEpoch(1, 0, skip: 24).First();   // resume from the last batch
        Assert.Equal(8, skipped.Count);
        Assert.Equal(BatchLoader.Order(200, 1, 0).Skip(192).Take(8), skipped.Indices);
    }
}
