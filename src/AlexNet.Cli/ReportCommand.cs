using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;
using System.Text.Json;
using AlexNet.Analysis;
using AlexNet.Data;
using AlexNet.Model;
using AlexNet.Training;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>`alexnet report RUN_DIR`: a self-contained markdown report of a run, with its PNG plots.</summary>
internal static class ReportCommand
{
    public static Command Create()
    {
        var run = new Argument<string>("run") { Description = "Run folder written by `alexnet train` or `alexnet quickstart`." };
        var data = new Option<string?>("--data", "-d") { Description = "A store to draw sample predictions from (e.g. data/fashion-mnist/val)." };
        var command = new Command("report", "Write RUN/report.md: options, per-epoch metrics, loss/error/ε curves, the conv1 kernel grid, sample predictions.") { run, data };
        command.SetAction(r => Cli.Run(() =>
        {
            string path = Write(r.GetValue(run)!, r.GetValue(data));
            AnsiConsole.MarkupLineInterpolated($"Wrote {path}");
            return 0;
        }));
        return command;
    }

    public static string Write(string runDir, string? data)
    {
        if (File.Exists(Path.Combine(runDir, "results.json")) && !File.Exists(Path.Combine(runDir, Trainer.OptionsFile)))
        {
            throw new UserError($"{runDir} is an experiment folder: its report is {Path.Combine(runDir, "report.md")}.");
        }
        string optionsPath = Path.Combine(runDir, Trainer.OptionsFile);
        if (!File.Exists(optionsPath))
        {
            throw new UserError($"{runDir} is not a run folder (no {Trainer.OptionsFile}): pass a folder written by `alexnet train`.");
        }
        TrainOptions o = TrainOptions.FromJson(File.ReadAllText(optionsPath), optionsPath);
        string ckpt = File.Exists(Path.Combine(runDir, Trainer.BestCheckpoint)) ? Path.Combine(runDir, Trainer.BestCheckpoint) : Path.Combine(runDir, Trainer.LastCheckpoint);
        var md = new StringBuilder();
        md.AppendLine($"# Run `{Path.GetFileName(Path.GetFullPath(runDir))}`").AppendLine();
        md.AppendLine("| option | value |").AppendLine("|---|---|");
        foreach (JsonProperty p in JsonDocument.Parse(o.ToJson()).RootElement.EnumerateObject())
        {
            string value = p.Value.ValueKind == JsonValueKind.Array ? "[" + string.Join(", ", p.Value.EnumerateArray()) + "]" : p.Value.ToString();
            md.AppendLine($"| {p.Name} | {value} |");
        }
        md.AppendLine().AppendLine("## Per epoch").AppendLine();
        md.AppendLine("| epoch | ε | train loss | train top-1 | val top-1 | val top-5 | img/s | s |").AppendLine("|---|---|---|---|---|---|---|---|");
        string metrics = Path.Combine(runDir, Trainer.MetricsFile);
        foreach (string line in File.Exists(metrics) ? File.ReadLines(metrics) : Enumerable.Empty<string>())
        {
            JsonElement e = JsonDocument.Parse(line).RootElement;
            if (e.GetProperty("kind").GetString() != "epoch")
            {
                continue;
            }
            string P(string name) => (100 * e.GetProperty(name).GetDouble()).ToString("F2", CultureInfo.InvariantCulture) + "%";
            string N(string name, string f) => e.GetProperty(name).GetDouble().ToString(f, CultureInfo.InvariantCulture);
            md.AppendLine($"| {e.GetProperty("epoch").GetInt32()} | {N("lr", "G3")} | {N("trainLoss", "F4")} | {P("trainTop1Error")} | {P("valTop1Error")} | {P("valTop5Error")} | {N("imagesPerSecond", "F0")} | {N("seconds", "F0")} |");
        }
        md.AppendLine().AppendLine("## Curves").AppendLine();
        foreach (string png in RunPlots.Write(runDir))
        {
            md.AppendLine($"![{Path.GetFileNameWithoutExtension(png)}]({Path.GetFileName(png)})");
        }
        if (File.Exists(ckpt))
        {
            (AlexNetModel model, RunState state) = Checkpoint.LoadModel(ckpt);
            using (model)
            {
                GridLayout g = KernelGrid.Draw(model.LayerParameters("conv1").Weight, Path.Combine(runDir, "kernels.png"), scale: KernelScale(state));
                md.AppendLine().AppendLine($"## conv1 kernels (Figure 3), from {Path.GetFileName(ckpt)}").AppendLine();
                md.AppendLine($"{g.Kernels} kernels of {g.KernelSide}×{g.KernelSide}, {g.Towers} block(s):").AppendLine().AppendLine("![kernels](kernels.png)");
                if (data is not null)
                {
                    using ImageStore store = ImageStore.Open(data);
                    string[] names = store.Manifest.Classes.Select(c => c.Name).ToArray();
                    var samples = Enumerable.Range(0, Math.Min(8, store.Count)).Select(i =>
                    {
                        string file = Path.Combine(Path.GetTempPath(), $"alexnet-report-{i}.png");
                        using (SkiaSharp.SKBitmap b = Figures.ToBitmap(store.Record(i).ToArray(), store.Height, store.Channels))
                        using (SkiaSharp.SKData png = b.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100))
                        {
                            File.WriteAllBytes(file, png.ToArray());
                        }
                        return (file, names[store.Labels[i]]);
                    }).ToArray();
                    List<PredictCommand.Prediction> predictions = PredictCommand.Predict(model, state, samples.Select(s => s.file).ToArray(), 5);
                    Figures.Predictions(predictions, Path.Combine(runDir, "predictions.png"));
                    md.AppendLine().AppendLine($"## Sample predictions (Figure 4, left) on the first images of {data}").AppendLine();
                    md.AppendLine("| image | true class | top prediction |").AppendLine("|---|---|---|");
                    for (int i = 0; i < samples.Length; i++)
                    {
                        md.AppendLine($"| {i} | {samples[i].Item2} | {predictions[i].Top[0].Name} ({predictions[i].Top[0].Probability:P1}) |");
                    }
                    md.AppendLine().AppendLine("![predictions](predictions.png)");
                }
            }
        }
        string path = Path.Combine(runDir, "report.md");
        AtomicFile.WriteAllText(path, md.ToString());
        return path;
    }

    static int KernelScale(RunState s) => s.Architecture.Convs[0].Size >= 11 ? 4 : 8;
}
