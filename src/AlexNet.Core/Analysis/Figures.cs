// Pictures of §6.1 drawn with SkiaSharp: Figure 4 (left), an image with its five most probable classes, and
// Figure 4 (right), a query with its nearest training images.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Evaluation;
using SkiaSharp;

namespace AlexNet.Analysis;

public static class Figures
{
    /// <summary>
    /// Figure 4 (left): each image with its correct label under it (where known, else the file name) and its top-5
    /// classes as bars; the bar of the correct class is red, as in the paper, the others blue.
    /// </summary>
    public static void Predictions(IReadOnlyList<Prediction> predictions, string path)
    {
        const int cell = 260, thumb = 160, pad = 10;
        int columns = Math.Max(1, Math.Min(4, predictions.Count));
        int rows = (predictions.Count + columns - 1) / columns;
        using var surface = SKSurface.Create(new SKImageInfo(columns * cell, Math.Max(1, rows) * (thumb + 130)));
        SKCanvas canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var font = new SKFont(SKTypeface.Default, 12);
        using var bold = new SKFont(SKTypeface.FromFamilyName(null, SKFontStyle.Bold), 12);
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var bar = new SKPaint { Color = new SKColor(0x4c, 0x72, 0xb0) };
        using var correct = new SKPaint { Color = new SKColor(0xc4, 0x2e, 0x2e) };
        for (int n = 0; n < predictions.Count; n++)
        {
            Prediction p = predictions[n];
            float x0 = n % columns * cell + pad, y0 = n / columns * (thumb + 130) + pad;
            using SKBitmap image = ToBitmap(p.Record, p.Side, p.Channels);
            canvas.DrawBitmap(image, SKRect.Create(x0 + (cell - 2 * pad - thumb) / 2f, y0, thumb, thumb));
            canvas.DrawText(Shorten(p.TrueName ?? Path.GetFileName(p.Source)), x0, y0 + thumb + 14,
                SKTextAlign.Left, bold, text);
            for (int k = 0; k < p.Top.Length; k++)
            {
                float y = y0 + thumb + 22 + k * 20;
                float width = (float)(p.Top[k].Probability * (cell - 2 * pad));
                canvas.DrawRect(SKRect.Create(x0, y, Math.Max(width, 1), 16),
                    p.Top[k].Index == p.TrueClass ? correct : bar);
                canvas.DrawText($"{Shorten(p.Top[k].Name)} {p.Top[k].Probability:P1}", x0 + 2, y + 12,
                    SKTextAlign.Left, font, text);
            }
        }
        Save(surface, path);
    }

    /// <summary>Figure 4 (right): the query first, then its neighbours in the store.</summary>
    public static void Neighbours(ImageStore store, byte[] query, IReadOnlyList<int> neighbours, string path)
    {
        const int thumb = 96, pad = 6;
        using var surface = SKSurface.Create(new SKImageInfo((neighbours.Count + 1) * (thumb +
            pad) + pad + 10, thumb + 2 * pad));
        surface.Canvas.Clear(SKColors.White);
        void Put(byte[] record, float x)
        {
            using SKBitmap b = ToBitmap(record, store.Height, store.Channels);
            surface.Canvas.DrawBitmap(b, SKRect.Create(x, pad, thumb, thumb));
        }
        Put(query, pad);
        for (int i = 0; i < neighbours.Count; i++)
        {
            Put(store.Record(neighbours[i]).ToArray(), pad + 10 + (i + 1) * (thumb + pad));
        }
        Save(surface, path);
    }

    /// <summary>
    /// §6.1's comparison as Figure 4 (right) draws it: one row per (method, query), its name, the query, then its
    /// neighbours in <paramref name="store"/>; a neighbour of another class than the query's is framed in red.
    /// </summary>
    public static void RetrievalRows(ImageStore store,
        IReadOnlyList<(string Method, byte[] Query, int Label, int[] Neighbours)> rows, string path)
    {
        const int thumb = 56, pad = 6, label = 235;
        int most = rows.Max(r => r.Neighbours.Length);
        using var surface = SKSurface.Create(new SKImageInfo(label + (most + 1) * (thumb + pad) + 10 + pad,
            rows.Count * (thumb + pad) + pad));
        SKCanvas canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var font = new SKFont(SKTypeface.Default, 12);
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var wrong = new SKPaint
        {
            Color = new SKColor(0xc4, 0x2e, 0x2e),
            Style = SKPaintStyle.Stroke,
            StrokeWidth = 3,
        };
        for (int r = 0; r < rows.Count; r++)
        {
            float y = pad + r * (thumb + pad);
            canvas.DrawText(rows[r].Method, pad, y + thumb / 2f + 4, SKTextAlign.Left, font, text);
            void Put(byte[] record, float x)
            {
                using SKBitmap b = ToBitmap(record, store.Height, store.Channels);
                canvas.DrawBitmap(b, SKRect.Create(x, y, thumb, thumb));
            }
            Put(rows[r].Query, label);
            for (int i = 0; i < rows[r].Neighbours.Length; i++)
            {
                float x = label + 10 + (i + 1) * (thumb + pad);
                Put(store.Record(rows[r].Neighbours[i]).ToArray(), x);
                if (store.Labels[rows[r].Neighbours[i]] != rows[r].Label)
                {
                    canvas.DrawRect(SKRect.Create(x + 1.5f, y + 1.5f, thumb - 3, thumb - 3), wrong);
                }
            }
        }
        Save(surface, path);
    }

    private static string Shorten(string label) => label.Length > 34 ? label[..34] + "…" : label;

    /// <summary>A planar record (C×side×side bytes, C = 1 or 3) as a bitmap.</summary>
    public static SKBitmap ToBitmap(byte[] planar, int side, int channels)
    {
        var bitmap = new SKBitmap(new SKImageInfo(side, side, SKColorType.Rgba8888, SKAlphaType.Opaque));
        Span<byte> px = bitmap.GetPixelSpan();
        int plane = side * side;
        for (int i = 0; i < plane; i++)
        {
            px[4 * i] = planar[i];
            px[4 * i + 1] = planar[channels == 3 ? plane + i : i];
            px[4 * i + 2] = planar[channels == 3 ? 2 * plane + i : i];
            px[4 * i + 3] = 255;
        }
        return bitmap;
    }

    /// <summary>
    /// A planar record as PNG bytes, each pixel drawn <paramref name="scale"/>× (a 28-px record is too small to see).
    /// </summary>
    public static byte[] RecordPng(byte[] planar, int side, int channels, int scale = 1)
    {
        using SKBitmap bitmap = ToBitmap(planar, side, channels);
        using SKBitmap scaled = scale == 1 ? bitmap.Copy() : bitmap.Resize(new SKImageInfo(side * scale, side * scale),
            new SKSamplingOptions(SKFilterMode.Nearest));
        using SKData data = scaled.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>Writes the surface as a PNG, replacing <paramref name="path"/> whole.</summary>
    public static void Save(SKSurface surface, string path)
    {
        using SKImage image = surface.Snapshot();
        using SKData data = image.Encode(SKEncodedImageFormat.Png, 100);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }
        AtomicFile.WriteAllBytes(path, data.ToArray());
    }
}
