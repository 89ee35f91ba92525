// The input layouts of §2's data: ImageNet-style class folders, and ILSVRC's flat validation folder with
// a ground-truth file. Both resolve to an ordered list of (file, label) and the class table.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Tasks;

namespace AlexNet.Data;

public sealed record ImageFolder(string Root, IReadOnlyList<(string Path, int Label)> Items,
    IReadOnlyList<ClassInfo> Classes)
{
    private const string Expected = "expected ROOT/<class>/<image>, e.g. train/n01440764/n01440764_10026.JPEG";

    /// <summary>Identifies the inputs, so an interrupted prepare resumes only over the same list.</summary>
    public string Fingerprint()
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach ((string path, int label) in Items)
        {
            sha.AppendData(Encoding.UTF8.GetBytes($"{path}\t{label}\n"));
        }
        return Convert.ToHexString(sha.GetHashAndReset());
    }

    public static ImageFolder FromClassFolders(string root, string? classesFile = null)
    {
        if (!Directory.Exists(root))
        {
            throw new DirectoryNotFoundException($"{root} does not exist ({Expected}).");
        }
        string[] folders = Directory.GetDirectories(root).Select(Path.GetFileName).OfType<string>()
            .Where(n => !n.StartsWith('.')).OrderBy(n => n, StringComparer.Ordinal).ToArray();
        if (folders.Length == 0)
        {
            throw new InvalidDataException(
                $"{root} has no class folders: {Expected}. For ILSVRC's flat validation folder use --flat with " +
                "--labels.");
        }
        IReadOnlyList<ClassInfo> classes = classesFile is null ? ClassNames.ForFolders(folders)
            : ClassNames.Load(classesFile);
        var index = classes.Select((c, i) => (c.Id, i)).ToDictionary(x => x.Id, x => x.i);
        var items = new List<(string, int)>();
        foreach (string folder in folders)
        {
            if (!index.TryGetValue(folder, out int label))
            {
                throw new InvalidDataException(
                    $"class folder {Path.Combine(root, folder)} is not in the class list {classesFile}.");
            }
            string[] files = Directory.GetFiles(Path.Combine(root,
                folder)).Where(f => !Path.GetFileName(f).StartsWith('.'))
                .OrderBy(f => f, StringComparer.Ordinal).ToArray();
            if (files.Length == 0)
            {
                throw new InvalidDataException(
                    $"class folder {Path.Combine(root, folder)} is empty: every class needs at least one image " +
                    $"({Expected}).");
            }
            items.AddRange(files.Select(f => (f, label)));
        }
        return new ImageFolder(root, items, classes);
    }

    /// <summary>
    /// ILSVRC's validation layout: images in one folder, and a ground-truth file, one of:
    /// the devkit's ILSVRC2012_validation_ground_truth.txt (one ILSVRC2012_ID per line in sorted file-name order;
    /// the IDs count the synsets in the devkit's own order, <see cref="ClassNames.DevkitOrder"/>, not the sorted one);
    /// one class id (wnid) per line in the same order; or LOC_val_solution.csv (ImageId,PredictionString, whose first
    /// token is the wnid), matched by file name. With a <paramref name="classesFile"/> of one's own, a number is a
    /// 1-based line of that file. Labels are always indices into the id-sorted classes, as --folder gives them.
    /// </summary>
    public static ImageFolder FromFlat(string dir, string labelsFile, string? classesFile = null,
        string devkitIds = ClassNames.DarknetIds)
    {
        if (!Directory.Exists(dir))
        {
            throw new DirectoryNotFoundException($"{dir} does not exist (--flat expects one folder of images).");
        }
        if (!File.Exists(labelsFile))
        {
            throw new FileNotFoundException($"ground-truth file {labelsFile} does not exist.", labelsFile);
        }
        IReadOnlyList<ClassInfo> classes = classesFile is null ? ClassNames.Ilsvrc2012(devkitIds)
            : ClassNames.Load(classesFile);
        var byId = classes.Select((c, i) => (c.Id, i)).ToDictionary(x => x.Id, x => x.i);
        // What a number means: an ILSVRC2012_ID (the devkit's order), or a line of the user's own classes file.
        string[] numbered = classesFile is null ? ClassNames.DevkitOrder(devkitIds)
            : classes.Select(c => c.Id).ToArray();
        string[] files = Directory.GetFiles(dir).Where(f => !Path.GetFileName(f).StartsWith('.')).OrderBy(f => f,
            StringComparer.Ordinal).ToArray();
        string[] lines = File.ReadAllLines(labelsFile).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        if (files.Length == 0)
        {
            throw new InvalidDataException($"{dir} holds no files (--flat expects one folder of images).");
        }
        bool csv = lines.Length > 0 && lines[0].StartsWith("ImageId,", StringComparison.Ordinal);
        string[] perFile = csv ? FromSolutionCsv(lines, files, labelsFile) : lines;
        if (perFile.Length != files.Length)
        {
            throw new InvalidDataException(
                $"{labelsFile} has {perFile.Length} labels for {files.Length} files in {dir}: one line per image, in " +
                "sorted file-name order.");
        }
        var items = new List<(string, int)>();
        for (int i = 0; i < files.Length; i++)
        {
            string l = perFile[i];
            string id = int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture,
                out int oneBased) && oneBased >= 1 && oneBased <= numbered.Length
                ? numbered[oneBased - 1] : l;
            if (!byId.TryGetValue(id, out int label))
            {
                throw new InvalidDataException(
                    $"{labelsFile}, {(csv ? Path.GetFileName(files[i]) : $"line {i + 1}")}: '{l}' is neither an " +
                    $"ILSVRC2012_ID 1..{numbered.Length} nor a known class id.");
            }
            items.Add((files[i], label));
        }
        return new ImageFolder(dir, items, classes);
    }

    /// <summary>LOC_val_solution.csv: each file's wnid, the first token of its row's PredictionString.</summary>
    private static string[] FromSolutionCsv(string[] lines, string[] files, string labelsFile)
    {
        var byImage = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string row in lines.Skip(1))
        {
            int comma = row.IndexOf(',');
            string[] tokens = comma < 0 ? Array.Empty<string>() : row[(comma + 1)..].Split(' ',
                StringSplitOptions.RemoveEmptyEntries);
            if (tokens.Length == 0)
            {
                throw new InvalidDataException($"{labelsFile}: '{row}' is not ImageId,PredictionString.");
            }
            byImage[row[..comma]] = tokens[0];
        }
        return files.Select(f => byImage.TryGetValue(Path.GetFileNameWithoutExtension(f), out string? wnid) ? wnid
            : throw new InvalidDataException(
            $"{labelsFile} has no row for {Path.GetFileNameWithoutExtension(f)} ({f}).")).ToArray();
    }
}

