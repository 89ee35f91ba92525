// The inputs a store can be prepared from: Fashion-MNIST (IDX, the embedded default), CIFAR-10 (binary
// batches) and ImageNet-style folders (§2). Each source yields records already at their stored size.
using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Linq;

namespace AlexNet.Data;

public static class FashionMnist
{
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";

    public static string ImagesFile(string dir, bool train) =>
        Path.Combine(dir, train ? "train-images-idx3-ubyte.gz" : "t10k-images-idx3-ubyte.gz");
    public static string LabelsFile(string dir, bool train) =>
        Path.Combine(dir, train ? "train-labels-idx1-ubyte.gz" : "t10k-labels-idx1-ubyte.gz");

    public static bool IsInstalled(string dir = DefaultDirectory) =>
        File.Exists(ImagesFile(dir, true)) && File.Exists(LabelsFile(dir, false));

    /// <summary>Writes the train (60,000) or test (10,000) split into a store of 1×28×28 records.</summary>
    public static StoreManifest Prepare(string dir, bool train, string outDir, Action<int, int>? progress = null)
    {
        string imagesPath = ImagesFile(dir, train), labelsPath = LabelsFile(dir, train);
        foreach (string f in new[] { imagesPath, labelsPath })
        {
            if (!File.Exists(f))
            {
                throw new FileNotFoundException(
                    $"{f} is missing: install the Debian package 'dataset-fashion-mnist' (./setup.sh does) or pass " +
                    "--fashion-mnist DIR.", f);
            }
        }
        (byte[] images, int count, int rows, int cols) = Idx.ReadImages(imagesPath);
        byte[] labels = Idx.ReadLabels(labelsPath);
        if (labels.Length != count)
        {
            throw new InvalidDataException(
                $"{labelsPath} holds {labels.Length} labels for {count} images in {imagesPath}.");
        }
        string name = train ? "train" : "t10k";
        using var writer = new StoreWriter(outDir, 1, rows, cols, $"fashion-mnist:{name}:{count}");
        int record = rows * cols;
        for (int i = writer.InputsDone; i < count; i++)
        {
            writer.Add(images.AsSpan(i * record, record), labels[i], $"idx:{name}:{i}");
            if ((i + 1) % 10000 == 0)
            {
                writer.Commit();
                progress?.Invoke(i + 1, count);
            }
        }
        return writer.Finish(ClassNames.FashionMnist.Select((n,
            i) => new ClassInfo(i.ToString(System.Globalization.CultureInfo.InvariantCulture), n)).ToArray(),
            $"Fashion-MNIST {name} ({dir})");
    }
}

/// <summary>The IDX format of MNIST-style data sets (big-endian header, optionally gzip-compressed).</summary>
public static class Idx
{
    private static Stream OpenMaybeGzip(string path)
    {
        Stream s = File.OpenRead(path);
        return path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(s,
            CompressionMode.Decompress) : s;
    }

    private static byte[] ReadAll(string path)
    {
        try
        {
            using Stream s = OpenMaybeGzip(path);
            using var m = new MemoryStream();
            s.CopyTo(m);
            return m.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path} is not a valid gzip file ({e.Message}); reinstall the data.", e);
        }
    }

    private static int BigEndian(byte[] b, int at) => (b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3];

    public static (byte[] Pixels, int Count, int Rows, int Cols) ReadImages(string path)
    {
        byte[] b = ReadAll(path);
        if (b.Length < 16 || BigEndian(b, 0) != 0x803)
        {
            throw new InvalidDataException($"{path} is not an IDX image file (magic 0x00000803).");
        }
        int count = BigEndian(b, 4), rows = BigEndian(b, 8), cols = BigEndian(b, 12);
        long expected = 16L + (long)count * rows * cols;
        if (b.Length != expected)
        {
            throw new InvalidDataException(
                $"{path} holds {b.Length} bytes, its header promises {expected}: the file is truncated or damaged.");
        }
        return (b[16..], count, rows, cols);
    }

    public static byte[] ReadLabels(string path)
    {
        byte[] b = ReadAll(path);
        if (b.Length < 8 || BigEndian(b, 0) != 0x801)
        {
            throw new InvalidDataException($"{path} is not an IDX label file (magic 0x00000801).");
        }
        int count = BigEndian(b, 4);
        if (b.Length != 8 + count)
        {
            throw new InvalidDataException(
                $"{path} holds {b.Length} bytes, its header promises {8 + count}: the file is truncated or damaged.");
        }
        return b[8..];
    }
}

/// <summary>CIFAR-10's binary version: records of 1 label byte + 3072 bytes (R, G, B planes of 32×32).</summary>
public static class Cifar10
{
    public const int RecordBytes = 1 + 3 * 32 * 32;

    public static readonly IReadOnlyList<string> Names = new[]
    {
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    };

    public static string[] BatchFiles(string dir, bool train)
    {
        string[] files = train
            ? Enumerable.Range(1, 5).Select(i => Path.Combine(dir, $"data_batch_{i}.bin")).ToArray()
            : new[] { Path.Combine(dir, "test_batch.bin") };
        string[] missing = files.Where(f => !File.Exists(f)).ToArray();
        if (missing.Length > 0)
        {
            throw new FileNotFoundException(
                $"{string.Join(", ", missing)} missing: --cifar10 expects the folder of CIFAR-10's binary version " +
                "(data_batch_1.bin … data_batch_5.bin, test_batch.bin).");
        }
        return files;
    }

    public static StoreManifest Prepare(string dir, bool train, string outDir)
    {
        string[] files = BatchFiles(dir, train);
        using var writer = new StoreWriter(outDir, 3, 32, 32, $"cifar10:{(train ? "train" : "test")}:{files.Length}");
        int index = 0;
        foreach (string file in files)
        {
            byte[] b = File.ReadAllBytes(file);
            if (b.Length % RecordBytes != 0)
            {
                throw new InvalidDataException(
                    $"{file} holds {b.Length} bytes, not a whole number of {RecordBytes}-byte CIFAR-10 records: the " +
                    "file is truncated.");
            }
            for (int r = 0; r < b.Length / RecordBytes; r++, index++)
            {
                if (index < writer.InputsDone)
                {
                    continue;
                }
                byte label = b[r * RecordBytes];
                if (label > 9)
                {
                    throw new InvalidDataException($"{file}, record {r}: label {label} is not a CIFAR-10 class (0–9).");
                }
                writer.Add(b.AsSpan(r * RecordBytes + 1, RecordBytes - 1), label, $"{file}:{r}");
            }
            writer.Commit();
        }
        return writer.Finish(Names.Select((n,
            i) => new ClassInfo(i.ToString(System.Globalization.CultureInfo.InvariantCulture), n)).ToArray(),
            $"CIFAR-10 {(train ? "train" : "test")} ({dir})");
    }
}
