using System;
using System.IO;
using System.Linq;
using AlexNet.Data;
using Xunit;

namespace AlexNet.Tests.Data;

/// <summary>
/// The compressed store: records encoded once as JPEGs, decoded on read; resumable; space checked before writing.
/// </summary>
public class JpegStoreTests
{
    private static byte[] Smooth(int channels, int side, int seed)
    {
        var r = new byte[channels * side * side];
        for (int c = 0; c < channels; c++)
        {
            for (int y = 0; y < side; y++)
            {
                for (int x = 0; x < side; x++)
                {
                    r[(c * side + y) * side + x] = (byte)(128 +
                        100 * Math.Sin((x + 3 * seed + 11 * c) / 5.0) * Math.Cos((y - seed) / 7.0));
                }
            }
        }
        return r;
    }

    [Theory]
    [InlineData(3)]
    [InlineData(1)]
    public void RecordsComeBackCloseToWhatWasWritten(int channels)
    {
        using var dir = new TestData.TempDir();
        const int side = 32;
        using (var w = new StoreWriter(dir["s"], channels, side, side, "fp", RecordEncoding.Jpeg, quality: 90))
        {
            for (int i = 0; i < 5; i++)
            {
                w.Add(Smooth(channels, side, i), i % 2, $"img{i}");
            }
            w.Finish(new[] { new ClassInfo("a", "a"), new ClassInfo("b", "b") }, "test");
        }
        using ImageStore store = ImageStore.Open(dir["s"]);
        Assert.Equal(RecordEncoding.Jpeg, store.Manifest.Encoding);
        Assert.Equal(90, store.Manifest.Quality);
        Assert.True(store.ImageBytes < 5 * channels * side * side, $"{store.ImageBytes} bytes");
        for (int i = 0; i < 5; i++)
        {
            byte[] expected = Smooth(channels, side, i);
            byte[] got = store.Record(i).ToArray();
            double mae = expected.Zip(got, (a, b) => Math.Abs(a - b)).Average();
            Assert.True(mae < 3, $"record {i}: mean absolute error {mae:F2}");
        }
        Assert.Equal(new[] { 0, 1, 0, 1, 0 }, store.Labels);
        // The mean image is of the records as written (before compression), exactly.
        Assert.Equal(Enumerable.Range(0, 5).Average(i => (double)Smooth(channels, side, i)[7]), store.Mean[7], 4);
    }

    [Fact]
    public void AnInterruptedJpegStoreResumesToTheSameStore()
    {
        using var dir = new TestData.TempDir();
        void Write(string d, int first, int last, bool finish)
        {
            using var w = new StoreWriter(d, 3, 16, 16, "fp", RecordEncoding.Jpeg);
            for (int i = Math.Max(first, w.InputsDone); i < last; i++)
            {
                w.Add(Smooth(3, 16, i), 0, $"img{i}");
                if (i % 2 == 1)
                {
                    w.Commit();
                }
            }
            if (finish)
            {
                w.Finish(new[] { new ClassInfo("a", "a"), new ClassInfo("b", "b") }, "t");
            }
        }
        Write(dir["whole"], 0, 6, finish: true);
        Write(dir["split"], 0, 5, finish: false);   // stops after committing 4 (the 5th is not committed)
        Write(dir["split"], 0, 6, finish: true);
        foreach (string f in new[] { ImageStore.JpegFile, ImageStore.OffsetsFile,
            ImageStore.LabelsFile, ImageStore.MeanFile })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir["whole"], f)),
                File.ReadAllBytes(Path.Combine(dir["split"], f)));
        }
    }

    [Fact]
    public void ADiskTooSmallIsRefusedBeforeWritingAndTheFolderResumes()
    {
        using var dir = new TestData.TempDir();
        using (var w = new StoreWriter(dir["s"], 3, 256, 256, "fp"))
        {
            var e = Assert.Throws<IOException>(() => w.EnsureSpace(int.MaxValue));   // 2³¹ raw records: ~400 TB
            Assert.Contains("needs about", e.Message);
            Assert.Contains("free", e.Message);
            Assert.Contains("run the same command again", e.Message);
            w.EnsureSpace(10);
        }
        // The folder is a prepare under way from its first moment: the same command takes it up.
        using var again = new StoreWriter(dir["s"], 3, 256, 256, "fp");
        Assert.Equal(0, again.InputsDone);
    }

    [Fact]
    public void AFailedWriteLeavesThePreviousFileWholeAndSaysSo()
    {
        using var dir = new TestData.TempDir();
        string path = dir["last.ckpt"];
        AtomicFile.WriteAllText(path, "good");
        var e = Assert.Throws<IOException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[1000]);
            throw new IOException("No space left on device");
        }));
        Assert.Contains("No space left on device", e.Message);
        Assert.Contains("is intact", e.Message);
        Assert.Equal("good", File.ReadAllText(path));
        Assert.False(File.Exists(path + ".tmp"));
    }
}
