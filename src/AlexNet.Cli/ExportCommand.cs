using System;
using System.CommandLine;
using System.Linq;
using AlexNet.Inference;
using AlexNet.Interop;
using AlexNet.Model;
using AlexNet.Training;
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
        var checkpoint = new Option<string>("--checkpoint", "-c") { Description = "Checkpoint to export (a run's, or one `alexnet import` wrote).", Required = true };
        var onnx = new Option<string>("--onnx") { Description = "The ONNX file to write (opset 17, dynamic batch axis, preprocessing in its metadata).", Required = true };
        var weights = new Option<string>("--weights") { Description = "model, or ema (the moving average of a run trained with --ema).", DefaultValueFactory = _ => "model" };
        weights.AcceptOnlyFromAmong("model", "ema");
        var noCheck = new Option<bool>("--no-check") { Description = "Skip running the file in ONNX Runtime against our net." };
        var command = new Command("export", "Export a checkpoint to ONNX, checked by ONNX Runtime (same logits within 1e-4, same top-1).")
        {
            checkpoint, onnx, weights, noCheck,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string path = r.GetValue(onnx)!;
            // The graph is float32 whatever the run trained in (--precision bf16 keeps float32 weights), and so is the
            // check.
            using (Classifier net = Classifier.Load(r.GetValue(checkpoint)!, AlexNet.Model.Precision.Fp32, averagedWeights: r.GetValue(weights) == "ema"))
            {
                OnnxExport.Write(path, net.Model, net.Card);
                long bytes = new System.IO.FileInfo(path).Length;
                AnsiConsole.MarkupLineInterpolated($"Wrote {path}: {net.Card.Architecture.Variant}, opset {OnnxExport.Opset}, {bytes / 1e6:F1} MB.");
                if (!r.GetValue(noCheck))
                {
                    (double diff, bool sameTop1) = OnnxExport.Check(net.Model, path);
                    AnsiConsole.MarkupLineInterpolated($"ONNX Runtime on 4 random inputs: largest logit difference {diff:E2}, top-1 {(sameTop1 ? "the same" : "[red]different[/]")}.");
                    if (diff > 1e-4 || !sameTop1)
                    {
                        throw new UserError($"{path} does not reproduce the checkpoint in ONNX Runtime; please report it with the checkpoint's variant.");
                    }
                }
            }
            return 0;
        }));
        return command;
    }
}
