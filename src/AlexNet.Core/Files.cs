// What the tool writes and reads back: one JSON dialect for every file (options, checkpoint headers,
// manifests, metrics lines, results), and one way to replace a file so that a reader, a crash or a full
// disk never leaves half of it.
using System;
using System.IO;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlexNet;

public static class Json
{
    /// <summary>
    /// camelCase keys, kebab-case enums, nulls left out, ±∞ and NaN as names (a best error starts at +∞), and an
    /// unknown key is an error (STYLE §3: a misspelt preset key must not be ignored).
    /// </summary>
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The same dialect on one line, for JSON-lines logs (metrics.jsonl).</summary>
    public static readonly JsonSerializerOptions Line = new(Options) { WriteIndented = false };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    /// <summary>Parses <paramref name="json"/>; a malformed or unknown field names <paramref name="source"/>.</summary>
    public static T Parse<T>(string json, string source)
    {
        try
        {
            return JsonSerializer.Deserialize<T>(json,
                Options) ?? throw new InvalidDataException($"{source} is empty.");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: {e.Message}");
        }
    }

    public static T Read<T>(string path) => Parse<T>(File.ReadAllText(path), path);

    public static void Write<T>(string path, T value) => AtomicFile.WriteAllText(path, Serialize(value));
}

public static class AtomicFile
{
    /// <summary> Writes through <paramref name="write"/> into a temporary file beside <paramref name="path"/>, flushes
    /// it to disk, then renames it over the target: readers see the old file or the new one whole. On failure the
    /// temporary file is removed and the old file is untouched.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        string temp = path + ".tmp";
        try
        {
            using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(file);
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
        catch (IOException e)
        {
            TryDelete(temp);
            throw new IOException(
                $"could not write {path}: {e.Message} (is the disk full?). The previous {Path.GetFileName(path)}, if " +
                "any, is intact.", e);
        }
    }

    public static void WriteAllBytes(string path, ReadOnlyMemory<byte> bytes) => Write(path, f => f.Write(bytes.Span));

    public static void WriteAllText(string path, string text) => WriteAllBytes(path, Encoding.UTF8.GetBytes(text));

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
    }
}
