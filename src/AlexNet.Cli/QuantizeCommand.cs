using System;
using System.CommandLine;
using System.Linq;
using AlexNet.Inference;
using AlexNet.Model;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>`alexnet quantize`: a checkpoint calibrated for int8 inference (Inference/Quantizer.cs).</summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint", "-c")
        {
            Description = "The float32 checkpoint (a run's, or one `alexnet import` wrote).",
            Required = true,
        };
        var data = new Option<string>("--data", "-d")
        {
            Description = "A training store to calibrate on (never the test split), at the checkpoint's record size.",
            Required = true,
        };
        var output = new Option<string>("--out", "-o")
        {
            Description =
                "The quantized checkpoint to write (float32 weights + the int8 calibration in its model card).",
            Required = true,
        };
        var images = new Option<int>("--calibration-images")
        {
            Description = "Training images whose centre views set the activation ranges, spread evenly over the store.",
            DefaultValueFactory = _ => 1000,
        };
        var method = new Option<string>("--method")
        {
            Description =
                "percentile = a high percentile of |x| at each layer's input (outliers saturate); minmax = the " +
                "largest |x| seen.",
            DefaultValueFactory = _ => "percentile",
        };
        method.AcceptOnlyFromAmong("percentile", "minmax");
        var percentile = new Option<double>("--percentile")
        {
            Description = "With --method percentile: the percentile of |x| taken.",
            DefaultValueFactory = _ => 99.99,
        };
        var threads = new Option<int>("--threads")
        {
            Description = "CPU threads.",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var command =
            new Command("quantize", "Calibrate a checkpoint for int8 inference (per-channel s8 weights, u8 " +
            "activations): then eval, predict, bench and serve take --precision int8, and export --precision int8 " +
            "writes ONNX's QDQ form.")
        {
            checkpoint, data, output, images, method, percentile, threads,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            Compute.UseThreads(r.GetValue(threads));
            CalibrationMethod m = r.GetValue(method) == "minmax" ? CalibrationMethod.MinMax
                : CalibrationMethod.Percentile;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            Int8Quantization q = Quantizer.Quantize(r.GetValue(checkpoint)!, r.GetValue(data)!, r.GetValue(output)!,
                r.GetValue(images), m, r.GetValue(percentile));
            string ranges = string.Join(", ", q.InputRanges.Select(kv => $"{kv.Key} {kv.Value:G3}"));
            AnsiConsole.MarkupLineInterpolated(
                $"Wrote {r.GetValue(output)}: int8 calibration on {q.Images} images ({(m == CalibrationMethod.MinMax ? "min-max" : $"{q.Percentile}th percentile of |x|")}) in {clock.Elapsed.TotalSeconds:F1} s; input ranges {ranges}.");
            AnsiConsole.MarkupLineInterpolated(
                $"oneDNN's int8 kernels here: {AlexNet.Model.Kernels.OneDnnNet.Isa}{(AlexNet.Model.Kernels.OneDnnNet.Vnni ? " (VNNI)" : " (no VNNI: its u8·s8 products are emulated)")}.");
            return 0;
        }));
        return command;
    }
}
