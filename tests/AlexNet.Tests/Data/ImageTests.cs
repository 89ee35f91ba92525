using System;
using System.IO;
using System.Linq;
using AlexNet.Data;
using SkiaSharp;
using Xunit;

namespace AlexNet.Tests.Data;

/// <summary>§2's rescale-and-crop on images of known geometry, and every kind of bad input.</summary>
public class ImageTests
{
    private static readonly SKColor Red = new(255, 0, 0), Green = new(0, 255, 0), Blue = new(0, 0, 255);

    /// <summary>The mean colour of a square of the planar output.</summary>
    private static (double R, double G, double B) MeanColour(byte[] chw, int size, int x0, int y0, int side)
    {
        int plane = size * size;
        double r = 0, g = 0, b = 0;
        for (int y = y0; y < y0 + side; y++)
        {
            for (int x = x0; x < x0 + side; x++)
            {
                r += chw[y * size + x];
                g += chw[plane + y * size + x];
                b += chw[2 * plane + y * size + x];
            }
        }
        double n = side * side;
        return (r / n, g / n, b / n);
    }

    [Theory]
    [InlineData(600, 300)]   // landscape: thirds across
    [InlineData(300, 600)]   // portrait: thirds down
    [InlineData(120, 60)]    // smaller than 256: upscaled
    public void TheCentralSquareOfTheRescaledImageIsKept(int width, int height)
    {
        // Outer thirds red and blue, the middle third green: after §2 only green (and the edges of its neighbours)
        // remain.
        bool landscape = width > height;
        byte[] png = TestData.Encode(width, height, (x, y) =>
        {
            int t = landscape ? x * 3 / width : y * 3 / height;
            return t == 0 ? Red : t == 1 ? Green : Blue;
        });
        byte[] chw = ImageDecoder.CentreSquare(png, 256);
        Assert.Equal(3 * 256 * 256, chw.Length);
        var centre = MeanColour(chw, 256, 96, 96, 64);
        Assert.True(centre.G > 250 && centre.R < 5 && centre.B < 5, $"centre {centre}");
        // Of a 2:1 image the square is the middle half, so a sixth of it at each edge lies in the red and blue thirds.
        var edgeA = landscape ? MeanColour(chw, 256, 0, 120, 16) : MeanColour(chw, 256, 120, 0, 16);
        var edgeB = landscape ? MeanColour(chw, 256, 240, 120, 16) : MeanColour(chw, 256, 120, 240, 16);
        Assert.True(edgeA.R > 200, $"first edge {edgeA}");
        Assert.True(edgeB.B > 200, $"last edge {edgeB}");
    }

    [Fact]
    public void GrayscaleAndJpegAndWebpBecomeRgb()
    {
        byte[] gray = TestData.Encode(300, 300, (x, y) => new SKColor(128, 128, 128),
            SKEncodedImageFormat.Png, SKColorType.Gray8);
        var g = MeanColour(ImageDecoder.CentreSquare(gray, 256), 256, 0, 0, 256);
        Assert.InRange(g.R, 126, 130);
        Assert.Equal(g.R, g.G, 3);
        Assert.Equal(g.G, g.B, 3);
        foreach (SKEncodedImageFormat format in new[] { SKEncodedImageFormat.Jpeg, SKEncodedImageFormat.Webp })
        {
            byte[] encoded = TestData.Encode(400, 300, (x, y) => Blue, format);
            var c = MeanColour(ImageDecoder.CentreSquare(encoded, 256), 256, 64, 64, 128);
            Assert.True(c.B > 240 && c.R < 15 && c.G < 15, $"{format}: {c}");
        }
    }

    [Fact]
    public void ExifOrientationIsHonoured()
    {
        // Stored 200×100: left half red, right half blue. Orientation 6 (rotate 90° clockwise) stands it up as
        // 100×200 with red on top; the central square then has red above blue, not red left of blue.
        byte[] jpeg = TestData.Encode(200, 100, (x, y) => x < 100 ? Red : Blue, SKEncodedImageFormat.Jpeg);
        byte[] upright = ImageDecoder.CentreSquare(jpeg, 64);
        byte[] rotated = ImageDecoder.CentreSquare(TestData.WithExifOrientation(jpeg, 6), 64);
        Assert.True(MeanColour(upright, 64, 48, 4, 12).B > 200, "without EXIF: right half blue");
        Assert.True(MeanColour(rotated, 64, 48, 4, 12).R > 200, "with EXIF 6: top half red");
        Assert.True(MeanColour(rotated, 64, 48, 48, 12).B > 200, "with EXIF 6: bottom half blue");
    }

    [Fact]
    public void RealPhotosFromDebianDecode()
    {
        string[] photos = Directory.GetFiles("/usr/share/darknet/data", "*.jpg");
        Assert.NotEmpty(photos);
        foreach (string photo in photos)
        {
            byte[] chw = ImageDecoder.CentreSquare(photo, 256);
            Assert.Equal(3 * 256 * 256, chw.Length);
            Assert.True(chw.Distinct().Count() > 50, $"{photo} decoded to a flat image");
        }
    }

