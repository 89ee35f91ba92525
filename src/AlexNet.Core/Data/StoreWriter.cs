// Writes a store in order, resumably and atomically. Records, labels, sources and rejects are appended;
// after each block, progress.json records how many inputs are done and how long each file is, so an
// interrupted prepare truncates the files back to the last committed block and continues from there:
// no record is written twice or lost. manifest.json is written last (temp + rename).
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;

namespace AlexNet.Data;

public sealed class StoreWriter : IDisposable
{
    const string ProgressFile = "progress.json";

    sealed record Progress(string Fingerprint, int InputsDone, int Records, long RejectsBytes, long SourcesBytes);

    readonly string _dir;
    readonly string _fingerprint;
    readonly int _recordBytes;
    readonly FileStream _images;
    readonly FileStream _labels;
    readonly FileStream _sources;
    readonly FileStream _rejects;
    readonly double[] _sum;       // Σ x per position, for §2's mean image
    readonly double[] _moments;   // Σ over pixels of x xᵀ (C×C) and Σ x (C), for §4.1's covariance
    long _pixels;

    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }

    /// <summary>Inputs already handled (written or rejected) by earlier runs: skip these.</summary>
    public int InputsDone { get; private set; }
    public int Records { get; private set; }
    public int Rejected { get; private set; }

    /// <param name="fingerprint">Identifies the input list; resuming with a different one is refused.</param>
    public StoreWriter(string dir, int channels, int height, int width, string fingerprint)
    {
        _dir = dir;
        Channels = channels;
        Height = height;
        Width = width;
        _recordBytes = channels * height * width;
        _fingerprint = fingerprint;
        _sum = new double[_recordBytes];
        _moments = new double[channels * channels + channels];
        if (ImageStore.IsComplete(dir))
        {
            throw new IOException($"{dir} already holds a complete store; choose another --out or delete it first (nothing was overwritten).");
        }
        Directory.CreateDirectory(dir);
        Progress? progress = ReadProgress();
        if (progress is not null && progress.Fingerprint != fingerprint)
        {
            throw new IOException($"{dir} holds an interrupted prepare of other inputs; delete it or choose another --out.");
        }
        _images = Open(ImageStore.ImagesFile, (long)(progress?.Records ?? 0) * _recordBytes);
        _labels = Open(ImageStore.LabelsFile, (progress?.Records ?? 0) * 4L);
        _sources = Open(ImageStore.SourcesFile, progress?.SourcesBytes ?? 0);
        _rejects = Open(ImageStore.RejectsFile, progress?.RejectsBytes ?? 0);
        if (progress is not null)
        {
            InputsDone = progress.InputsDone;
            Records = progress.Records;
            Rejected = File.ReadLines(Path.Combine(dir, ImageStore.RejectsFile)).Count();
            AccumulateExisting();
        }
    }

    FileStream Open(string name, long keep)
    {
        var f = new FileStream(Path.Combine(_dir, name), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, 1 << 16);
        if (f.Length < keep)
        {
            throw new IOException($"{Path.Combine(_dir, name)} is shorter than its recorded progress: the interrupted store is damaged; delete {_dir} and prepare again.");
        }
        f.SetLength(keep);
        f.Seek(keep, SeekOrigin.Begin);
        return f;
    }

    Progress? ReadProgress()
    {
        string path = Path.Combine(_dir, ProgressFile);
        if (!File.Exists(path))
        {
            bool leftovers = Directory.EnumerateFileSystemEntries(_dir).Any();
            if (leftovers)
            {
                throw new IOException($"{_dir} is not empty and holds no store; choose an empty or new --out (nothing was overwritten).");
            }
            return null;
        }
        return Json.Read<Progress>(path);
    }

    /// <summary>On resume, the statistics of the records already written are gathered again from disk.</summary>
    void AccumulateExisting()
    {
        var buffer = new byte[_recordBytes];
        _images.Seek(0, SeekOrigin.Begin);
        for (int i = 0; i < Records; i++)
        {
            _images.ReadExactly(buffer);
            Accumulate(buffer);
        }
        _images.Seek((long)Records * _recordBytes, SeekOrigin.Begin);
    }

    void Accumulate(ReadOnlySpan<byte> chw)
    {
        int plane = Height * Width;
        int c = Channels;
        for (int i = 0; i < chw.Length; i++)
        {
            _sum[i] += chw[i];
        }
        Span<double> x = stackalloc double[c];
        for (int p = 0; p < plane; p++)
        {
            for (int a = 0; a < c; a++)
            {
                x[a] = chw[a * plane + p];
                _moments[c * c + a] += x[a];
            }
            for (int a = 0; a < c; a++)
            {
                for (int b = a; b < c; b++)
                {
                    _moments[a * c + b] += x[a] * x[b];
                }
            }
        }
        _pixels += plane;
    }

    public void Add(ReadOnlySpan<byte> chw, int label, string source)
    {
        if (chw.Length != _recordBytes)
        {
            throw new ArgumentException($"record of {chw.Length} bytes, expected {_recordBytes}.");
        }
        _images.Write(chw);
        _labels.Write(BitConverter.GetBytes(label));
        _sources.Write(Encoding.UTF8.GetBytes(source.Replace('\n', ' ') + "\n"));
        Accumulate(chw);
        Records++;
        InputsDone++;
    }

    public void Reject(string source, string reason)
    {
        _rejects.Write(Encoding.UTF8.GetBytes($"{source.Replace('\t', ' ')}\t{reason.Replace('\n', ' ')}\n"));
        Rejected++;
        InputsDone++;
    }

    /// <summary>Makes everything added so far durable and records it as done.</summary>
    public void Commit()
    {
        foreach (FileStream f in new[] { _images, _labels, _sources, _rejects })
        {
            f.Flush(flushToDisk: true);
        }
        var progress = new Progress(_fingerprint, InputsDone, Records, _rejects.Length, _sources.Length);
        Json.Write(Path.Combine(_dir, ProgressFile), progress);
    }

    /// <summary>Writes the mean image and PCA, then the manifest: from here on the store is complete.</summary>
    public StoreManifest Finish(IReadOnlyList<ClassInfo> classes, string source)
    {
        Commit();
        if (Records == 0)
        {
            throw new InvalidDataException($"no usable image among the inputs ({Rejected} rejected, see {Path.Combine(_dir, ImageStore.RejectsFile)}).");
        }
        var mean = new float[_recordBytes];
        for (int i = 0; i < mean.Length; i++)
        {
            mean[i] = (float)(_sum[i] / Records);
        }
        using (FileStream f = File.Create(Path.Combine(_dir, ImageStore.MeanFile)))
        {
            f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(mean.AsSpan()));
            f.Flush(flushToDisk: true);
        }
        var manifest = new StoreManifest(StoreManifest.FormatName, StoreManifest.CurrentVersion, Records, Channels, Height, Width,
            classes.ToArray(), source, DatasetStats.Pca(_moments, Channels, _pixels), DateTime.UtcNow);
        AtomicFile.WriteAllText(Path.Combine(_dir, ImageStore.ManifestFile), Json.Serialize(manifest));
        File.Delete(Path.Combine(_dir, ProgressFile));
        return manifest;
    }

    public void Dispose()
    {
        _images.Dispose();
        _labels.Dispose();
        _sources.Dispose();
        _rejects.Dispose();
    }
}
