// §2 "we down-sampled the images to a fixed resolution of 256 × 256. Given a rectangular image, we first
// rescaled the image such that the shorter side was of length 256, and then cropped out the central
// 256×256 patch." Decoding is SkiaSharp's (JPEG, PNG, WebP, BMP, GIF's first frame; a JPEG at the smallest
// DCT scale that keeps the shorter side ≥ 256, as PIL's draft mode); grayscale, palette and CMYK come out as
// RGB, alpha is composited over black, EXIF orientation is applied first. The rescale is Resampler.cs's
// antialiased bicubic.
using System;
using System.IO;
using SkiaSharp;

namespace AlexNet.Data;

/// <summary>An input that cannot be used, with the reason a person can act on.</summary>
public sealed class ImageRejectedException(string reason) : Exception(reason);

public static class ImageDecoder
{
    /// <summary>Larger declared sizes are refused before decoding (a 100-megapixel RGBA bitmap is 400 MB).</summary>
    public const long MaxPixels = 100_000_000;

    /// <summary>
    /// Decodes a file and returns §2's central square, <paramref name="size"/>² pixels, as planar RGB bytes.
    /// </summary>
    public static byte[] CentreSquare(string path, int size)
    {
        byte[] data;
        try
        {
            data = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ImageRejectedException($"unreadable: {e.Message}");
        }
        if (data.Length == 0)
        {
            throw new ImageRejectedException("empty file (0 bytes)");
        }
        return CentreSquare(data, size);
    }

    /// <param name="maxPixels">Larger declared sizes are refused before decoding (Decode).</param>
    public static byte[] CentreSquare(byte[] encoded, int size, long maxPixels = MaxPixels)
    {
        using SKBitmap oriented = Decode(encoded, size, maxPixels);
        return CentreSquare(oriented, size);
    }

    /// <summary>
    /// §2's central square of a decoded RGBA image, rescaled to <paramref name="size"/>² (Resampler.cs), planar RGB.
    /// </summary>
    public static byte[] CentreSquare(SKBitmap rgba, int size)
    {
        int side = Math.Min(rgba.Width, rgba.Height);
        return Resampler.SquareToPlanar(rgba.GetPixelSpan(), rgba.RowBytes, (rgba.Width - side) / 2,
            (rgba.Height - side) / 2, side, size);
    }

    /// <summary>
    /// Decodes at the smallest scale the codec offers that keeps the shorter side ≥ <paramref name="minSide"/>, then
    /// orients.
    /// </summary>
    /// <param name="maxPixels">Larger declared sizes are refused before any pixel is decoded (a decompression
    /// bomb).</param>
    public static SKBitmap Decode(byte[] encoded, int minSide, long maxPixels = MaxPixels)
    {
        using var stream = new SKMemoryStream(encoded);
        using SKCodec? codec = SKCodec.Create(stream, out SKCodecResult created);
        if (codec is null)
        {
            throw new ImageRejectedException(created == SKCodecResult.IncompleteInput
                ? "truncated image data (the file ends inside its header)"
                : $"not a decodable image ({created})");
        }
        SKImageInfo info = codec.Info;
        if ((long)info.Width * info.Height > maxPixels || info.Width <= 0 || info.Height <= 0)
        {
            throw new ImageRejectedException(
                $"declared size {info.Width}×{info.Height} is over the {maxPixels / 1e6:0.#}-megapixel limit");
        }
        // JPEG can decode at 1/2, 1/4, 1/8 directly: far faster, and a good box filter for the downscale.
        SKSizeI dims = info.Size;
        for (float scale = 0.125f; scale < 1f; scale *= 2)
        {
            SKSizeI d = codec.GetScaledDimensions(scale);
            if (Math.Min(d.Width, d.Height) >= minSide && d.Width < info.Width)
            {
                dims = d;
                break;
            }
        }
        var target = new SKImageInfo(dims.Width, dims.Height, SKColorType.Rgba8888, SKAlphaType.Premul);
        var bitmap = new SKBitmap(target);
        SKCodecResult result = codec.GetPixels(target, bitmap.GetPixels());
        if (result != SKCodecResult.Success)
        {
            bitmap.Dispose();
            throw new ImageRejectedException(result == SKCodecResult.IncompleteInput ? "truncated image data"
                : $"decoding failed ({result})");
        }
        SKBitmap oriented = Orient(bitmap, codec.EncodedOrigin);
        if (!ReferenceEquals(oriented, bitmap))
        {
            bitmap.Dispose();
        }
        return oriented;
    }

    /// <summary>Applies the EXIF orientation so the picture stands as the camera saw it.</summary>
    public static SKBitmap Orient(SKBitmap src, SKEncodedOrigin origin)
    {
        if (origin == SKEncodedOrigin.TopLeft)
        {
            return src;
        }
        int w = src.Width, h = src.Height;
        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        // x' = scaleX·x + skewX·y + transX;  y' = skewY·x + scaleY·y + transY
        SKMatrix m = origin switch
        {
            SKEncodedOrigin.TopRight => new SKMatrix(-1, 0, w, 0, 1, 0, 0, 0, 1),
            SKEncodedOrigin.BottomRight => new SKMatrix(-1, 0, w, 0, -1, h, 0, 0, 1),
            SKEncodedOrigin.BottomLeft => new SKMatrix(1, 0, 0, 0, -1, h, 0, 0, 1),
            SKEncodedOrigin.LeftTop => new SKMatrix(0, 1, 0, 1, 0, 0, 0, 0, 1),
            SKEncodedOrigin.RightTop => new SKMatrix(0, -1, h, 1, 0, 0, 0, 0, 1),
            SKEncodedOrigin.RightBottom => new SKMatrix(0, -1, h, -1, 0, w, 0, 0, 1),
            SKEncodedOrigin.LeftBottom => new SKMatrix(0, 1, 0, -1, 0, w, 0, 0, 1),
            _ => SKMatrix.Identity,
        };
        var dst = new SKBitmap(new SKImageInfo(swap ? h : w, swap ? w : h, SKColorType.Rgba8888, SKAlphaType.Premul));
        using var canvas = new SKCanvas(dst);
        canvas.Clear(SKColors.Black);
        canvas.SetMatrix(m);
        canvas.DrawBitmap(src, 0, 0);
        return dst;
    }
}