/// <param name="ImageBytes">Bytes the records take on disk (raw: C×H×W each; JPEG: as encoded).</param>
public sealed record PrepareSummary(int Written, int Rejected, int Total, string RejectsFile,
    long ImageBytes, RecordEncoding Encoding)
{
    public double BytesPerImage => Written == 0 ? 0 : ImageBytes / (double)Written;

    /// <summary>What ILSVRC-2012's 1,281,167 training images would take at this rate.</summary>
    public double ProjectedImageNetBytes => BytesPerImage * 1_281_167;
}

/// <summary>
/// Decodes a folder into a store on several threads, in order, resumably (see <see cref="StoreWriter"/>).
/// </summary>
public static class FolderPreparer
{
    // images decoded between commits; large enough that the decoders seldom wait at a block's end
    private const int Block = 256;

    public static PrepareSummary Prepare(ImageFolder folder, string outDir, int size, int threads,
        Action<int, int>? progress = null,
        System.Threading.CancellationToken cancel = default, RecordEncoding encoding = RecordEncoding.Raw,
        int quality = RecordCodec.DefaultQuality)
    {
        if (size < 8)
        {
            throw new ArgumentException($"--size {size} is too small.");
        }
        using var writer = new StoreWriter(outDir, 3, size, size, folder.Fingerprint(), encoding, quality);
        int total = folder.Items.Count;
        writer.EnsureSpace(total - writer.InputsDone);
        bool jpeg = encoding == RecordEncoding.Jpeg;
        var decoding = new (byte[]? Pixels, byte[]? Encoded, string? Error)[Block];
        var writing = new (byte[]? Pixels, byte[]? Encoded, string? Error)[Block];
        // Block k is written (and committed) on its own thread while block k + 1 decodes: the writer's serial work
        // (the file appends and the mean and covariance sums) stays off the decoders' path.
        Task pending = Task.CompletedTask;
        for (int start = writer.InputsDone; start < total; start += Block)
        {
            cancel.ThrowIfCancellationRequested();
            int n = Math.Min(Block, total - start);
            int first = start;
            var results = decoding;
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = threads }, i =>
            {
                try
                {
                    byte[] pixels = ImageDecoder.CentreSquare(folder.Items[first + i].Path, size);
                    results[i] = (pixels, jpeg ? RecordCodec.Encode(pixels, 3, size, size, quality) : null, null);
                }
                catch (ImageRejectedException e)
                {
                    results[i] = (null, null, e.Message);
                }
            });
            pending.GetAwaiter().GetResult();
            (decoding, writing) = (writing, decoding);
            var block = writing;
            pending = Task.Run(() =>
            {
                try
                {
                    for (int i = 0; i < n; i++)
                    {
                        (string path, int label) = folder.Items[first + i];
                        if (block[i].Pixels is byte[] pixels)
                        {
                            writer.Add(pixels, label, path, block[i].Encoded);
                        }
                        else
                        {
                            writer.Reject(path, block[i].Error!);
                        }
                    }
                    writer.Commit();
                }
                catch (IOException e)
                {
                    throw new IOException(
                        $"writing {outDir} failed: {e.Message}. Everything up to the last committed block is kept: " +
                        "free space " +
                        "(or fix the cause) and run the same command again to resume.", e);
                }
                progress?.Invoke(first + n, total);
            });
        }
        pending.GetAwaiter().GetResult();
        string rejects = Path.Combine(outDir, ImageStore.RejectsFile);
        int written = writer.Records, rejected = writer.Rejected;
        long bytes = writer.ImageBytes;
        writer.Finish(folder.Classes, folder.Root);
        return new PrepareSummary(written, rejected, total, rejects, bytes, encoding);
    }
}
