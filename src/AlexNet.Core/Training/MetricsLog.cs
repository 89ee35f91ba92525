// A run's metrics.jsonl: one typed record per line, written as training goes and read back by the plots,
// the report and the experiments. Each line names its kind ("step" or "epoch") first.
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlexNet.Training;

[JsonPolymorphic(TypeDiscriminatorPropertyName = "kind")]
[JsonDerivedType(typeof(StepMetrics), "step")]
[JsonDerivedType(typeof(EpochMetrics), "epoch")]
public abstract record MetricsRecord;

/// <summary>Training averages over the steps since the last such line.</summary>
public sealed record StepMetrics(int Epoch, long Step, int StepInEpoch, int StepsPerEpoch, double Loss,
    double Top1Error, double Top5Error,
    [property: JsonPropertyName("lr")] double LearningRate, double ImagesPerSecond) : MetricsRecord;

/// <summary>
/// One epoch: the training averages, the validation result (§6: centre crop) and the ε it ran with; with --ema, the
/// averaged weights' validation errors too.
/// </summary>
public sealed record EpochMetrics(int Epoch, long Step, double TrainLoss, double TrainTop1Error, double TrainTop5Error,
    double ValLoss, double ValTop1Error, double ValTop5Error, [property: JsonPropertyName("lr")] double LearningRate,
    double ImagesPerSecond, double Seconds, double? EmaValTop1Error = null,
    double? EmaValTop5Error = null) : MetricsRecord;

public sealed class MetricsLog : System.IDisposable
{
    public const string FileName = "metrics.jsonl";

    private readonly Stream _file;

    /// <summary>
    /// Appends to RUN/metrics.jsonl (a resumed run continues the same file), first dropping a torn last line.
    /// </summary>
    public MetricsLog(string runDir)
    {
        string path = Path.Combine(runDir, FileName);
        _file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        _file.SetLength(CompleteLength(_file));
        _file.Seek(0, SeekOrigin.End);
    }

    private MetricsLog(Stream file) => _file = file;

    /// <summary>A log that writes nothing: data-parallel ranks other than 0.</summary>
    public static MetricsLog Discard() => new(Stream.Null);

    /// <summary>
    /// Writes one line and flushes it, so a run stopped at any point keeps every line written before. A write that
    /// fails (a full disk) is cut back off, so the file never holds half a line followed by the next.
    /// </summary>
    public void Append(MetricsRecord record)
    {
        byte[] line = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(record, Json.Line) + "\n");
        long before = _file.Length;
        try
        {
            _file.Write(line);
            _file.Flush();
        }
        catch (IOException)
        {
            try
            {
                _file.SetLength(before);
                _file.Seek(before, SeekOrigin.Begin);
            }
            catch (IOException)
            {
            }
            throw;
        }
    }

    public void Dispose() => _file.Dispose();

    /// <summary>
    /// Every record of RUN/metrics.jsonl in order; none when there is no such file. A torn last line (the process or
    /// the disk failed during an append) is left out; a damaged line anywhere else is an error that names it.
    /// </summary>
    public static List<MetricsRecord> Read(string runDir)
    {
        string path = Path.Combine(runDir, FileName);
        var records = new List<MetricsRecord>();
        if (!File.Exists(path))
        {
            return records;
        }
        string text = File.ReadAllText(path);
        string[] lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            bool torn = i == lines.Length - 1;   // after the last newline: empty, or a line never finished
            if (lines[i].Length > 0 && !torn)
            {
                records.Add(Json.Parse<MetricsRecord>(lines[i], $"{path} line {i + 1}"));
            }
        }
        return records;
    }

    /// <summary>
    /// On resume: the lines logged after the checkpoint (a crash or a stop past it) are dropped, since the run will
    /// log those steps again. Returns how many lines were dropped.
    /// </summary>
    public static int CutBackTo(string runDir, int epochsDone, long step)
    {
        string path = Path.Combine(runDir, FileName);
        List<MetricsRecord> all = Read(runDir);
        List<MetricsRecord> kept = all.Where(r => r switch
        {
            StepMetrics s => s.Step <= step,
            EpochMetrics e => e.Epoch <= epochsDone,
            _ => true,
        }).ToList();
        if (kept.Count < all.Count)   // a torn last line alone is cut off when the log is next opened
        {
            var text = new StringBuilder();
            foreach (MetricsRecord r in kept)
            {
                text.Append(JsonSerializer.Serialize(r, Json.Line)).Append('\n');
            }
            AtomicFile.WriteAllText(path, text.ToString());
        }
        return all.Count - kept.Count;
    }

    /// <summary>The length of the file up to and including its last newline.</summary>
    private static long CompleteLength(Stream file)
    {
        long n = file.Length;
        var one = new byte[1];
        while (n > 0)
        {
            file.Seek(n - 1, SeekOrigin.Begin);
            file.ReadExactly(one);
            if (one[0] == '\n')
            {
                break;
            }
            n--;
        }
        return n;
    }
}
