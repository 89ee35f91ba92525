using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Globalization;
using System.IO;
using System.Linq;
using AlexNet.Model;
using AlexNet.Serving;
using AlexNet.Training;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>`alexnet bench serve`: the server under load (ServeBenchmark), batching on against off.</summary>
internal static class BenchServeCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string?>("--checkpoint", "-c")
        {
            Description =
                "Checkpoint to serve (default: a seeded, untrained net of --model, written to a temporary file).",
        };
        Option<string> model = Cli.ModelOption(Variants.Small);
        var image = new Option<string>("--image")
        {
            Description = "The image every request sends.",
            DefaultValueFactory = _ => "/usr/share/darknet/data/dog.jpg",
        };
        var clients = new Option<string>("--clients")
        {
            Description = "Concurrent clients to measure, comma-separated.",
            DefaultValueFactory = _ => "1,8,32",
        };
        var maxBatch = new Option<string>("--max-batch")
        {
            Description = "--max-batch settings to compare, comma-separated (1 = batching off).",
            DefaultValueFactory = _ => "32,1",
        };
        var maxWait = new Option<int>("--max-wait-ms")
        {
            Description = "The server's --max-wait-ms.",
            DefaultValueFactory = _ => 5,
        };
        var requests = new Option<int>("--requests")
        {
            Description = "Requests per measurement (at least 4 per client).",
            DefaultValueFactory = _ => 400,
        };
        var rounds = new Option<int>("--rounds")
        {
            Description = "Alternating rounds; medians are reported.",
            DefaultValueFactory = _ => 3,
        };
        var views = new Option<string>("--views")
        {
            Description = "centre (one forward per image, torchvision's) or ten (§4.1).",
            DefaultValueFactory = _ => "centre",
        };
        var threads = new Option<int>("--threads")
        {
            Description = "Compute threads.",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var json = new Option<string?>("--json") { Description = "Also write every measurement to this JSON file." };
        Option<string?> precision = Cli.CheckpointPrecisionOption();
        var command =
            new Command("serve", "Throughput and p50/p99 latency of `alexnet serve` at several concurrent clients, " +
            "dynamic batching on against off, alternating rounds.")
        {
            checkpoint, model, image, clients, maxBatch, maxWait, requests, rounds, views, threads, json, precision,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            Compute.UseThreads(r.GetValue(threads));
            int[] Ints(string s, string flag) => Cli.Ints(s, flag).Select(v => v > 0 ? v
                : throw new UserError($"{flag} {s}: give positive whole numbers, comma-separated.")).ToArray();
            int[] c = Ints(r.GetValue(clients)!, "--clients"), b = Ints(r.GetValue(maxBatch)!, "--max-batch");
            byte[] bytes = File.Exists(r.GetValue(image)) ? File.ReadAllBytes(r.GetValue(image)!)
                : throw new FileNotFoundException($"image {r.GetValue(image)} does not exist: pass one with --image.");
            string? temporary = null;
            Precision? asked = Cli.PrecisionOrNull(r.GetValue(precision));
            string ckpt = r.GetValue(checkpoint)
                ?? (temporary = SeededCheckpoint(r.GetValue(model)!, asked == Precision.Int8));
            try
            {
                var rows = ServeBenchmark.Run(ckpt, bytes, c, b, r.GetValue(requests), r.GetValue(rounds),
                    r.GetValue(maxWait), r.GetValue(views)!,
                    row => AnsiConsole.MarkupLineInterpolated(
                    $"round {row.Round}, --max-batch {row.MaxBatch}: {row.Result.Describe()}; mean batch {row.MeanBatch:F1}"), asked)
                    .GetAwaiter().GetResult();
                var table = new Table().Title(
                    $"alexnet serve, {rows[0].Variant}, {r.GetValue(views)} view(s), {Environment.ProcessorCount} " +
                    $"cores (medians of {r.GetValue(rounds)} rounds)")
                    .AddColumn("--max-batch").AddColumn("clients").AddColumn(new TableColumn("req/s").RightAligned())
                    .AddColumn(new TableColumn("p50 ms").RightAligned())
                    .AddColumn(new TableColumn("p99 ms").RightAligned()).AddColumn(
                    new TableColumn("mean batch").RightAligned()).AddColumn(new TableColumn("errors").RightAligned());
                foreach (var m in ServeBenchmark.Medians(rows))
                {
                    table.AddRow(m.MaxBatch.ToString(CultureInfo.InvariantCulture), m.Clients.ToString(
                        CultureInfo.InvariantCulture), m.RequestsPerSecond.ToString("F1", CultureInfo.InvariantCulture),
                        m.P50Ms.ToString("F1", CultureInfo.InvariantCulture), m.P99Ms.ToString("F1",
                        CultureInfo.InvariantCulture), m.MeanBatch.ToString("F1", CultureInfo.InvariantCulture),
                        m.Errors.ToString(CultureInfo.InvariantCulture));
                }
                AnsiConsole.Write(table);
                if (r.GetValue(json) is string file)
                {
                    Json.Write(file, rows);
                    AnsiConsole.MarkupLineInterpolated($"Wrote {file}");
                }
                return rows.Any(x => x.Result.Errors + x.Result.Wrong > 0) ? Cli.Failure : 0;
            }
            finally
            {
                if (temporary is not null)
                {
                    File.Delete(temporary);
                }
            }
        }));
        return command;
    }

    /// <summary>
    /// A seeded, untrained net of the variant at its usual input (ImageNet's 1000 classes, RGB), as a checkpoint: speed
    /// does not depend on the weights; for int8 calibrated on random inputs (nor on the ranges).
    /// </summary>
    private static string SeededCheckpoint(string variant, bool int8)
    {
        int record = AlexNet.Interop.PyTorchWeights.DefaultRecordSize(variant);
        var options = new TrainOptions { Model = variant };
        int crop = options.Augment(record, record).Crop;
        Architecture arch = Variants.Get(variant, 1000, 3, crop);
        using var net = new AlexNetModel(arch, seed: 1);
        string path = Path.Combine(Path.GetTempPath(), $"alexnet-bench-serve-{variant}-{Environment.ProcessId}.ckpt");
        RunState state = Checkpoint.WeightsOnly(options, arch,
            Enumerable.Range(0, 1000).Select(i => $"class {i}").ToArray(), new float[3 * record * record], record);
        if (int8)
        {
            using TorchSharp.torch.Tensor x = TorchSharp.torch.randn(16, 3, crop, crop);
            state = state with
            {
                Card = state.ModelCard with
                {
                    Int8 = Int8Quantization.Calibrate(net, new[] { x }, CalibrationMethod.Percentile),
                },
            };
        }
        Checkpoint.Save(path, state, net, velocity: null);
        return path;
    }
}
