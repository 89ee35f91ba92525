// A checkpoint holds everything needed to continue a run to the same numbers: weights, momentum buffers,
// schedule state, epoch and step, the random generator's state and the options; and the model card
// (Inference/ModelCard.cs), all that inference reads. The file (Inference/ModelFile.cs) is data only: a JSON header
// and raw tensors, checksummed, written whole or not at all.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Inference;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using Architecture = AlexNet.Model.Architecture;

namespace AlexNet.Training;

/// <summary>Where a run stands: the header of a checkpoint.</summary>
public sealed record RunState(
    TrainOptions Options,
    Architecture Architecture,
    int Epoch,              // epochs completed
    int StepInEpoch,        // steps done in the epoch under way (0 at an epoch boundary)
    long Step,              // steps done in all
    ScheduleState Schedule,
    double[] EpochAccumulators,   // loss sum, top-1 hits, top-5 hits, images of the epoch under way
    double BestValidationError,
    string RngState,
    string[] ClassNames,
    float[] Mean,                 // the training store's mean image, so a checkpoint predicts on its own
    int StoreHeight,
    int StoreWidth,
    TensorEntry[] Tensors,
    int Ranks = 1,
    // data-parallel processes: the global batch is Ranks × BatchSize, so a resume needs as many
    string? TrainData = null,     // RunFolder.Fingerprint of the training store (null in checkpoints of earlier builds)
    ModelCard? Card =
    null)       // what the net is, for inference (Checkpoint.CardOf; derived on reading where earlier builds wrote none)
{
    /// <summary>The model card: the one saved, or the one the state implies.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public ModelCard ModelCard => Card ?? Checkpoint.CardOf(this);
}

public static class Checkpoint
{
    /// <summary>
    /// The header of a checkpoint of weights alone (imported, or for export): no schedule, no optimiser, step 0.
    /// </summary>
    /// <param name="mean">§2's mean image of the training data (empty where the options normalise per channel).</param>
    /// <param name="recordSize">Side of the §2 records the net is evaluated on.</param>
    public static RunState WeightsOnly(TrainOptions options, Architecture arch, string[] classNames,
        float[] mean, int recordSize) => new(
        options, arch, Epoch: 0, StepInEpoch: 0, Step: 0,
        new ScheduleState(options.LearningRate, double.PositiveInfinity, 0, 0), new double[4],
        double.PositiveInfinity, RngState: "", classNames, mean, recordSize, recordSize, Array.Empty<TensorEntry>());

    /// <summary>The model card a training state implies: its net, classes, and test-time preprocessing.</summary>
    public static ModelCard CardOf(RunState s) => ModelCard.Derive(s.Architecture, s.ClassNames,
        s.Mean, s.StoreHeight, s.StoreWidth,
        s.Options.Pad, s.Options.Crop, s.Options.SubtractMean, s.Options.ResolvedInputScale, s.Options.Normalization);

    public static void Save(string path, RunState state, AlexNetModel model,
        PaperSgd? optimizer, WeightEma? ema = null) =>
        Save(path, state, model, optimizer?.Velocity, ema);

    /// <param name="velocity">The momentum buffers in <paramref name="model"/>'s parameter order (a TowerNet's joined
    /// back: Trainer).</param>
    public static void Save(string path, RunState state, AlexNetModel model,
        IReadOnlyList<Tensor>? velocity, WeightEma? ema = null)
    {
        var tensors = new List<(string, Tensor)>();
        foreach ((string name, Tensor t) in model.state_dict())
        {
            tensors.Add(("model/" + name, t));
        }
        if (velocity is not null)
        {
            for (int i = 0; i < velocity.Count; i++)
            {
                tensors.Add(($"velocity/{i}", velocity[i]));
            }
        }
        if (ema is not null)
        {
            tensors.AddRange(ema.Averages.Select(a => ("ema/" + a.Name, a.Average)));
        }
        state = state with
        {
            Tensors = tensors.Select(t => new TensorEntry(t.Item1, t.Item2.shape, t.Item2.numel() * 4)).ToArray(),
            Card = state.ModelCard,
            Mean = Array.Empty<float>(),   // written once, in the card; ReadState puts it back
        };
        ModelFile.Write(path, JsonSerializer.SerializeToUtf8Bytes(state, Json.Options),
            tensors.Select(t => t.Item2).ToArray());
    }

