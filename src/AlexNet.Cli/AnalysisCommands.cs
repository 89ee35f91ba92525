using System;
using System.CommandLine;
using System.Globalization;
using System.IO;
using System.Linq;
using AlexNet.Analysis;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Inference;
using AlexNet.Model;
using AlexNet.Training;
using Spectre.Console;
using static TorchSharp.torch;

namespace AlexNet.Cli;

/// <summary>§6.1: `alexnet kernels` (Figure 3), `alexnet features` and `alexnet neighbors` (Figure 4, right).</summary>
internal static class AnalysisCommands
{
    public static Command Kernels()
    {
        var checkpoint = new Option<string>("--checkpoint", "-c")
        {
            Description = "Checkpoint whose conv1 kernels to draw.",
            Required = true,
        };
        var output = new Option<string>("--out", "-o")
        {
            Description = "PNG file.",
            DefaultValueFactory = _ => "conv1.png",
        };
        var scale = new Option<int>("--scale")
        {
            Description = "Pixels per kernel weight.",
            DefaultValueFactory = _ => 4,
        };
        var command =
            new Command("kernels", "Draw conv1's learned kernels as an image grid, one block per tower (Figure 3).")
        {
            checkpoint,
            output,
            scale,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            (AlexNetModel model, _) = ModelFile.Load(r.GetValue(checkpoint)!);
            using (model)
            {
                GridLayout g = KernelGrid.Draw(model.LayerParameters("conv1").Weight, r.GetValue(output)!,
                    r.GetValue(scale), KernelGrid.TowersOf(model.Architecture));
                AnsiConsole.MarkupLineInterpolated(
                    $"Wrote {r.GetValue(output)}: {g.Kernels} kernels {g.KernelSide}×{g.KernelSide}, {g.Towers} tower block(s), {g.Width}×{g.Height} px.");
            }
            return 0;
        }));
        return command;
    }

    public static Command Features()
    {
        var checkpoint = new Option<string>("--checkpoint", "-c") { Description = "Checkpoint.", Required = true };
        var data = new Option<string>("--data", "-d")
        {
            Description = "Store whose images to describe (e.g. data/fashion-mnist/train).",
            Required = true,
        };
        var layer = new Option<string>("--layer")
        {
            Description = "Layer (§6.1 uses fc7, the last hidden layer).",
            DefaultValueFactory = _ => "fc7",
        };
        var output = new Option<string>("--out", "-o")
        {
            Description = "Feature file (float32 N×D, plus FILE.json).",
            Required = true,
        };
        Option<string> device = Cli.DeviceOption();
        Option<string?> precision = Cli.CheckpointPrecisionOption();
        var command =
            new Command("features", "Write every image's last-hidden-layer (fc7) activations to a file (§6.1).")
        {
            checkpoint,
            data,
            layer,
            output,
            device,
            precision,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string ckpt = r.GetValue(checkpoint)!;
            using Classifier net = Classifier.Load(ckpt, Cli.PrecisionOrNull(r.GetValue(precision)),
                Compute.ResolveDevice(r.GetValue(device)!));
            using (ImageStore store = ImageStore.Open(r.GetValue(data)!))
            {
                Augmentation aug = TestPipeline.Augmentation(net.Card, store.Height, store.Width);
                var clock = System.Diagnostics.Stopwatch.StartNew();
                FeatureHeader h = Retrieval.Extract(net.Model, store, aug,
                    r.GetValue(layer)!, r.GetValue(output)!, ckpt);
                AnsiConsole.MarkupLineInterpolated(
                    $"Wrote {r.GetValue(output)}: {h.Count} × {h.Dimensions} ({h.Layer}) in {clock.Elapsed.TotalSeconds:F1} s.");
            }
            return 0;
        }));
        return command;
    }

    public static Command Neighbors()
    {
        var checkpoint = new Option<string>("--checkpoint", "-c")
        {
            Description = "Checkpoint the features were written with.",
            Required = true,
        };
        var features = new Option<string?>("--features", "-f")
        {
            Description = "Feature file from `alexnet features`: exact search (or the rows --rerank reads).",
        };
        var codes = new Option<string?>("--codes")
        {
            Description =
                "Code file from `alexnet codes encode`: Hamming search over §6.1's binary codes instead of exact fc7.",
        };
        var rerank = new Option<int>("--rerank")
        {
            Description = "With --codes: re-order the top R by exact fc7 distance (0: Hamming order).",
            DefaultValueFactory = _ => 0,
        };
        var query = new Option<string>("--query", "-q")
        {
            Description = "Query image file, or store:INDEX for a record of the features' store.",
            Required = true,
        };
        var k = new Option<int>("-k") { Description = "Neighbours to return.", DefaultValueFactory = _ => 8 };
        var figure = new Option<string?>("--figure") { Description = "PNG: the query first, then its neighbours." };
        var command =
            new Command("neighbors", "Find the training images nearest to a query in fc7 space (Figure 4, right).")
        {
            checkpoint, features, codes, rerank, query, k, figure,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string? codeFile = r.GetValue(codes), featureFile = r.GetValue(features);
            if (codeFile is null && featureFile is null)
            {
                throw new ArgumentException(
                    "give --features F (exact fc7 search) or --codes C (Hamming search over binary codes).");
            }
            if (r.GetValue(rerank) < 0 || (r.GetValue(rerank) > 0 && codeFile is null))
            {
                throw new ArgumentException($"--rerank {r.GetValue(rerank)}: give a count of 0 or more, with --codes.");
            }
            using Classifier net = Classifier.Load(r.GetValue(checkpoint)!);
            HammingIndex? index = codeFile is null ? null : HammingIndex.Open(codeFile);
            BinaryCoder? coder = index is null ? null : BinaryCoder.Load(index.Header!.Coder).Coder;
            featureFile ??= index is not null && r.GetValue(rerank) > 0 ? index.Header!.Features : null;
            using FeatureMatrix? data = featureFile is null ? null : Retrieval.Open(featureFile);
            using (ImageStore store = ImageStore.Open(data?.Header!.Store ?? index!.Header!.Store))
            {
                string q = r.GetValue(query)!;
                byte[] record = q.StartsWith("store:", StringComparison.Ordinal)
                    ? store.Record(int.Parse(q[6..], CultureInfo.InvariantCulture)).ToArray()
                    : net.Read(q);
                Neighbour[] hits = index is null
                    ? Retrieval.Search(net, data!, store, record, r.GetValue(k))
                    : Retrieval.RankByCodes(net.Features(new[] { record }, index.Header!.Layer), coder!, index, store,
                    r.GetValue(k), data, r.GetValue(rerank),
                        Environment.ProcessorCount);
                string distance = index is null || r.GetValue(rerank) > 0 ? "distance" : "Hamming";
                var table = new Table().AddColumn("rank").AddColumn("record").AddColumn("class")
                    .AddColumn(new TableColumn(distance).RightAligned()).AddColumn("source");
                foreach (Neighbour h in hits)
                {
                    // Text, not markup: a source such as "idx:train:5" would otherwise become an emoji.
                    table.AddRow(new Text(h.Rank.ToString(CultureInfo.InvariantCulture)),
                        new Text(h.Index.ToString(CultureInfo.InvariantCulture)),
                        new Text(store.Manifest.Classes[h.Label].Name), new Text(
                        h.Distance.ToString(distance == "Hamming" ? "F0" : "F3", CultureInfo.InvariantCulture)),
                        new Text(h.Source));
                }
                AnsiConsole.Write(table);
                if (r.GetValue(figure) is string png)
                {
                    Figures.Neighbours(store, record, hits.Select(h => h.Index).ToArray(), png);
                    AnsiConsole.MarkupLineInterpolated($"Wrote {png}");
                }
            }
            return 0;
        }));
        return command;
    }
}
