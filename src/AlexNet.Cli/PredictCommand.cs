using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using AlexNet.Training;
using Spectre.Console;
using static TorchSharp.torch;

namespace AlexNet.Cli;

/// <summary>`alexnet predict`: §2's preprocessing, §4.1's ten-patch averaging, the top five classes (Figure 4, left).</summary>
internal static class PredictCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint", "-c") { Description = "Checkpoint to predict with.", Required = true };
        var files = new Argument<string[]>("files") { Description = "Image files (JPEG, PNG, WebP, BMP, GIF).", Arity = ArgumentArity.OneOrMore };
        var json = new Option<bool>("--json") { Description = "Print JSON instead of tables." };
        var figure = new Option<string?>("--figure") { Description = "Draw the images with their top-5 bars into this PNG (Figure 4, left)." };
        var top = new Option<int>("--top") { Description = "How many classes to show.", DefaultValueFactory = _ => 5 };
        var command = new Command("predict", "Classify image files: top classes with names and probabilities, 10-crop averaged.")
        {
            checkpoint, files, json, figure, top,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            (AlexNetModel model, RunState state) = Checkpoint.LoadModel(r.GetValue(checkpoint)!);
            using (model)
            {
                List<Prediction> predictions = Predict(model, state, r.GetValue(files)!, r.GetValue(top));
                if (r.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(predictions, EvalCommand.ResultJson));
                }
                else
                {
                    foreach (Prediction p in predictions)
                    {
                        var table = new Table().Title(Markup.Escape(p.File)).AddColumn("class").AddColumn(new TableColumn("probability").RightAligned());
                        foreach (ClassScore c in p.Top)
                        {
                            table.AddRow(Markup.Escape(c.Name), c.Probability.ToString("P2", CultureInfo.InvariantCulture));
                        }
                        AnsiConsole.Write(table);
                    }
                }
                if (r.GetValue(figure) is string png)
                {
                    Figures.Predictions(predictions, png);
                    AnsiConsole.MarkupLineInterpolated($"Wrote {png}");
                }
            }
            return 0;
        }));
        return command;
    }


    public sealed record ClassScore(int Index, string Id, string Name, double Probability);

    public sealed record Prediction(string File, ClassScore[] Top, byte[] Thumbnail, int ThumbnailSide, int ThumbnailChannels);

    public static List<Prediction> Predict(AlexNetModel model, RunState state, IReadOnlyList<string> files, int top)
    {
        int size = state.StoreHeight;
        int channels = state.Architecture.InputChannels;
        Augmentation aug = EvalCommand.TestAugmentation(state, size, state.StoreWidth);
        var result = new List<Prediction>();
        foreach (string file in files)
        {
            byte[] record = LoadRecord(file, state);
            using var scope = NewDisposeScope();
            var views = new float[10 * aug.OutputLength];
            for (int v = 0; v < 10; v++)
            {
                aug.Test(record, views.AsSpan(v * aug.OutputLength, aug.OutputLength), (View)v);
            }
            using var _ = no_grad();
            Tensor x = tensor(views, new long[] { 10, channels, aug.Crop, aug.Crop });
            float[] p = model.forward(x).softmax(1).mean(new long[] { 0 }).data<float>().ToArray();   // §4.1: average the ten softmax outputs
            ClassScore[] best = p.Select((prob, i) => (prob, i)).OrderByDescending(t => t.prob).Take(Math.Min(top, p.Length))
                .Select(t => new ClassScore(t.i, t.i.ToString(CultureInfo.InvariantCulture), state.ClassNames.Length > t.i ? state.ClassNames[t.i] : t.i.ToString(CultureInfo.InvariantCulture), t.prob))
                .ToArray();
            result.Add(new Prediction(file, best, record, size, channels));
        }
        return result;
    }


    /// <summary>A file through §2's preprocessing, at the record size (and channels) the checkpoint was trained on.</summary>
    public static byte[] LoadRecord(string file, RunState state)
    {
        if (!File.Exists(file))
        {
            throw new FileNotFoundException($"{file} does not exist.", file);
        }
        try
        {
            byte[] record = ImageDecoder.CentreSquare(file, state.StoreHeight);
            return state.Architecture.InputChannels == 1 ? ToGray(record, state.StoreHeight * state.StoreHeight) : record;
        }
        catch (ImageRejectedException e)
        {
            throw new UserError($"{file}: {e.Message}. Pass a JPEG, PNG, WebP, BMP or GIF image.");
        }
    }

    /// <summary>ITU-R 601 luma, for nets trained on grayscale data.</summary>
    static byte[] ToGray(byte[] planarRgb, int plane)
    {
        var gray = new byte[plane];
        for (int i = 0; i < plane; i++)
        {
            gray[i] = (byte)Math.Round(0.299 * planarRgb[i] + 0.587 * planarRgb[plane + i] + 0.114 * planarRgb[2 * plane + i]);
        }
        return gray;
    }
}
