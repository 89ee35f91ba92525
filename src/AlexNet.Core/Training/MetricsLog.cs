// A run's metrics.jsonl: one typed record per line, written as training goes and read back by the plots,
// the report and the experiments. Each line names its kind ("step" or "epoch") first.
using System.Collections.Generic;
using System.IO;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AlexNet.Training;

[JsonPolymorphic(TypeDiscriminatorPropertyName = "kind")]
[JsonDerivedType(typeof(StepMetrics), "step")]
[JsonDerivedType(typeof(EpochMetrics), "epoch")]
public abstract record MetricsRecord;

/// <summary>Training averages over the steps since the last such line.</summary>
public sealed record StepMetrics(int Epoch, long Step, int StepInEpoch, int StepsPerEpoch, double Loss, double Top1Error, double Top5Error,
    [property: JsonPropertyName("lr")] double LearningRate, double ImagesPerSecond) : MetricsRecord;

/// <summary>One epoch: the training averages, the validation result (§6: centre crop) and the ε it ran with; with --ema, the averaged weights' validation errors too.</summary>
public sealed record EpochMetrics(int Epoch, long Step, double TrainLoss, double TrainTop1Error, double TrainTop5Error,
    double ValLoss, double ValTop1Error, double ValTop5Error, [property: JsonPropertyName("lr")] double LearningRate,
    double ImagesPerSecond, double Seconds, double? EmaValTop1Error = null, double? EmaValTop5Error = null) : MetricsRecord;

public sealed class MetricsLog : System.IDisposable
{
    public const string FileName = "metrics.jsonl";

    readonly StreamWriter _writer;

    /// <summary>Appends to RUN/metrics.jsonl (a resumed run continues the same file).</summary>
    public MetricsLog(string runDir) => _writer = new StreamWriter(Path.Combine(runDir, FileName), append: true);

    MetricsLog(StreamWriter writer) => _writer = writer;

    /// <summary>A log that writes nothing: data-parallel ranks other than 0.</summary>
    public static MetricsLog Discard() => new(StreamWriter.Null);

    /// <summary>Writes one line and flushes it, so a run stopped at any point keeps every line written before.</summary>
    public void Append(MetricsRecord record)
    {
        _writer.WriteLine(JsonSerializer.Serialize(record, Json.Line));
        _writer.Flush();
    }

    public void Dispose() => _writer.Dispose();

    /// <summary>Every record of RUN/metrics.jsonl in order; none when there is no such file.</summary>
    public static List<MetricsRecord> Read(string runDir)
    {
        string path = Path.Combine(runDir, FileName);
        var records = new List<MetricsRecord>();
        if (!File.Exists(path))
        {
            return records;
        }
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            if (text.Length > 0)
            {
                records.Add(Json.Parse<MetricsRecord>(text, $"{path} line {line}"));
            }
        }
        return records;
    }
}
