// The prepared store: §2's images decoded, rescaled and cropped once, so training never decodes again.
//
//   manifest.json  shape, count, classes, §2 mean and §4.1 PCA; written last, atomically: its presence
//                  is what makes a store complete
//   images.u8      count fixed-size records, each C×H×W bytes (planar RGB), memory-mapped when read
//   labels.i32     count little-endian int32 class indices
//   mean.f32       the mean image, C×H×W float32 (§2 "subtracting the mean activity over the training set")
//   sources.txt    where each record came from (a file path, or "idx:NAME:INDEX"), one a line
//   rejects.tsv    inputs that could not be used, with the reason
using System;
using System.Collections.Generic;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Linq;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlexNet.Data;

/// <summary>§4.1: the principal components of the RGB pixel values over the training set.</summary>
/// <param name="Eigenvalues">λᵢ, largest first.</param>
/// <param name="Eigenvectors">pᵢ as columns: Eigenvectors[c][i] is component c of pᵢ.</param>
public sealed record PcaStats(double[] Eigenvalues, double[][] Eigenvectors, double[][] Covariance)
{
    /// <summary>No colour noise: what test-time views use (§4.1's PCA noise is for training only).</summary>
    public static PcaStats None(int channels) =>
        new(new double[channels],
        Enumerable.Range(0, channels).Select(_ => new double[channels]).ToArray(), Array.Empty<double[]>());
}

public sealed record StoreManifest(
    string Format,
    int Version,
    int Count,
    int Channels,
    int Height,
    int Width,
    ClassInfo[] Classes,
    string Source,
    PcaStats Pca,
    DateTime Created,
    RecordEncoding Encoding = RecordEncoding.Raw,
    int? Quality = null)
{
    public const string FormatName = "alexnet-store";
    public const int CurrentVersion = 1;

    [JsonIgnore]
    public int RecordBytes => Channels * Height * Width;

}

/// <summary>A complete store opened for reading; records are served straight from the memory map.</summary>
public sealed unsafe class ImageStore : IDisposable
{
    public const string ManifestFile = "manifest.json";
    public const string ImagesFile = "images.u8";
    public const string JpegFile = "images.jpg";
    public const string OffsetsFile = "offsets.i64";
    public const string LabelsFile = "labels.i32";
    public const string MeanFile = "mean.f32";
    public const string SourcesFile = "sources.txt";
    public const string RejectsFile = "rejects.tsv";

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly long[]? _offsets;

    [ThreadStatic]
    private static byte[]? t_decoded;

    public string Directory { get; }
    public StoreManifest Manifest { get; }
    public int[] Labels { get; }

    /// <summary>The mean image, C×H×W, on the 0–255 scale of the records.</summary>
    public float[] Mean { get; }

    public int Count => Manifest.Count;
    public int Channels => Manifest.Channels;
    public int Height => Manifest.Height;
    public int Width => Manifest.Width;
    public int ClassCount => Manifest.Classes.Length;

