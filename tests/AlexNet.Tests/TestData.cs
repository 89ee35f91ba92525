using System;
using System.Collections.Generic;
using System.IO;
using AlexNet.Data;
using SkiaSharp;

namespace AlexNet.Tests;

/// <summary>Helpers that make small, known inputs: temp folders, stores, encoded images.</summary>
internal static class TestData
{
    /// <summary>
    /// A trainer's progress that keeps its messages, and calls <see cref="OnStep"/> at each logged step.
    /// </summary>
    public sealed class Messages : AlexNet.Training.ITrainingProgress
    {
        public List<string> Lines { get; } = new();
        public Action<AlexNet.Training.StepMetrics>? OnStep { get; init; }
        public void EpochStarted(int epoch, int epochs, int stepsPerEpoch, int stepsDone) { }
        public void Step(AlexNet.Training.StepMetrics metrics) => OnStep?.Invoke(metrics);
        public void EpochEnded(AlexNet.Training.EpochMetrics metrics) { }
        public void Message(string text) => Lines.Add(text);
    }

    public sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("alexnet-test").FullName;

        public string this[string name] => System.IO.Path.Combine(Path, name);

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>
    /// A synthetic training store and validation store of 4 classes in DIR/train and DIR/val, opened.
    /// </summary>
    public sealed class Stores : IDisposable
    {
        public Stores(TempDir dir, int train, int val, int valSeed = 3)
        {
            WriteSyntheticStore(dir["train"], train, 4);
            WriteSyntheticStore(dir["val"], val, 4, seed: valSeed);
            Train = ImageStore.Open(dir["train"]);
            Val = ImageStore.Open(dir["val"]);
        }

        public ImageStore Train { get; }
        public ImageStore Val { get; }

        public void Dispose()
        {
            Train.Dispose();
            Val.Dispose();
        }
    }

    /// <summary>A store of <paramref name="count"/> synthetic C×S×S images of <paramref name="classes"/> classes, each
    /// class a bright bar at its own place on noise, so a net can learn it in a few steps.</summary>
    public static void WriteSyntheticStore(string dir, int count, int classes,
        int channels = 1, int size = 28, int seed = 0)
    {
        var rng = new Rng((ulong)seed + 1);
        using var writer = new StoreWriter(dir, channels, size, size, $"synthetic:{count}:{classes}:{seed}");
        var record = new byte[channels * size * size];
        for (int i = 0; i < count; i++)
        {
            int label = i % classes;
            for (int p = 0; p < record.Length; p++)
            {
                record[p] = (byte)rng.Next(60);
            }
            int row = 2 + label * (size - 6) / Math.Max(1, classes - 1);
            for (int c = 0; c < channels; c++)
            {
                for (int y = row; y < row + 3; y++)
                {
                    for (int x = 4; x < size - 4; x++)
                    {
                        record[(c * size + y) * size + x] = 230;
                    }
                }
            }
            writer.Add(record, label, $"synthetic:{i}");
        }
        var names = new List<ClassInfo>();
        for (int k = 0; k < classes; k++)
        {
            names.Add(new ClassInfo(k.ToString(System.Globalization.CultureInfo.InvariantCulture), $"class{k}"));
        }
        writer.Finish(names, "synthetic");
    }

    /// <summary>An image whose regions have known colours, encoded in the given format.</summary>
    public static byte[] Encode(int width, int height, Func<int, int, SKColor> colour,
        SKEncodedImageFormat format = SKEncodedImageFormat.Png,
        SKColorType type = SKColorType.Rgba8888)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, type,
            type == SKColorType.Gray8 ? SKAlphaType.Opaque : SKAlphaType.Premul));
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                bitmap.SetPixel(x, y, colour(x, y));
            }
        }
        using SKData data = bitmap.Encode(format, 95);
        return data.ToArray();
    }

    /// <summary>Inserts an EXIF APP1 segment with the given orientation right after a JPEG's SOI marker.</summary>
    public static byte[] WithExifOrientation(byte[] jpeg, ushort orientation)
    {
        byte[] app1 =
        {
            0xFF, 0xE1, 0x00, 0x22, (byte)'E', (byte)'x', (byte)'i', (byte)'f', 0, 0,
            (byte)'I', (byte)'I', 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00,           // TIFF header, IFD at 8
            0x01, 0x00,                                                          // one entry
            0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, (byte)orientation, 0x00, 0x00,
                0x00,   // Orientation, SHORT, 1
            0x00, 0x00, 0x00, 0x00,                                              // no next IFD
        };
        var result = new byte[jpeg.Length + app1.Length];
        jpeg.AsSpan(0, 2).CopyTo(result);
        app1.CopyTo(result, 2);
        jpeg.AsSpan(2).CopyTo(result.AsSpan(2 + app1.Length));
        return result;
    }

    /// <summary>
    /// A PNG whose header declares the given size (valid signature and IHDR CRC), with no real pixel data.
    /// </summary>
    public static byte[] PngDeclaring(int width, int height)
    {
        var ihdr = new List<byte>();
        ihdr.AddRange("IHDR"u8.ToArray());
        ihdr.AddRange(BigEndian(width));
        ihdr.AddRange(BigEndian(height));
        ihdr.AddRange(new byte[] { 8, 2, 0, 0, 0 });
        var png = new List<byte> { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A };
        png.AddRange(BigEndian(13));
        png.AddRange(ihdr);
        png.AddRange(BigEndian((int)Crc32(ihdr.ToArray())));
        // A short IDAT so the codec reaches the pixel data and reports the header's size.
        byte[] idat = { (byte)'I', (byte)'D', (byte)'A', (byte)'T', 0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01 };
        png.AddRange(BigEndian(idat.Length - 4));
        png.AddRange(idat);
        png.AddRange(BigEndian((int)Crc32(idat)));
        png.AddRange(BigEndian(0));
        png.AddRange("IEND"u8.ToArray());
        png.AddRange(BigEndian(unchecked((int)0xAE426082)));
        return png.ToArray();
    }

    private static byte[] BigEndian(int v) => new[] { (byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v };

    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
            }
        }
        return ~crc;
    }
}
