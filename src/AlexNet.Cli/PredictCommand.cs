using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Globalization;
using AlexNet.Analysis;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Inference;
using AlexNet.Model;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>
/// `alexnet predict`: §2's preprocessing, §4.1's ten-patch averaging, the top five classes (Figure 4, left).
/// </summary>
internal static class PredictCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string?>("--checkpoint", "-c") { Description = "Checkpoint to predict with." };
        var onnx = new Option<string?>("--onnx")
        {
            Description =
                "Or an ONNX file from `alexnet export`, run by ONNX Runtime alone (its preprocessing from its " +
                "metadata).",
        };
        Option<string> device = Cli.DeviceOption();
        Option<string?> precision = Cli.CheckpointPrecisionOption();
        var threads = new Option<int>("--threads")
        {
            Description = "Compute threads.",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var files = new Argument<string[]>("files")
        {
            Description = "Image files (JPEG, PNG, WebP, BMP, GIF).",
            Arity = ArgumentArity.OneOrMore,
        };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of tables." };
        var figure = new Option<string?>("--figure")
        {
            Description = "Draw the images with their top-5 bars into this PNG (Figure 4, left).",
        };
        var top = new Option<int>("--top") { Description = "How many classes to show.", DefaultValueFactory = _ => 5 };
        var views = new Option<string>("--views")
        {
            Description =
                "ten = the softmax averaged over §4.1's ten patches; centre = the centre patch alone (torchvision's " +
                "single crop); flip = the centre and its reflection.",
            DefaultValueFactory = _ => "ten",
        };
        views.AcceptOnlyFromAmong("ten", "centre", "flip");
        var command =
            new Command("predict", "Classify image files: top classes with names and probabilities (10-crop averaged " +
            "by default). A file that cannot be read is reported and the others are classified.")
        {
            checkpoint, onnx, files, json, figure, top, views, threads, device, precision,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            List<Prediction> predictions;
            List<FileFailure> failures;
            int k = r.GetValue(top);
            if (k < 1)
            {
                throw new UserError($"--top {k}: give at least 1.");
            }
            View[] chosen = Evaluator.Of(Enum.Parse<ViewSet>(r.GetValue(views)!, ignoreCase: true)).Views;
            if (r.GetValue(onnx) is string onnxFile)
            {
                if (r.GetValue(checkpoint) is not null)
                {
                    throw new UserError("pass --checkpoint or --onnx, not both.");
                }
                using var classifier = new AlexNet.Interop.OnnxClassifier(onnxFile, r.GetValue(threads));
                (byte[][] records, string[] read, failures) = Predictor.LoadRecords(r.GetValue(files)!,
                    classifier.Preprocessing.RecordSize,
                    classifier.Preprocessing.Channels);
                predictions = classifier.PredictRecords(records, read, k, chosen);
            }
            else
            {
                string path = r.GetValue(checkpoint)
                    ?? throw new UserError("say what to predict with: --checkpoint CKPT or --onnx FILE.");
                Compute.UseThreads(r.GetValue(threads));
                using Classifier net = Classifier.Load(path, Cli.PrecisionOrNull(r.GetValue(precision)),
                    Compute.ResolveDevice(r.GetValue(device)!));
                (byte[][] records, string[] read, failures) = Predictor.LoadRecords(r.GetValue(files)!,
                    net.Card.RecordSize, net.Card.Channels);
                predictions = net.Predict(records, read, k, chosen);
            }
            foreach (FileFailure f in failures)
            {
                Console.Error.WriteLine(
                    $"error: {f.Reason}{(f.Reason.Contains(f.File, StringComparison.Ordinal) ? "" : $" ({f.File})")}");
            }
            {
                if (r.GetValue(json))
                {
                    Console.WriteLine(Json.Serialize(predictions));
                }
                else
                {
                    foreach (Prediction p in predictions)
                    {
                        var table = new Table().Title(Markup.Escape(p.Source)).AddColumn("class")
                            .AddColumn(new TableColumn("probability").RightAligned());
                        foreach (ClassScore c in p.Top)
                        {
                            table.AddRow(Markup.Escape(c.Name),
                                c.Probability.ToString("P2", CultureInfo.InvariantCulture));
                        }
                        AnsiConsole.Write(table);
                    }
                }
                if (r.GetValue(figure) is string png && predictions.Count > 0)
                {
                    Figures.Predictions(predictions, png);
                    AnsiConsole.MarkupLineInterpolated($"Wrote {png}");
                }
            }
            if (failures.Count > 0)
            {
                Console.Error.WriteLine(
                    $"{failures.Count} of {failures.Count + predictions.Count} file(s) could not be classified " +
                    "(listed above); the others were.");
                return Cli.Failure;
            }
            return 0;
        }));
        return command;
    }
}
