using System;
using System.CommandLine;
using System.Linq;
using AlexNet.Inference;
using AlexNet.Interop;
using AlexNet.Model;
using Spectre.Console;
using static TorchSharp.torch;

namespace AlexNet.Cli;

/// <summary>
/// `alexnet export`: a checkpoint as an ONNX file (OnnxExport.cs), then run by ONNX Runtime against our own net.
/// </summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint", "-c")
        {
            Description = "Checkpoint to export (a run's, or one `alexnet import` wrote).",
            Required = true,
        };
        var onnx = new Option<string>("--onnx")
        {
            Description = "The ONNX file to write (opset 17, dynamic batch axis, preprocessing in its metadata).",
            Required = true,
        };
        var weights = new Option<string>("--weights")
        {
            Description = "model, or ema (the moving average of a run trained with --ema).",
            DefaultValueFactory = _ => "model",
        };
        weights.AcceptOnlyFromAmong("model", "ema");
        var noCheck = new Option<bool>("--no-check")
        {
            Description = "Skip running the file in ONNX Runtime against our net.",
        };
        var precision = new Option<string>("--precision")
        {
            Description =
                "fp32, or int8 = ONNX's QDQ form of a checkpoint `alexnet quantize` wrote (s8 per-channel weights, u8 " +
                "activations), which ONNX Runtime runs on its own int8 kernels.",
            DefaultValueFactory = _ => "fp32",
        };
        precision.AcceptOnlyFromAmong("fp32", "int8");
        var command =
            new Command("export", "Export a checkpoint to ONNX, checked by ONNX Runtime (float32: same logits within " +
            "1e-4, same top-1; int8: against our int8 engine).")
        {
            checkpoint, onnx, weights, noCheck, precision,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string path = r.GetValue(onnx)!;
            bool int8 = r.GetValue(precision) == "int8";
            // The float32 graph is float32 whatever the run trained in (--precision bf16 keeps float32 weights), and so
            // is its check; the int8 graph is checked against our int8 engine.
            using (Classifier net = Classifier.Load(r.GetValue(checkpoint)!,
                int8 ? AlexNet.Model.Precision.Int8 : AlexNet.Model.Precision.Fp32,
                averagedWeights: r.GetValue(weights) == "ema", engine: int8
                ? AlexNet.Model.Kernels.InferenceEngine.OneDnn : AlexNet.Model.Kernels.InferenceEngine.Libtorch))
            {
                OnnxExport.Write(path, net.Model, net.Card, int8);
                long bytes = new System.IO.FileInfo(path).Length;
                AnsiConsole.MarkupLineInterpolated(
                    $"Wrote {path}: {net.Card.Architecture.Variant}{(int8 ? " int8 (QDQ)" : "")}, opset {OnnxExport.Opset}, {bytes / 1e6:F1} MB.");
                if (!r.GetValue(noCheck))
                {
                    (double diff, bool sameTop1) = OnnxExport.Check(net.Model, path);
                    AnsiConsole.MarkupLineInterpolated(
                        $"ONNX Runtime on 4 random inputs: largest logit difference {diff:E2}, top-1 {(sameTop1 ? "the same" : "[red]different[/]")}.");
                    if (!int8 && (diff > 1e-4 || !sameTop1))
                    {
                        throw new UserError(
                            $"{path} does not reproduce the checkpoint in ONNX Runtime; please report it with the " +
                            "checkpoint's variant.");
                    }
                }
            }
            return 0;
        }));
        return command;
    }
}
