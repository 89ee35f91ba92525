// Not in the paper: fine-tuning, as users of torchvision's reference trainer do it. A run starts from a
// checkpoint's weights (a run of ours, or torchvision's imported by `alexnet import`) on other data: the
// checkpoint's net with the data's number of classes, every weight copied except fc8's where the classes
// differ (fc8 then keeps its fresh §5 initialisation), optionally conv1–conv5 frozen, optionally a lower ε
// for the layers that came from the checkpoint.
using System;
using System.Collections.Generic;
using System.Linq;
using AlexNet.Inference;
using AlexNet.Model;
using TorchSharp.Modules;
using Architecture = AlexNet.Model.Architecture;

namespace AlexNet.Training;

public static class FineTuning
{
    /// <summary>
    /// A fine-tuning run's options: the checkpoint's net, normalisation and input scale, each unless the caller set it
    /// (<paramref name="keepModel"/>, <paramref name="keepNormalization"/>, <paramref name="keepInputScale"/>).
    /// </summary>
    public static TrainOptions Inherit(TrainOptions o, string checkpoint, bool keepModel = false,
        bool keepNormalization = false, bool keepInputScale = false)
    {
        ModelCard card = ModelFile.ReadCard(checkpoint);
        return o with
        {
            InitFrom = checkpoint,
            Model = keepModel ? o.Model : card.Architecture.Variant,
            Normalization = keepNormalization ? o.Normalization : card.Preprocessing.Normalization,
            InputScale = keepInputScale ? o.InputScale : card.Preprocessing.InputScale,
        };
    }

    /// <summary>
    /// The checkpoint's net for data of <paramref name="classes"/> classes seen through <paramref name="inputSize"/>-px
    /// views.
    /// </summary>
    internal static Architecture Architecture(TrainOptions o, RunState source, int classes, int channels, int inputSize)
    {
        Architecture a = source.Architecture;
        if (o.Model != a.Variant)
        {
            throw new ArgumentException(
                $"--init-from {o.InitFrom} holds a {a.Variant} net, not --model {o.Model}: leave --model out to " +
                "fine-tune the checkpoint's.");
        }
        if (channels != a.InputChannels)
        {
            throw new ArgumentException(
                $"--init-from {o.InitFrom} was trained on {a.InputChannels}-channel images; this data has {channels}.");
        }
        // §4.2's rate is the run's to choose
        Architecture arch = a with { Classes = classes, InputSize = inputSize, Dropout = o.Dropout };
        arch.Validate();
        if (arch.FlattenedFeatures != a.FlattenedFeatures)
        {
            throw new ArgumentException(
                $"--init-from {o.InitFrom} takes {a.InputSize}-px views (records of {source.StoreHeight} px); this " +
                $"data gives {inputSize} px, " +
                $"so fc6 would read {arch.FlattenedFeatures} values instead of {a.FlattenedFeatures}: prepare the " +
                $"data with --size {source.StoreHeight}.");
        }
        return arch;
    }

    /// <summary>
    /// Copies the checkpoint's weights into <paramref name="model"/>; fc8's only where the classes match. Returns the
    /// keys copied.
    /// </summary>
    internal static ISet<string> LoadPretrained(string path, RunState source, AlexNetModel model)
    {
        ISet<string> keys = PretrainedKeys(model, source);
        Checkpoint.LoadWeights(path, source, model, keys);
        return keys;
    }

    /// <summary>The state_dict keys a fine-tuning run takes from its checkpoint (none without one).</summary>
    internal static ISet<string> PretrainedKeys(AlexNetModel model, RunState? source)
    {
        if (source is null)
        {
            return new HashSet<string>();
        }
        string fc8 = model.StateKey("fc8") + ".";
        bool sameClasses = source.Architecture.Classes == model.Architecture.Classes;
        return model.state_dict().Keys.Where(k => sameClasses || !k.StartsWith(fc8,
            StringComparison.Ordinal)).ToHashSet();
    }

    /// <summary>
    /// The parameters SGD updates (conv1–conv5 left out and frozen under FreezeFeatures), each with its fraction of ε.
    /// </summary>
    internal static (Parameter[] Learned, double[] Factors) Parameters(AlexNetModel model,
        TrainOptions o, ISet<string> pretrained)
    {
        var learned = new List<Parameter>();
        var factors = new List<double>();
        foreach ((string name, Parameter p) in model.named_parameters())
        {
            if (o.FreezeFeatures && name.StartsWith("features.", StringComparison.Ordinal))
            {
                p.requires_grad_(false);   // no gradient is computed, so no update and no weight decay touches it
                continue;
            }
            learned.Add(p);
            factors.Add(pretrained.Contains(name) ? o.PretrainedLrFactor : 1);
        }
        return (learned.ToArray(), factors.ToArray());
    }
}
