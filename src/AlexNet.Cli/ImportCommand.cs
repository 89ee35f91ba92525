using System;
using System.CommandLine;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Interop;
using AlexNet.Model;
using AlexNet.Training;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>
/// `alexnet import`: a PyTorch state_dict (torchvision's alexnet, or bench/peer.py's layout) as a checkpoint of ours.
/// </summary>
internal static class ImportCommand
{
    public static Command Create()
    {
        var weights = new Argument<string>("WEIGHTS")
        {
            Description =
                "A state_dict: torch.save's zip format (.pth/.pt) or .safetensors. Legacy pickles are refused.",
        };
        Option<string> model = Cli.ModelOption(Variants.Owt);
        var output = new Option<string>("--out", "-o")
        {
            Description = "The checkpoint to write (e.g. alexnet-owt.ckpt).",
            Required = true,
        };
        var normalize = new Option<string>("--normalize")
        {
            Description =
                "What the weights expect: imagenet = torchvision's RGB/255 minus mean (0.485, 0.456, 0.406) over std " +
                "(0.229, 0.224, 0.225); mean-image = §2's, taken from --mean-from.",
            DefaultValueFactory = _ => "imagenet",
        };
        normalize.AcceptOnlyFromAmong("imagenet", "mean-image");
        var meanFrom = new Option<string?>("--mean-from")
        {
            Description = "With --normalize mean-image: the store whose mean image the net was trained with.",
        };
        var recordSize = new Option<int?>("--record-size")
        {
            Description =
                "Side of the §2 records it is evaluated on (default: 256 for 224-px nets: resize the short side to " +
                "256, centre 224).",
        };
        var classes = new Option<string?>("--classes")
        {
            Description =
                "Class names in output order, one a line ([id] name); default: --mean-from's store's, else " +
                "ILSVRC-2012's for 1000 outputs (darknet + opencv-doc).",
        };
        var command =
            new Command("import", "Import PyTorch weights (e.g. your copy of torchvision's alexnet-owt-7be5be79.pth) " +
            "as a checkpoint for eval, predict, features, export and fine-tuning.")
        {
            weights, model, output, normalize, meanFrom, recordSize, classes,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string outPath = r.GetValue(output)!;
            float[]? mean = null;
            string[]? names = r.GetValue(classes) is string file
                ? ClassNames.Load(file).Select(c => c.Name).ToArray() : null;
            int? record = r.GetValue(recordSize);
            if (r.GetValue(meanFrom) is string store)
            {
                using var s = ImageStore.Open(store);
                mean = s.Mean;
                record ??= s.Height;
                names ??= s.Manifest.Classes.Select(c => c.Name).ToArray();
            }
            InputNormalization norm = r.GetValue(normalize) == "imagenet" ? InputNormalization.Imagenet
                : InputNormalization.MeanImage;
            var o = new ImportOptions(r.GetValue(model)!, record, norm, mean, names);
            (AlexNetModel net, RunState state) = PyTorchWeights.Import(r.GetValue(weights)!, o);
            using (net)
            {
                Checkpoint.Save(outPath, state, net, optimizer: null);
                Architecture a = state.Architecture;
                AnsiConsole.MarkupLineInterpolated(
                    $"{outPath}: {a.Variant}, {net.ParameterCount:N0} parameters, {a.Classes} classes, {a.InputChannels}×{a.InputSize}² input from {state.StoreHeight}² records, normalisation {state.Options.Normalization}; LRN {(a.Lrn is { } lrn ? lrn.Describe() : "none")}.");
            }
            return 0;
        }));
        return command;
    }
}