    /// <summary>Reads and verifies the header; the tensors are read by LoadInto.</summary>
    public static RunState ReadState(string path) => Parse(ModelFile.ReadHeader(path), path);

    private static RunState Parse(byte[] header, string path)
    {
        try
        {
            RunState state = JsonSerializer.Deserialize<RunState>(header, Json.Options)
                ?? throw new InvalidDataException("empty header");
            // Earlier builds wrote the mean image in the state and no card: derive it, so every reader sees both.
            state = state.Card is null
                ? state with { Card = CardOf(state) }
                : state with { Mean = state.Card.MeanImage };
            state.Card!.Validate(path);
            return state;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: the checkpoint header is unreadable ({e.Message}).");
        }
    }

    /// <summary>Copies the saved weights (and momentum buffers) into a model of the same architecture.</summary>
    /// <param name="ema">The run's weight average to restore, or null.</param>
    public static void LoadInto(string path, RunState state, AlexNetModel model,
        PaperSgd? optimizer, WeightEma? ema = null) =>
        LoadInto(path, state, model, optimizer?.Velocity, ema);

    /// <param name="velocity">Momentum buffers in <paramref name="model"/>'s parameter order, to be read into.</param>
    public static void LoadInto(string path, RunState state, AlexNetModel model,
        IReadOnlyList<Tensor>? velocity, WeightEma? ema = null)
    {
        string mine = JsonSerializer.Serialize(model.Architecture, Json.Options);
        string theirs = JsonSerializer.Serialize(state.Architecture, Json.Options);
        if (mine != theirs)
        {
            throw new InvalidDataException(
                $"{path} holds a {state.Architecture.Variant} net ({state.Architecture.Classes} classes, " +
                $"{state.Architecture.InputChannels}×{state.Architecture.InputSize}²) that differs from " +
                $"the {model.Architecture.Variant} net asked for; " +
                "resume with the same --model and data, or start a new run.");
        }
        var targets = new Dictionary<string, Tensor>();
        foreach ((string name, Tensor t) in model.state_dict())
        {
            targets["model/" + name] = t;
        }
        if (velocity is not null)
        {
            for (int i = 0; i < velocity.Count; i++)
            {
                targets[$"velocity/{i}"] = velocity[i];
            }
        }
        foreach ((string name, Tensor average) in ema?.Averages ?? Enumerable.Empty<(string, Tensor)>())
        {
            targets["ema/" + name] = average;
        }
        ModelFile.Require(path, state.Tensors,
            targets.Keys.Where(k => k.StartsWith("model/", StringComparison.Ordinal)),
            $"a whole {model.Architecture.Variant} net",
            "Resume from another checkpoint of the run (last.ckpt or best.ckpt).");
        ModelFile.ReadTensors(path, state.Tensors, targets);
    }

    /// <summary>
    /// Fine-tuning: copies the checkpoint's weights named in <paramref name="keys"/> (state_dict keys) into a model
    /// whose other layers may differ.
    /// </summary>
    public static void LoadWeights(string path, RunState state, AlexNetModel model, ISet<string> keys)
    {
        var targets = model.state_dict().Where(kv => keys.Contains(kv.Key)).ToDictionary(kv =>
            "model/" + kv.Key, kv => kv.Value);
        ModelFile.Require(path, state.Tensors, targets.Keys, $"a {model.Architecture.Variant} net");
        ModelFile.ReadTensors(path, state.Tensors, targets);
    }

    /// <summary>
    /// The net a checkpoint holds, loaded for inference (Inference/ModelFile.cs), with the run's state beside it.
    /// </summary>
    public static (AlexNetModel Model, RunState State) LoadModel(string path, bool averagedWeights = false,
        Device? device = null, Precision? precision = null,
        InferenceEngine engine = InferenceEngine.Auto)
    {
        byte[] header = ModelFile.ReadHeader(path);   // verified once for both readers
        return (ModelFile.Load(path, header, averagedWeights, device, precision, engine).Model, Parse(header, path));
    }
}