    private ImageStore(string dir, StoreManifest manifest, int[] labels, float[] mean, long[]? offsets)
    {
        Directory = dir;
        Manifest = manifest;
        Labels = labels;
        Mean = mean;
        _offsets = offsets;
        string images = Path.Combine(dir, offsets is null ? ImagesFile : JpegFile);
        if (manifest.Count > 0)
        {
            _map = MemoryMappedFile.CreateFromFile(images, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _base = p + _view.PointerOffset;
        }
    }

    public static bool IsComplete(string dir) => File.Exists(Path.Combine(dir, ManifestFile));

    /// <summary>
    /// Opens a store, checking every file against the manifest; a damaged store gets an error that says what to do.
    /// </summary>
    public static ImageStore Open(string dir)
    {
        if (!System.IO.Directory.Exists(dir))
        {
            throw new DirectoryNotFoundException($"no prepared store at {dir}: run `alexnet prepare` first.");
        }
        string manifestPath = Path.Combine(dir, ManifestFile);
        if (!File.Exists(manifestPath))
        {
            throw new InvalidDataException(
                $"{dir} is not a complete store (no {ManifestFile}): a prepare was interrupted; run the same " +
                "`alexnet prepare` again to finish it.");
        }
        StoreManifest manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<StoreManifest>(File.ReadAllText(manifestPath), Json.Options)
                ?? throw new InvalidDataException("empty manifest");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException(
                $"{manifestPath} is damaged ({e.Message}); delete {dir} and run `alexnet prepare` again.");
        }
        if (manifest.Format != StoreManifest.FormatName || manifest.Version != StoreManifest.CurrentVersion)
        {
            throw new InvalidDataException(
                $"{manifestPath}: format {manifest.Format} v{manifest.Version} is not {StoreManifest.FormatName} " +
                $"v{StoreManifest.CurrentVersion}; prepare the data again.");
        }
        long[]? offsets = null;
        if (manifest.Encoding == RecordEncoding.Jpeg)
        {
            ExpectLength(dir, OffsetsFile, (manifest.Count + 1) * 8L);
            offsets = ReadArray<long>(Path.Combine(dir, OffsetsFile), manifest.Count + 1);
            ExpectLength(dir, JpegFile, offsets[^1]);
        }
        else
        {
            ExpectLength(dir, ImagesFile, (long)manifest.Count * manifest.RecordBytes);
        }
        ExpectLength(dir, LabelsFile, manifest.Count * 4L);
        ExpectLength(dir, MeanFile, manifest.RecordBytes * 4L);
        int[] labels = ReadArray<int>(Path.Combine(dir, LabelsFile), manifest.Count);
        if (labels.Any(l => l < 0 || l >= manifest.Classes.Length))
        {
            throw new InvalidDataException(
                $"{Path.Combine(dir, LabelsFile)} holds a label outside 0..{manifest.Classes.Length - 1}; the store " +
                "is damaged: prepare it again.");
        }
        float[] mean = ReadArray<float>(Path.Combine(dir, MeanFile), manifest.RecordBytes);
        return new ImageStore(dir, manifest, labels, mean, offsets);
    }

    private static void ExpectLength(string dir, string file, long expected)
    {
        string path = Path.Combine(dir, file);
        long actual = File.Exists(path) ? new FileInfo(path).Length : -1;
        if (actual != expected)
        {
            throw new InvalidDataException(
                $"{path} holds {(actual < 0 ? "nothing (missing)" : actual + " bytes")}, the manifest " +
                $"says {expected}: the store is damaged; delete {dir} and run `alexnet prepare` again.");
        }
    }

    internal static T[] ReadArray<T>(string path, int count) where T : unmanaged
    {
        var result = new T[count];
        using FileStream f = File.OpenRead(path);
        f.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(result.AsSpan()));
        return result;
    }

    /// <summary>
    /// Record i: C×H×W bytes, planar. A raw store serves it from the memory map; a JPEG store decodes it into a buffer
    /// of the calling thread, valid until that thread's next call (the loader's workers each use their own).
    /// </summary>
    public ReadOnlySpan<byte> Record(int i)
    {
        if ((uint)i >= (uint)Count)
        {
            throw new ArgumentOutOfRangeException(nameof(i));
        }
        if (_offsets is null)
        {
            return new ReadOnlySpan<byte>(_base + (long)i * Manifest.RecordBytes, Manifest.RecordBytes);
        }
        byte[] buffer = t_decoded is { } b && b.Length == Manifest.RecordBytes ? b
            : t_decoded = new byte[Manifest.RecordBytes];
        var jpeg = new ReadOnlySpan<byte>(_base + _offsets[i], checked((int)(_offsets[i + 1] - _offsets[i])));
        RecordCodec.Decode(jpeg, buffer, Channels, Height, Width);
        return buffer;
    }

    /// <summary>Bytes the records take on disk.</summary>
    public long ImageBytes => _offsets is null ? (long)Count * Manifest.RecordBytes : _offsets[^1];

    public IReadOnlyList<string> Sources()
    {
        string path = Path.Combine(Directory, SourcesFile);
        return File.Exists(path) ? File.ReadAllLines(path) : Array.Empty<string>();
    }

    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }
}
