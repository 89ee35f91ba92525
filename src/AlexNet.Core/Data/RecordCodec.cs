// How a store keeps its records. "raw": C×H×W bytes each, memory-mapped (252 GB for ImageNet's 1.28 M
// training images at 256²). "jpeg": each §2 record encoded once as a JPEG (as FFCV does), ~20–40 KB at
// quality 90, decoded by the loader's workers; the store then also holds offsets.i64, where record i is
// bytes [offsets[i], offsets[i+1]) of images.jpg.
using System;
using System.Runtime.InteropServices;
using SkiaSharp;

namespace AlexNet.Data;

public enum RecordEncoding
{
    Raw,
    Jpeg,
}

public static class RecordCodec
{
    /// <summary>The default JPEG quality: FFCV's 90 keeps the mean absolute error around one intensity level.</summary>
    public const int DefaultQuality = 90;

    /// <summary>A planar C×side×side record (C = 1 or 3) as a JPEG.</summary>
    public static byte[] Encode(ReadOnlySpan<byte> planar, int channels, int height, int width, int quality)
    {
        int plane = height * width;
        SKImageInfo info = channels == 1
            ? new SKImageInfo(width, height, SKColorType.Gray8, SKAlphaType.Opaque)
            : new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        Span<byte> px = bitmap.GetPixelSpan();
        if (channels == 1)
        {
            planar[..plane].CopyTo(px);
        }
        else
        {
            for (int p = 0; p < plane; p++)
            {
                px[4 * p] = planar[p];
                px[4 * p + 1] = planar[plane + p];
                px[4 * p + 2] = planar[2 * plane + p];
                px[4 * p + 3] = 255;
            }
        }
        using SKData data = bitmap.Encode(SKEncodedImageFormat.Jpeg, quality);
        return data.ToArray();
    }

    /// <summary>Decodes a record's JPEG into <paramref name="planar"/> (C×height×width bytes).</summary>
    public static unsafe void Decode(ReadOnlySpan<byte> jpeg, Span<byte> planar, int channels, int height, int width)
    {
        int plane = height * width;
        fixed (byte* p = jpeg)
        {
            using SKData data = SKData.Create((IntPtr)p, jpeg.Length);
            using SKCodec codec = SKCodec.Create(data) ?? throw new System.IO.InvalidDataException(
                "a record of the store is not a decodable JPEG: the store is damaged; prepare it again.");
            if (codec.Info.Width != width || codec.Info.Height != height)
            {
                throw new System.IO.InvalidDataException(
                    $"a record of the store is {codec.Info.Width}×{codec.Info.Height}, the manifest " +
                    $"says {width}×{height}: prepare it again.");
            }
            if (channels == 1)
            {
                fixed (byte* dst = planar)
                {
                    Check(codec.GetPixels(new SKImageInfo(width, height, SKColorType.Gray8,
                        SKAlphaType.Opaque), (IntPtr)dst));
                }
                return;
            }
            byte[] rgba = System.Buffers.ArrayPool<byte>.Shared.Rent(4 * plane);
            try
            {
                fixed (byte* dst = rgba)
                {
                    Check(codec.GetPixels(new SKImageInfo(width, height, SKColorType.Rgba8888,
                        SKAlphaType.Opaque), (IntPtr)dst));
                }
                for (int i = 0; i < plane; i++)
                {
                    planar[i] = rgba[4 * i];
                    planar[plane + i] = rgba[4 * i + 1];
                    planar[2 * plane + i] = rgba[4 * i + 2];
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(rgba);
            }
        }
    }

    private static void Check(SKCodecResult result)
    {
        if (result != SKCodecResult.Success)
        {
            throw new System.IO.InvalidDataException(
                $"a record of the store did not decode ({result}): the store is damaged; prepare it again.");
        }
    }
}
