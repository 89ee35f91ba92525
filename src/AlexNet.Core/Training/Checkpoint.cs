// A checkpoint holds everything needed to continue a run to the same numbers: weights, momentum buffers,
// schedule state, epoch and step, the random generator's state and the options; and the model card
// (Inference/ModelCard.cs), all that inference reads. The format is data
// only (a JSON header and raw little-endian tensors), so loading one can never run code:
//
//   "ALXNCKPT" | u32 version | u32 header bytes | header JSON | tensor bytes … | SHA-256 of all before
//
// Written to a temp file, flushed, then renamed: a crash or a full disk leaves the previous file whole.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using AlexNet.Inference;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using Architecture = AlexNet.Model.Architecture;

namespace AlexNet.Training;

public sealed record TensorEntry(string Name, long[] Shape, long Bytes);

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
    int Ranks = 1,                // data-parallel processes: the global batch is Ranks × BatchSize, so a resume needs as many
    string? TrainData = null,     // RunFolder.Fingerprint of the training store (null in checkpoints of earlier builds)
    ModelCard? Card = null)       // what the net is, for inference (Checkpoint.CardOf; derived on reading where earlier builds wrote none)
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
    public static RunState WeightsOnly(TrainOptions options, Architecture arch, string[] classNames, float[] mean, int recordSize) => new(
        options, arch, Epoch: 0, StepInEpoch: 0, Step: 0, new ScheduleState(options.LearningRate, double.PositiveInfinity, 0, 0), new double[4],
        double.PositiveInfinity, RngState: "", classNames, mean, recordSize, recordSize, Array.Empty<TensorEntry>());

    /// <summary>The model card a training state implies: its net, classes, and test-time preprocessing.</summary>
    public static ModelCard CardOf(RunState s)
    {
        AlexNet.Data.AugmentOptions a = s.Options.Augment(s.StoreHeight, s.StoreWidth);
        return new ModelCard(s.Architecture, s.ClassNames,
            Preprocessing.Of(a, s.Options.Normalization, s.Architecture.InputChannels, s.StoreHeight), s.Mean);
    }

    private static readonly byte[] Magic = Encoding.ASCII.GetBytes("ALXNCKPT");
    private const uint Version = 1;

    public static void Save(string path, RunState state, AlexNetModel model, PaperSgd? optimizer, WeightEma? ema = null) =>
        Save(path, state, model, optimizer?.Velocity, ema);

    /// <param name="velocity">The momentum buffers in <paramref name="model"/>'s parameter order (a TowerNet's joined
    /// back: Trainer).</param>
    public static void Save(string path, RunState state, AlexNetModel model, IReadOnlyList<Tensor>? velocity, WeightEma? ema = null)
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
        byte[] header = JsonSerializer.SerializeToUtf8Bytes(state, Json.Options);
        AtomicFile.Write(path, file =>
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            void Write(ReadOnlySpan<byte> bytes)
            {
                file.Write(bytes);
                hash.AppendData(bytes);
            }
            Write(Magic);
            Write(BitConverter.GetBytes(Version));
            Write(BitConverter.GetBytes((uint)header.Length));
            Write(header);
            foreach ((_, Tensor t) in tensors)
            {
                using Tensor cpu = t.detach().to(DeviceType.CPU).to(ScalarType.Float32).contiguous();
                Write(cpu.bytes);
            }
            file.Write(hash.GetHashAndReset());
        });
    }

    /// <summary>Reads and verifies the header; the tensors are read by LoadInto.</summary>
    public static RunState ReadState(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"checkpoint {path} does not exist.", path);
        }
        Verify(path);
        using FileStream f = File.OpenRead(path);
        f.Seek(Magic.Length + 4, SeekOrigin.Begin);
        var lengthBytes = new byte[4];
        f.ReadExactly(lengthBytes);
        var header = new byte[BitConverter.ToUInt32(lengthBytes)];
        f.ReadExactly(header);
        try
        {
            RunState state = JsonSerializer.Deserialize<RunState>(header, Json.Options) ?? throw new InvalidDataException("empty header");
            // Earlier builds wrote the mean image in the state and no card: derive it, so every reader sees both.
            state = state.Card is null ? state with { Card = CardOf(state) } : state with { Mean = state.Card.MeanImage };
            state.Card!.Validate(path);
            return state;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: the checkpoint header is unreadable ({e.Message}).");
        }
    }

    /// <summary>
    /// Checks magic, version and checksum; a damaged file gets an error that names it and what to do.
    /// </summary>
    private static void Verify(string path)
    {
        using FileStream f = File.OpenRead(path);
        var magic = new byte[Magic.Length];
        if (f.Length < Magic.Length + 8 + 32 || f.Read(magic) != Magic.Length || !magic.AsSpan().SequenceEqual(Magic))
        {
            throw new InvalidDataException($"{path} is not an alexnet checkpoint (wrong header). Pass a .ckpt file written by `alexnet train`.");
        }
        var version = new byte[4];
        f.ReadExactly(version);
        if (BitConverter.ToUInt32(version) != Version)
        {
            throw new InvalidDataException($"{path} is checkpoint format v{BitConverter.ToUInt32(version)}; this alexnet reads v{Version}.");
        }
        f.Seek(0, SeekOrigin.Begin);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        long remaining = f.Length - 32;
        while (remaining > 0)
        {
            int n = f.Read(buffer, 0, (int)Math.Min(buffer.Length, remaining));
            if (n <= 0)
            {
                break;
            }
            hash.AppendData(buffer, 0, n);
            remaining -= n;
        }
        var stored = new byte[32];
        f.ReadExactly(stored);
        if (!hash.GetHashAndReset().AsSpan().SequenceEqual(stored))
        {
            throw new InvalidDataException($"{path} is damaged (checksum mismatch: truncated or altered). Use another checkpoint of the run (last.ckpt or best.ckpt), or retrain.");
        }
    }

    /// <summary>Copies the saved weights (and momentum buffers) into a model of the same architecture.</summary>
    /// <param name="ema">The run's weight average to restore, or null.</param>
    /// <param name="averagedWeights">Load the weight average (ema/…) into the model instead of its weights.</param>
    public static void LoadInto(string path, RunState state, AlexNetModel model, PaperSgd? optimizer, WeightEma? ema = null, bool averagedWeights = false) =>
        LoadInto(path, state, model, optimizer?.Velocity, ema, averagedWeights);

    /// <param name="velocity">Momentum buffers in <paramref name="model"/>'s parameter order, to be read into.</param>
    public static void LoadInto(string path, RunState state, AlexNetModel model, IReadOnlyList<Tensor>? velocity, WeightEma? ema = null, bool averagedWeights = false)
    {
        string mine = JsonSerializer.Serialize(model.Architecture, Json.Options);
        string theirs = JsonSerializer.Serialize(state.Architecture, Json.Options);
        if (mine != theirs)
        {
            throw new InvalidDataException($"{path} holds a {state.Architecture.Variant} net ({state.Architecture.Classes} classes, " +
                $"{state.Architecture.InputChannels}×{state.Architecture.InputSize}²) that differs from the {model.Architecture.Variant} net asked for; " +
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
        if (averagedWeights)
        {
            if (!state.Tensors.Any(t => t.Name.StartsWith("ema/", StringComparison.Ordinal)))
            {
                throw new InvalidDataException($"{path} holds no weight average: the run was trained without --ema. Evaluate its weights (--weights model).");
            }
            foreach ((string name, Tensor t) in model.state_dict())
            {
                targets["ema/" + name] = t;   // read after model/…, so the averages win
            }
        }
        ReadTensors(path, state, targets);
    }

    /// <summary>
    /// Fine-tuning: copies the checkpoint's weights named in <paramref name="keys"/> (state_dict keys) into a model
    /// whose other layers may differ.
    /// </summary>
    public static void LoadWeights(string path, RunState state, AlexNetModel model, ISet<string> keys)
    {
        var targets = model.state_dict().Where(kv => keys.Contains(kv.Key)).ToDictionary(kv => "model/" + kv.Key, kv => kv.Value);
        string[] absent = targets.Keys.Where(k => !state.Tensors.Any(t => t.Name == k)).ToArray();
        if (absent.Length > 0)
        {
            throw new InvalidDataException($"{path} lacks {string.Join(", ", absent)}: it does not hold a {model.Architecture.Variant} net.");
        }
        ReadTensors(path, state, targets);
    }

    private static void ReadTensors(string path, RunState state, Dictionary<string, Tensor> targets)
    {
        using FileStream f = File.OpenRead(path);
        f.Seek(Magic.Length + 4, SeekOrigin.Begin);
        var lengthBytes = new byte[4];
        f.ReadExactly(lengthBytes);
        f.Seek(BitConverter.ToUInt32(lengthBytes), SeekOrigin.Current);
        using var _ = no_grad();
        foreach (TensorEntry entry in state.Tensors)
        {
            var data = new float[entry.Bytes / 4];
            f.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
            if (!targets.TryGetValue(entry.Name, out Tensor? target))
            {
                continue;   // velocity in a checkpoint loaded for evaluation only
            }
            if (!target.shape.SequenceEqual(entry.Shape))
            {
                throw new InvalidDataException($"{path}: {entry.Name} has shape [{string.Join(",", entry.Shape)}], the model expects [{string.Join(",", target.shape)}].");
            }
            using Tensor src = tensor(data, entry.Shape);
            target.copy_(src);
        }
    }

    /// <summary>
    /// Builds the network a checkpoint holds and loads its weights, for evaluation and prediction.
    /// </summary>
    /// <param name="averagedWeights">The run's weight average (--ema) instead of its weights.</param>
    /// <param name="device">Where to put the net (null: the CPU); a checkpoint is device-free, so any device loads
    /// it.</param>
    /// <param name="precision">The products' number format (null: the one the run trained in, or float32 where bf16 is
    /// not fast); the weights are float32 either way.</param>
    /// <param name="engine">What runs inference on the CPU (OneDnnNet.cs): oneDNN where it serves the net by
    /// default.</param>
    public static (AlexNetModel Model, RunState State) LoadModel(string path, bool averagedWeights = false, Device? device = null, Precision? precision = null,
        InferenceEngine engine = InferenceEngine.Auto)
    {
        RunState state = ReadState(path);
        var model = new AlexNetModel(state.Architecture, state.Options.Seed);
        if (device is not null)
        {
            model.to(device);
        }
        // A run trained in bf16 is evaluated in float32 where bf16 would crawl (its weights are float32); asked for,
        // bf16 is refused there. int8 is the engine's alone; the modules stay float32 (features, §6.1).
        Precision wanted = precision ?? (LowPrecision.Fast(model.Device) ? state.Options.Precision : Precision.Fp32);
        model.Precision = wanted == Precision.Int8 ? Precision.Fp32 : wanted;
        LoadInto(path, state, model, optimizer: null, averagedWeights: averagedWeights);
        model.eval();
        model.UseEngine(OneDnnNet.For(model, wanted, engine, state.ModelCard.Int8, path));
        return (model, state);
    }
}
