// §2 ILSVRC: 1000 classes. The table of WordNet ids and readable names comes from Debian packages
// (nothing downloads): darknet lists the 1000 ILSVRC-2012 ids (first 1000 lines, darknet's own order),
// opencv-doc lists the 1000 names in id-sorted order, which is also the order of ImageNet's class folders.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace AlexNet.Data;

public sealed record ClassInfo(string Id, string Name);

public static class ClassNames
{
    public const string DarknetIds = "/usr/share/darknet/data/imagenet.labels.list";
    public const string OpenCvNames =
        "/usr/share/doc/opencv-doc/examples/data/dnn/classification_classes_ILSVRC2012.txt";

    public static readonly IReadOnlyList<string> FashionMnist = new[]
    {
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    };

    /// <summary>
    /// The devkit's own order of the 1000 synsets (meta.mat), which its ILSVRC2012_IDs count from 1: the first 1000
    /// lines of darknet's imagenet.labels.list (line 1 n02119789 kit fox, line 490 n01751748 sea snake). Not sorted.
    /// </summary>
    public static string[] DevkitOrder(string idsFile = DarknetIds)
    {
        if (!File.Exists(idsFile))
        {
            throw new FileNotFoundException(
                $"{idsFile} is missing: install the Debian package 'darknet' (./setup.sh does).", idsFile);
        }
        string[] ids = File.ReadLines(idsFile).Take(1000).Select(l => l.Trim()).ToArray();
        if (ids.Length != 1000 || ids.Distinct().Count() != 1000)
        {
            throw new InvalidDataException(
                $"expected 1000 distinct synset ids at the top of {idsFile}; got {ids.Distinct().Count()}.");
        }
        return ids;
    }

    /// <summary>The 1000 ILSVRC-2012 classes in id-sorted order (index = the label the network predicts).</summary>
    public static IReadOnlyList<ClassInfo> Ilsvrc2012(string idsFile = DarknetIds, string namesFile = OpenCvNames)
    {
        foreach ((string file, string package) in new[] { (idsFile, "darknet"), (namesFile, "opencv-doc") })
        {
            if (!File.Exists(file))
            {
                throw new FileNotFoundException(
                    $"{file} is missing: install the Debian package '{package}' (./setup.sh does).", file);
            }
        }
        string[] ids = File.ReadLines(idsFile).Take(1000).Select(l => l.Trim()).OrderBy(s => s,
            StringComparer.Ordinal).ToArray();
        string[] names = File.ReadLines(namesFile).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
        if (ids.Length != 1000 || names.Length != 1000 || ids.Distinct().Count() != 1000)
        {
            throw new InvalidDataException(
                $"expected 1000 distinct ids in {idsFile} and 1000 names in {namesFile}; got {ids.Length} " +
                $"and {names.Length}.");
        }
        return ids.Zip(names, (id, name) => new ClassInfo(id, name)).ToArray();
    }

    /// <summary>
    /// A user's own names file: one class a line, either "id name…" / "id\tname" or just a name.
    /// </summary>
    public static IReadOnlyList<ClassInfo> Load(string file)
    {
        if (!File.Exists(file))
        {
            throw new FileNotFoundException($"class names file {file} does not exist.", file);
        }
        var result = new List<ClassInfo>();
        foreach (string raw in File.ReadLines(file))
        {
            string line = raw.Trim();
            if (line.Length == 0)
            {
                continue;
            }
            int sep = line.IndexOfAny(new[] { '\t', ' ' });
            bool hasId = sep > 0 && line[0] == 'n' && line[1..sep].All(char.IsDigit);
            result.Add(hasId ? new ClassInfo(line[..sep], line[(sep + 1)..].Trim()) : new ClassInfo(line, line));
        }
        return result;
    }

    /// <summary>
    /// Readable names for folder ids: ImageNet wnids get their ILSVRC names when the table is installed.
    /// </summary>
    public static IReadOnlyList<ClassInfo> ForFolders(IReadOnlyList<string> folderIds)
    {
        Dictionary<string, string>? table = null;
        if (folderIds.Any(id => id.Length == 9 && id[0] == 'n') && File.Exists(DarknetIds) && File.Exists(OpenCvNames))
        {
            table = Ilsvrc2012().ToDictionary(c => c.Id, c => c.Name);
        }
        return folderIds.Select(id => new ClassInfo(id,
            table is not null && table.TryGetValue(id, out string? n) ? n : id)).ToArray();
    }
}
