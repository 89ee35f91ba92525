// A run folder as one markdown page: its options, per-epoch metrics, curves, conv1's kernels (Figure 3) and
// sample predictions on a store's first images with their true classes (Figure 4, left).
using System;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Inference;
using AlexNet.Model;
using AlexNet.Training;

namespace AlexNet.Analysis;

public static class RunReport
{
    public const string FileName = "report.md";

    /// <summary>
    /// Writes RUN/report.md (and kernels.png, predictions.png with <paramref name="samplesFrom"/>); returns its path.
    /// </summary>
    /// <param name="checkpoint">The checkpoint pictured (default: best.ckpt, else last.ckpt).</param>
    public static string Write(string runDir, string? samplesFrom, int samples = 8, string? checkpoint = null)
    {
        if (File.Exists(Path.Combine(runDir,
            "results.json")) && !File.Exists(Path.Combine(runDir, Trainer.OptionsFile)))
        {
            throw new ArgumentException(
                $"{runDir} is an experiment folder: its report is {Path.Combine(runDir, FileName)}.");
        }
        string optionsPath = Path.Combine(runDir, Trainer.OptionsFile);
        if (!File.Exists(optionsPath))
        {
            throw new FileNotFoundException(
                $"{runDir} is not a run folder (no {Trainer.OptionsFile}): pass a folder written by `alexnet train`.",
                optionsPath);
        }
        TrainOptions o = TrainOptions.FromJson(File.ReadAllText(optionsPath), optionsPath);
        var md = new StringBuilder();
        md.AppendLine($"# Run `{Path.GetFileName(Path.GetFullPath(runDir))}`").AppendLine();
        md.AppendLine("| option | value |").AppendLine("|---|---|");
        foreach (JsonProperty p in JsonDocument.Parse(o.ToJson()).RootElement.EnumerateObject())
        {
            string value = p.Value.ValueKind == JsonValueKind.Array ? "[" + string.Join(", ",
                p.Value.EnumerateArray()) + "]" : p.Value.ToString();
            md.AppendLine($"| {p.Name} | {value} |");
        }
        md.AppendLine().AppendLine("## Per epoch").AppendLine();
        md.AppendLine("| epoch | ε | train loss | train top-1 | val top-1 | val top-5 | img/s | s |")
            .AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (EpochMetrics e in MetricsLog.Read(runDir).OfType<EpochMetrics>())
        {
            md.AppendLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"| {e.Epoch} | {e.LearningRate:G3} | {e.TrainLoss:F4} | {100 * e.TrainTop1Error:F2}% | {100 * e.ValTop1Error:F2}% | {100 * e.ValTop5Error:F2}% | {e.ImagesPerSecond:F0} | {e.Seconds:F0} |"));
        }
        md.AppendLine().AppendLine("## Curves").AppendLine();
        foreach (string png in RunPlots.Write(runDir))
        {
            md.AppendLine($"![{Path.GetFileNameWithoutExtension(png)}]({Path.GetFileName(png)})");
        }
        string ckpt = checkpoint ?? Path.Combine(runDir, File.Exists(Path.Combine(runDir,
            Trainer.BestCheckpoint)) ? Trainer.BestCheckpoint : Trainer.LastCheckpoint);
        if (File.Exists(ckpt))
        {
            (AlexNetModel model, ModelCard card) = ModelFile.Load(ckpt);
            using (model)
            {
                GridLayout g = KernelGrid.Draw(model.LayerParameters("conv1").Weight,
                    Path.Combine(runDir, "kernels.png"), scale: KernelGrid.ScaleFor(model.Architecture),
                    towers: KernelGrid.TowersOf(model.Architecture));
                md.AppendLine().AppendLine($"## conv1 kernels (Figure 3), from {Path.GetFileName(ckpt)}").AppendLine();
                md.AppendLine($"{g.Kernels} kernels of {g.KernelSide}×{g.KernelSide}, {g.Towers} block(s):")
                    .AppendLine().AppendLine("![kernels](kernels.png)");
                if (samplesFrom is not null)
                {
                    AppendPredictions(md, model, card, samplesFrom, samples, runDir);
                }
            }
        }
        string path = Path.Combine(runDir, FileName);
        AtomicFile.WriteAllText(path, md.ToString());
        return path;
    }

    /// <summary>Figure 4 (left) on the store's first records: true class, top prediction, predictions.png.</summary>
    public static void AppendPredictions(StringBuilder md, AlexNetModel model, ModelCard card,
        string store, int samples, string runDir)
    {
        using ImageStore data = ImageStore.Open(store);
        var predictions = Predictor.PredictRecords(model, card, data,
            Enumerable.Range(0, Math.Min(samples, data.Count)).ToArray(), 5);
        Figures.Predictions(predictions, Path.Combine(runDir, "predictions.png"));
        md.AppendLine()
            .AppendLine($"## Sample predictions (Figure 4, left) on the first images of {store}").AppendLine();
        md.AppendLine("| image | true class | top prediction | correct |").AppendLine("|---|---|---|---|");
        for (int i = 0; i < predictions.Count; i++)
        {
            Prediction p = predictions[i];
            md.AppendLine(
                $"| {i} | {p.TrueName} | {p.Top[0].Name} ({p.Top[0].Probability:P1}) | {(p.Top[0].Index == p.TrueClass ? "yes" : "no")} |");
        }
        md.AppendLine().AppendLine("![predictions](predictions.png)");
    }
}
