// Writes a store in order, resumably and atomically. Records, labels, sources and rejects are appended;
// after each block, progress.json records how many inputs are done and how long each file is, so an
// interrupted prepare truncates the files back to the last committed block and continues from there:
// no record is written twice or lost. manifest.json is written last (temp + rename).
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Numerics;
using System.Text;
using System.Text.Json;

namespace AlexNet.Data;

public sealed class StoreWriter : IDisposable
{
    private const string ProgressFile = "progress.json";
    private const string StatisticsFile = "progress.sums";   // the mean and covariance sums of the committed records

    private sealed record Progress(string Fingerprint, int InputsDone, int Records, long RejectsBytes,
        long SourcesBytes, long ImagesBytes = -1);

    private readonly string _dir;
    private readonly string _fingerprint;
    private readonly int _recordBytes;
    private readonly FileStream _images;
    private readonly FileStream? _offsets;   // jpeg stores: record i is images.jpg[offsets[i] .. offsets[i+1])
    private readonly FileStream _labels;
    private readonly FileStream _sources;
    private readonly FileStream _rejects;
    private readonly long[] _sum;         // Σ x per position, for §2's mean image
    private readonly long[] _moments;     // Σ over pixels of x xᵀ (C×C) and Σ x (C), for §4.1's covariance
    private long _pixels;

