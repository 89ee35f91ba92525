// An ImageNet-shaped data set made from the real photographs that Debian packages ship (opencv-doc's
// examples, darknet's test images, scikit-image's data), for rehearsing the full-scale pipeline without
// ILSVRC-2012: class folders named by the 1000 real WordNet ids (ROOT/train/nXXXXXXXX/*.JPEG), and a flat
// validation folder with the devkit's ground-truth file (ILSVRC2012_IDs in the devkit's order). Each image
// is a random crop of a photograph, resized to a real ImageNet size (333–640 px wide), JPEG quality 90.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using SkiaSharp;

namespace AlexNet.Data;

public sealed record RehearsalSummary(string Root, int Classes, int TrainImages,
    int ValImages, long Bytes, int Photographs);

public static class Rehearsal
{
    /// <summary>Where the photographs come from: the Debian packages named, as installed.</summary>
    public static readonly (string Folder, string Package)[] PhotoFolders =
    {
        ("/usr/share/doc/opencv-doc/examples/data", "opencv-doc"),
        ("/usr/share/darknet/data", "darknet"),
        ("/usr/lib/python3/dist-packages/skimage/data", "python3-skimage"),
    };

    /// <summary>Every JPEG or PNG photograph of those folders whose shorter side is at least 256 px.</summary>
    public static List<string> Photographs()
    {
        var result = new List<string>();
        foreach ((string folder, _) in PhotoFolders.Where(p => Directory.Exists(p.Folder)))
        {
            foreach (string f in Directory.EnumerateFiles(folder).Where(f => f.EndsWith(".jpg",
                StringComparison.OrdinalIgnoreCase)
                || f.EndsWith(".png", StringComparison.OrdinalIgnoreCase)).OrderBy(f => f, StringComparer.Ordinal))
            {
                using SKCodec? codec = SKCodec.Create(f);
                if (codec is not null && Math.Min(codec.Info.Width, codec.Info.Height) >= 256)
                {
                    result.Add(f);
                }
            }
        }
        return result;
    }

    /// <summary>
    /// Writes ROOT/train/&lt;wnid&gt;/&lt;wnid&gt;_K.JPEG (<paramref name="perClass"/> per class, for the first
    /// <paramref name="classes"/> of the id-sorted ILSVRC classes), ROOT/val/ILSVRC2012_val_NNNNNNNN.JPEG and
    /// ROOT/ILSVRC2012_validation_ground_truth.txt (<paramref name="valImages"/> images).
    /// </summary>
    public static RehearsalSummary Write(string root, int classes, int perClass, int valImages, long seed = 1,
        string idsFile = ClassNames.DarknetIds)
    {
        if (classes is < 2 or > 1000 || perClass < 1 || valImages < 0)
        {
            throw new ArgumentException(
                "a rehearsal needs 2–1000 classes, at least 1 image per class and ≥ 0 validation images.");
        }
        if (Directory.Exists(root) && Directory.EnumerateFileSystemEntries(root).Any())
        {
            throw new IOException($"{root} is not empty; choose a new --out (nothing was overwritten).");
        }
        List<string> photos = Photographs();
        if (photos.Count == 0)
        {
            throw new FileNotFoundException(
                $"no photographs found: install the Debian " +
                $"packages {string.Join(", ", PhotoFolders.Select(p => p.Package))} (./setup.sh installs the first " +
                "two).");
        }
        string[] devkit = ClassNames.DevkitOrder(idsFile);
        string[] sorted = devkit.OrderBy(s => s, StringComparer.Ordinal).Take(classes).ToArray();
        var decoded = new Dictionary<string, SKBitmap>();
        var rng = new Random((int)seed);
        long bytes = 0;
        try
        {
            SKBitmap Photo(string path) => decoded.TryGetValue(path,
                out SKBitmap? b) ? b : decoded[path] = SKBitmap.Decode(path);
            void Save(string path)
            {
                byte[] jpeg = RandomView(Photo(photos[rng.Next(photos.Count)]), rng);
                File.WriteAllBytes(path, jpeg);
                bytes += jpeg.Length;
            }
            foreach (string wnid in sorted)
            {
                string dir = Path.Combine(root, "train", wnid);
                Directory.CreateDirectory(dir);
                for (int k = 0; k < perClass; k++)
                {
                    Save(Path.Combine(dir, $"{wnid}_{k + 1}.JPEG"));
                }
            }
            Directory.CreateDirectory(Path.Combine(root, "val"));
            var truth = new List<string>();
            for (int i = 1; i <= valImages; i++)
            {
                Save(Path.Combine(root, "val", $"ILSVRC2012_val_{i:D8}.JPEG"));
                truth.Add((Array.IndexOf(devkit,
                    sorted[rng.Next(sorted.Length)]) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
            File.WriteAllLines(Path.Combine(root, "ILSVRC2012_validation_ground_truth.txt"), truth);
        }
        finally
        {
            foreach (SKBitmap b in decoded.Values)
            {
                b.Dispose();
            }
        }
        return new RehearsalSummary(root, classes, classes * perClass, valImages, bytes, photos.Count);
    }

    /// <summary>
    /// A random crop of the photograph at an ImageNet-like size: 333–640 px wide, 3:4 to 4:3, sometimes mirrored.
    /// </summary>
    private static byte[] RandomView(SKBitmap photo, Random rng)
    {
        // height / width, mostly landscape
        double aspect = new[] { 0.75, 0.667, 1.0, 1.333, 0.75, 0.75 }[rng.Next(6)];
        int width = rng.Next(333, 641);
        int height = (int)Math.Round(width * aspect);
        double fit = Math.Min(photo.Width / (double)width, photo.Height / (double)height);
        double scale = fit * (0.6 + 0.4 * rng.NextDouble());
        int cw = Math.Max(16, (int)(width * scale)), ch = Math.Max(16, (int)(height * scale));
        int x = rng.Next(0, photo.Width - cw + 1), y = rng.Next(0, photo.Height - ch + 1);
        using var surface = SKSurface.Create(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        SKCanvas canvas = surface.Canvas;
        if (rng.Next(2) == 1)
        {
            canvas.Scale(-1, 1, width / 2f, 0);
        }
        using SKImage image = SKImage.FromBitmap(photo);
        canvas.DrawImage(image, SKRect.Create(x, y, cw, ch), SKRect.Create(0, 0, width, height),
            new SKSamplingOptions(SKCubicResampler.Mitchell));
        using SKImage snapshot = surface.Snapshot();
        using SKData data = snapshot.Encode(SKEncodedImageFormat.Jpeg, 90);
        return data.ToArray();
    }
}
