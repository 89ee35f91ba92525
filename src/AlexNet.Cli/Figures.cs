using System;
using System.Collections.Generic;
using System.IO;
using SkiaSharp;

namespace AlexNet.Cli;

/// <summary>Pictures drawn with SkiaSharp.</summary>
internal static class Figures
{
    /// <summary>Figure 4 (left): each image with its top-5 classes as bars, the first bar highlighted.</summary>
    public static void Predictions(IReadOnlyList<PredictCommand.Prediction> predictions, string path)
    {
        const int cell = 260, thumb = 160, pad = 10;
        int columns = Math.Min(4, predictions.Count);
        int rows = (predictions.Count + columns - 1) / columns;
        using var surface = SKSurface.Create(new SKImageInfo(columns * cell, rows * (thumb + 130)));
        SKCanvas canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var font = new SKFont(SKTypeface.Default, 12);
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var bar = new SKPaint { Color = new SKColor(0x4c, 0x72, 0xb0) };
        using var first = new SKPaint { Color = new SKColor(0xdd, 0x84, 0x52) };
        for (int n = 0; n < predictions.Count; n++)
        {
            PredictCommand.Prediction p = predictions[n];
            float x0 = n % columns * cell + pad, y0 = n / columns * (thumb + 130) + pad;
            using SKBitmap image = ToBitmap(p.Thumbnail, p.ThumbnailSide, p.ThumbnailChannels);
            canvas.DrawBitmap(image, SKRect.Create(x0 + (cell - 2 * pad - thumb) / 2f, y0, thumb, thumb));
            canvas.DrawText(Path.GetFileName(p.File), x0, y0 + thumb + 14, SKTextAlign.Left, font, text);
            for (int k = 0; k < p.Top.Length; k++)
            {
                float y = y0 + thumb + 22 + k * 20;
                float width = (float)(p.Top[k].Probability * (cell - 2 * pad));
                canvas.DrawRect(SKRect.Create(x0, y, Math.Max(width, 1), 16), k == 0 ? first : bar);
                string label = p.Top[k].Name.Length > 34 ? p.Top[k].Name[..34] + "…" : p.Top[k].Name;
                canvas.DrawText($"{label} {p.Top[k].Probability:P1}", x0 + 2, y + 12, SKTextAlign.Left, font, text);
            }
        }
        Save(surface, path);
    }

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

    public static void Save(SKSurface surface, string path)
    {
        using SKImage image = surface.Snapshot();
        using SKData data = image.Encode(SKEncodedImageFormat.Png, 100);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }
        using FileStream f = File.Create(path);
        data.SaveTo(f);
    }
}