    public RecordEncoding Encoding { get; }
    public int Quality { get; }

    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }

    /// <summary>Inputs already handled (written or rejected) by earlier runs: skip these.</summary>
    public int InputsDone { get; private set; }
    public int Records { get; private set; }
    public int Rejected { get; private set; }

    /// <param name="fingerprint">Identifies the input list; resuming with a different one is refused.</param>
    /// <param name="encoding">Raw records, or each record encoded once as a JPEG of <paramref name="quality"/>
    /// (RecordCodec.cs).</param>
    public StoreWriter(string dir, int channels, int height, int width, string fingerprint,
        RecordEncoding encoding = RecordEncoding.Raw,
        int quality = RecordCodec.DefaultQuality)
    {
        if (quality is < 1 or > 100)
        {
            throw new ArgumentException($"--quality must be 1–100, got {quality}.");
        }
        Encoding = encoding;
        Quality = quality;
        _dir = dir;
        Channels = channels;
        Height = height;
        Width = width;
        _recordBytes = channels * height * width;
        _fingerprint = fingerprint;
        _sum = new long[_recordBytes];
        _moments = new long[channels * channels + channels];
        if (ImageStore.IsComplete(dir))
        {
            throw new IOException(
                $"{dir} already holds a complete store; choose another --out or delete it first (nothing was " +
                "overwritten).");
        }
        Directory.CreateDirectory(dir);
        Progress? progress = ReadProgress();
        if (progress is not null && progress.Fingerprint != fingerprint)
        {
            throw new IOException(
                $"{dir} holds an interrupted prepare of other inputs; delete it or choose another --out.");
        }
        int records = progress?.Records ?? 0;
        if (encoding == RecordEncoding.Jpeg)
        {
            _offsets = Open(ImageStore.OffsetsFile, progress is null ? 0 : (records + 1) * 8L);
            if (_offsets.Length == 0)
            {
                _offsets.Write(BitConverter.GetBytes(0L));
            }
            _images = Open(ImageStore.JpegFile, progress?.ImagesBytes ?? 0);
        }
        else
        {
            _images = Open(ImageStore.ImagesFile, (long)records * _recordBytes);
        }
        _labels = Open(ImageStore.LabelsFile, (progress?.Records ?? 0) * 4L);
        _sources = Open(ImageStore.SourcesFile, progress?.SourcesBytes ?? 0);
        _rejects = Open(ImageStore.RejectsFile, progress?.RejectsBytes ?? 0);
        if (progress is not null)
        {
            InputsDone = progress.InputsDone;
            Records = progress.Records;
            Rejected = File.ReadLines(Path.Combine(dir, ImageStore.RejectsFile)).Count();
            if (!ReadStatistics())
            {
                AccumulateExisting();
            }
        }
        else
        {
            // from the first moment the folder is a prepare under way: the same command resumes it, whatever stops it
            Commit();
        }
    }

    /// <summary>
    /// Refuses to start when the disk cannot hold <paramref name="inputs"/> more records (raw: exactly; JPEG: at the
    /// average size so far, or a fifth of a raw record before the first), saying how much is needed and free.
    /// </summary>
    public void EnsureSpace(int inputs)
    {
        long perRecord = Encoding == RecordEncoding.Raw ? _recordBytes
            : Records > 0 ? _images.Length / Records + 1 : _recordBytes / 5;
        long needed = inputs * (perRecord + 16L);   // + label, offset and a source line
        long free = new DriveInfo(Path.GetFullPath(_dir)).AvailableFreeSpace;
        if (needed > free)
        {
            string smaller = Encoding == RecordEncoding.Raw ? " (or use --format jpeg, 5–10× smaller)" : "";
            throw new IOException(
                $"{_dir} needs about {Gb(needed)} for {inputs} more images ({Encoding.ToString().ToLowerInvariant()} " +
                "records of " +
                $"~{perRecord / 1024.0:F0} KB) and its disk has {Gb(free)} free. Free space{smaller} and run the " +
                "same command again: it resumes.");
        }
    }

    private static string Gb(long bytes) =>
        bytes >= 1L << 30 ? $"{bytes / (double)(1L << 30):F1} GB" : $"{bytes / (double)(1 << 20):F1} MB";

    /// <summary>Bytes of image data written so far (for the bytes-per-image report).</summary>
    public long ImageBytes => _images.Length;

    private FileStream Open(string name, long keep)
    {
        var f = new FileStream(Path.Combine(_dir, name), FileMode.OpenOrCreate,
            FileAccess.ReadWrite, FileShare.Read, 1 << 16);
        if (f.Length < keep)
        {
            throw new IOException(
                $"{Path.Combine(_dir, name)} is shorter than its recorded progress: the interrupted store is " +
                $"damaged; delete {_dir} and prepare again.");
        }
        f.SetLength(keep);
        f.Seek(keep, SeekOrigin.Begin);
        return f;
    }

    private Progress? ReadProgress()
    {
        string path = Path.Combine(_dir, ProgressFile);
        if (!File.Exists(path))
        {
            bool leftovers = Directory.EnumerateFileSystemEntries(_dir).Any();
            if (leftovers)
            {
                throw new IOException(
                    $"{_dir} is not empty and holds no store; choose an empty or new --out (nothing was overwritten).");
            }
            return null;
        }
        return Json.Read<Progress>(path);
    }

    /// <summary>
    /// The committed records' sums, as Commit saved them: the latest file, or the one before it when a stop fell
    /// between writing the sums and progress.json. False when neither matches (then they are gathered again).
    /// </summary>
    private bool ReadStatistics() => ReadStatistics(Path.Combine(_dir,
        StatisticsFile)) || ReadStatistics(Path.Combine(_dir, StatisticsFile + ".prev"));

    private bool ReadStatistics(string path)
    {
        if (!File.Exists(path) || new FileInfo(path).Length != 8L * (_sum.Length + _moments.Length + 2))
        {
            return false;
        }
        using var r = new BinaryReader(File.OpenRead(path));
        if (r.ReadInt64() != Records)
        {
            return false;   // written for another block than the last committed one
        }
        for (int i = 0; i < _sum.Length; i++)
        {
            _sum[i] = r.ReadInt64();
        }
        for (int i = 0; i < _moments.Length; i++)
        {
            _moments[i] = r.ReadInt64();
        }
        _pixels = r.ReadInt64();
        return true;
    }

    private void WriteStatistics()
    {
        string path = Path.Combine(_dir, StatisticsFile);
        if (File.Exists(path))
        {
            // still the committed block's, until progress.json moves on
            File.Move(path, path + ".prev", overwrite: true);
        }
        AtomicFile.Write(path, WriteSums);
    }

    private void WriteSums(Stream f)
    {
        f.Write(BitConverter.GetBytes((long)Records));
        f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_sum.AsSpan()));
        f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_moments.AsSpan()));
        f.Write(BitConverter.GetBytes(_pixels));
    }

    /// <summary>
    /// On resume without saved sums (a raw store of an older prepare), the records already written are read again. A
    /// JPEG store always saves its sums: its records, read back, are not the pixels the sums were taken of.
    /// </summary>
    private void AccumulateExisting()
    {
        if (_offsets is not null)
        {
            throw new IOException(
                $"{_dir}: the sums of its committed images ({StatisticsFile}) are missing; delete {_dir} and prepare " +
                "again.");
        }
        var buffer = new byte[_recordBytes];
        _images.Seek(0, SeekOrigin.Begin);
        for (int i = 0; i < Records; i++)
        {
            _images.ReadExactly(buffer);
            Accumulate(buffer);
        }
        _images.Seek(0, SeekOrigin.End);
    }

    /// <summary>
    /// Adds a record to the sums behind §2's mean image and §4.1's covariance. Integer sums, so they are exact (a
    /// double holds them exactly too, up to 2⁵³: ImageNet's Σ x² over all pixels is ~5·10¹⁵) and vectorise.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private void Accumulate(ReadOnlySpan<byte> chw)
    {
        int plane = Height * Width;
        int c = Channels;
        AddBytes(_sum, chw);
        for (int a = 0; a < c; a++)
        {
            ReadOnlySpan<byte> pa = chw.Slice(a * plane, plane);
            _moments[c * c + a] += Dot(pa, null);
            for (int b = a; b < c; b++)
            {
                _moments[a * c + b] += Dot(pa, chw.Slice(b * plane, plane));
            }
        }
        _pixels += plane;
    }

    /// <summary>sum[i] += x[i], on vectors.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static void AddBytes(long[] sum, ReadOnlySpan<byte> x)
    {
        Span<ulong> acc = System.Runtime.InteropServices.MemoryMarshal.Cast<long, ulong>(sum.AsSpan());
        int w = Vector<byte>.Count, wl = Vector<ulong>.Count;
        int i = 0;
        for (; i + w <= x.Length; i += w)
        {
            Vector.Widen(new Vector<byte>(x.Slice(i, w)), out Vector<ushort> s0, out Vector<ushort> s1);
            Vector.Widen(s0, out Vector<uint> u0, out Vector<uint> u1);
            Vector.Widen(s1, out Vector<uint> u2, out Vector<uint> u3);
            int at = i;
            foreach (Vector<uint> u in (ReadOnlySpan<Vector<uint>>)[u0, u1, u2, u3])
            {
                Vector.Widen(u, out Vector<ulong> l0, out Vector<ulong> l1);
                (new Vector<ulong>(acc.Slice(at, wl)) + l0).CopyTo(acc.Slice(at, wl));
                (new Vector<ulong>(acc.Slice(at + wl, wl)) + l1).CopyTo(acc.Slice(at + wl, wl));
                at += 2 * wl;
            }
        }
        for (; i < x.Length; i++)
        {
            sum[i] += x[i];
        }
    }

    private static Vector<uint> Products(Vector<ushort> x, Vector<ushort> y)
    {
        Vector.Widen(x, out Vector<uint> x0, out Vector<uint> x1);
        Vector.Widen(y, out Vector<uint> y0, out Vector<uint> y1);
        return x0 * y0 + x1 * y1;
    }

    /// <summary>Σ aᵢ·bᵢ (or Σ aᵢ when b is empty), exactly, in chunks whose sums fit 32 bits.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private static long Dot(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        const int chunk = 16384;   // 16384 · 255² < 2³²
        int w = Vector<byte>.Count;
        bool sum = b.IsEmpty;
        long total = 0;
        for (int start = 0; start < a.Length; start += chunk)
        {
            int end = Math.Min(a.Length, start + chunk);
            var acc = Vector<uint>.Zero;
            int i = start;
            for (; i + w <= end; i += w)
            {
                var va = new Vector<byte>(a.Slice(i, w));
                var vb = sum ? Vector<byte>.One : new Vector<byte>(b.Slice(i, w));
                Vector.Widen(va, out Vector<ushort> a0, out Vector<ushort> a1);
                Vector.Widen(vb, out Vector<ushort> b0, out Vector<ushort> b1);
                acc += Products(a0, b0) + Products(a1, b1);
            }
            total += Vector.Sum(acc);
            for (; i < end; i++)
            {
                total += sum ? a[i] : a[i] * b[i];
            }
        }
        return total;
    }

    /// <param name="encoded">The record already encoded (by a decoding thread) for a JPEG store; encoded here when
    /// null.</param>
    public void Add(ReadOnlySpan<byte> chw, int label, string source, byte[]? encoded = null)
    {
        if (chw.Length != _recordBytes)
        {
            throw new ArgumentException($"record of {chw.Length} bytes, expected {_recordBytes}.");
        }
        if (_offsets is not null)
        {
            _images.Write(encoded ?? RecordCodec.Encode(chw, Channels, Height, Width, Quality));
            _offsets.Write(BitConverter.GetBytes(_images.Length));
        }
        else
        {
            _images.Write(chw);
        }
        _labels.Write(BitConverter.GetBytes(label));
        _sources.Write(System.Text.Encoding.UTF8.GetBytes(source.Replace('\n', ' ') + "\n"));
        Accumulate(chw);
        Records++;
        InputsDone++;
    }

    public void Reject(string source, string reason)
    {
        _rejects.Write(
            System.Text.Encoding.UTF8.GetBytes($"{source.Replace('\t', ' ')}\t{reason.Replace('\n', ' ')}\n"));
        Rejected++;
        InputsDone++;
    }

    /// <summary>Makes everything added so far durable and records it as done.</summary>
    public void Commit()
    {
        foreach (FileStream? f in new[] { _images, _offsets, _labels, _sources, _rejects })
        {
            f?.Flush(flushToDisk: true);
        }
        WriteStatistics();   // tagged with the record count: used on resume only if progress.json agrees
        var progress = new Progress(_fingerprint, InputsDone, Records, _rejects.Length,
            _sources.Length, _images.Length);
        Json.Write(Path.Combine(_dir, ProgressFile), progress);
    }

    /// <summary>Writes the mean image and PCA, then the manifest: from here on the store is complete.</summary>
    public StoreManifest Finish(IReadOnlyList<ClassInfo> classes, string source)
    {
        Commit();
        if (Records == 0)
        {
            throw new InvalidDataException(
                $"no usable image among the inputs ({Rejected} rejected, " +
                $"see {Path.Combine(_dir, ImageStore.RejectsFile)}).");
        }
        var mean = new float[_recordBytes];
        for (int i = 0; i < mean.Length; i++)
        {
            mean[i] = (float)((double)_sum[i] / Records);
        }
        using (FileStream f = File.Create(Path.Combine(_dir, ImageStore.MeanFile)))
        {
            f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(mean.AsSpan()));
            f.Flush(flushToDisk: true);
        }
        var manifest = new StoreManifest(StoreManifest.FormatName, StoreManifest.CurrentVersion,
            Records, Channels, Height, Width,
            classes.ToArray(), source,
            DatasetStats.Pca(Array.ConvertAll(_moments, m => (double)m), Channels, _pixels), DateTime.UtcNow,
            Encoding, Encoding == RecordEncoding.Jpeg ? Quality : null);
        AtomicFile.WriteAllText(Path.Combine(_dir, ImageStore.ManifestFile), Json.Serialize(manifest));
        File.Delete(Path.Combine(_dir, ProgressFile));
        File.Delete(Path.Combine(_dir, StatisticsFile));
        File.Delete(Path.Combine(_dir, StatisticsFile + ".prev"));
        return manifest;
    }

    public void Dispose()
    {
        _images.Dispose();
        _offsets?.Dispose();
        _labels.Dispose();
        _sources.Dispose();
        _rejects.Dispose();
    }
}