    [Fact]
    public void EveryKindOfBadInputIsRejectedWithItsReasonWhileGoodImagesArrive()
    {
        using var dir = new TestData.TempDir();
        string cats = dir["root/cat"], dogs = dir["root/dog"];
        Directory.CreateDirectory(cats);
        Directory.CreateDirectory(dogs);
        byte[] good = TestData.Encode(80, 60, (x, y) => Green, SKEncodedImageFormat.Jpeg);
        File.WriteAllBytes(Path.Combine(cats, "a.jpg"), good);
        File.WriteAllBytes(Path.Combine(cats, "b.png"), TestData.Encode(50, 90, (x, y) => Red));
        File.WriteAllBytes(Path.Combine(dogs, "c.jpg"), good);
        File.WriteAllBytes(Path.Combine(cats, "empty.jpg"), Array.Empty<byte>());
        File.WriteAllBytes(Path.Combine(cats, "truncated.jpg"), good[..(good.Length / 2)]);
        File.WriteAllText(Path.Combine(dogs, "notes.txt"), "not an image at all");
        File.WriteAllBytes(Path.Combine(dogs, "corrupt.jpg"),
            Enumerable.Range(0, 500).Select(i => (byte)(i * 7)).ToArray());
        File.WriteAllBytes(Path.Combine(dogs, "huge.png"), TestData.PngDeclaring(20_000, 20_000));

        ImageFolder folder = ImageFolder.FromClassFolders(dir["root"]);
        PrepareSummary summary = FolderPreparer.Prepare(folder, dir["store"], 32, threads: 2);
        Assert.Equal(3, summary.Written);
        Assert.Equal(5, summary.Rejected);
        var reasons = File.ReadAllLines(summary.RejectsFile).Select(l => l.Split('\t')).ToDictionary(p =>
            Path.GetFileName(p[0]), p => p[1]);
        Assert.Contains("empty", reasons["empty.jpg"]);
        Assert.Contains("truncated", reasons["truncated.jpg"]);
        Assert.Contains("not a decodable image", reasons["notes.txt"]);
        Assert.Contains("not a decodable image", reasons["corrupt.jpg"]);
        Assert.Contains("megapixel", reasons["huge.png"]);
        using ImageStore s = ImageStore.Open(dir["store"]);
        Assert.Equal(new[] { 0, 0, 1 }, s.Labels);
        Assert.Equal(new[] { "cat", "dog" }, s.Manifest.Classes.Select(c => c.Id));
        Assert.EndsWith("a.jpg", s.Sources()[0]);
    }

    [Fact]
    public void WrongLayoutsGetAnErrorSayingWhichLayoutIsExpected()
    {
        using var dir = new TestData.TempDir();
        Assert.Contains("does not exist",
            Assert.Throws<DirectoryNotFoundException>(() => ImageFolder.FromClassFolders(dir["missing"])).Message);
        Directory.CreateDirectory(dir["flat"]);
        File.WriteAllBytes(dir["flat/x.png"], TestData.Encode(8, 8, (x, y) => Red));
        var noClasses = Assert.Throws<InvalidDataException>(() => ImageFolder.FromClassFolders(dir["flat"]));
        Assert.Contains("ROOT/<class>/<image>", noClasses.Message);
        Directory.CreateDirectory(dir["flat/empty-class"]);
        Assert.Contains("is empty",
            Assert.Throws<InvalidDataException>(() => ImageFolder.FromClassFolders(dir["flat"])).Message);
    }

    [Fact]
    public void TheFlatIlsvrcValidationLayoutReadsItsGroundTruth()
    {
        using var dir = new TestData.TempDir();
        Directory.CreateDirectory(dir["val"]);
        for (int i = 1; i <= 3; i++)
        {
            File.WriteAllBytes(dir[$"val/ILSVRC2012_val_0000000{i}.JPEG"],
                TestData.Encode(40, 40, (x, y) => Red, SKEncodedImageFormat.Jpeg));
        }
        // The devkit's file begins 490, 361, 171: ILSVRC2012_IDs in the devkit's order, n01751748 (sea snake),
        // n09193705 (alp), n02105855 (Shetland sheepdog). Sea snake is class 65 of the id-sorted classes.
        File.WriteAllLines(dir["gt.txt"], new[] { "490", "361", "171" });
        ImageFolder f = ImageFolder.FromFlat(dir["val"], dir["gt.txt"]);
        string[] ids = f.Items.Select(i => f.Classes[i.Label].Id).ToArray();
        Assert.Equal(new[] { "n01751748", "n09193705", "n02105855" }, ids);
        Assert.Equal(65, f.Items[0].Label);
        Assert.Equal("sea snake", f.Classes[65].Name);
        Assert.Equal("alp", f.Classes[f.Items[1].Label].Name);
        // The same truth as one wnid per line, and as LOC_val_solution.csv (rows in any order, matched by file name).
        File.WriteAllLines(dir["wnids.txt"], new[] { "n01751748", "n09193705", "n02105855" });
        Assert.Equal(f.Items.Select(i => i.Label),
            ImageFolder.FromFlat(dir["val"], dir["wnids.txt"]).Items.Select(i => i.Label));
        File.WriteAllLines(dir["LOC_val_solution.csv"], new[] { "ImageId,PredictionString",
            "ILSVRC2012_val_00000003,n02105855 10 20 100 200 n02105855 5 5 50 50",
                "ILSVRC2012_val_00000001,n01751748 1 2 3 4",
            "ILSVRC2012_val_00000002,n09193705 0 0 9 9" });
        Assert.Equal(f.Items.Select(i => i.Label),
            ImageFolder.FromFlat(dir["val"], dir["LOC_val_solution.csv"]).Items.Select(i => i.Label));
        File.WriteAllLines(dir["gt.txt"], new[] { "1001", "1", "1" });
        Assert.Contains("neither an ILSVRC2012_ID",
            Assert.Throws<InvalidDataException>(() => ImageFolder.FromFlat(dir["val"], dir["gt.txt"])).Message);
        File.WriteAllLines(dir["gt.txt"], new[] { "1", "2" });
        Assert.Contains("2 labels for 3 files",
            Assert.Throws<InvalidDataException>(() => ImageFolder.FromFlat(dir["val"], dir["gt.txt"])).Message);
    }
}
