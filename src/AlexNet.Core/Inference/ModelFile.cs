// A checkpoint as inference reads it: its model card and its weights, nothing of the run that made it. The file is
// data only (a JSON header and raw little-endian tensors), so loading one can never run code:
//
//   "ALXNCKPT" | u32 version | u32 header bytes | header JSON | tensor bytes … | SHA-256 of all before
//
// The header holds the card (ModelCard.cs), the table of tensors and, beside them, the training state that only
// Training/Checkpoint.cs reads. Checkpoints of builds before the card are read too: their card is derived from the
// few options that fixed the test-time input. Written to a temp file, flushed, then renamed: a crash or a full disk
// leaves the previous file whole.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using AlexNet.Data;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;
using Architecture = AlexNet.Model.Architecture;

namespace AlexNet.Inference;

/// <summary>One tensor of a checkpoint, in file order: model/…, velocity/…, ema/….</summary>
public sealed record TensorEntry(string Name, long[] Shape, long Bytes);

public static class ModelFile
{
    private static readonly byte[] Magic = Encoding.ASCII.GetBytes("ALXNCKPT");
    private const uint Version = 1;

    /// <summary>Reads what inference needs of a header and passes over the rest (the training state).</summary>
    private static readonly JsonSerializerOptions Partial =
        new(Json.Options) { UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip };

    /// <summary>
    /// Builds the net a checkpoint holds and loads its weights for inference: the one call evaluation, prediction,
    /// serving, export and quantization make.
    /// </summary>
    /// <param name="averagedWeights">The run's weight average (--ema) instead of its weights.</param>
    /// <param name="device">Where to put the net (null: the CPU); a checkpoint is device-free, so any device loads
    /// it.</param>
    /// <param name="precision">The products' number format (null: the one the run trained in, or float32 where bf16 is
    /// not fast); the weights are float32 either way.</param>
    /// <param name="engine">What runs inference on the CPU (Model/Kernels/OneDnnNet.cs): oneDNN where it serves the net
    /// by default.</param>
    public static (AlexNetModel Model, ModelCard Card) Load(string path, bool averagedWeights = false,
        Device? device = null, Precision? precision = null, InferenceEngine engine = InferenceEngine.Auto) =>
        Load(path, ReadHeader(path), averagedWeights, device, precision, engine);

    /// <summary>Load, from a header ReadHeader has verified (a caller that reads the run's state too).</summary>
    internal static (AlexNetModel Model, ModelCard Card) Load(string path, byte[] verifiedHeader, bool averagedWeights,
        Device? device, Precision? precision, InferenceEngine engine)
    {
        Header header = Parse(verifiedHeader, path);
        ModelCard card = header.ModelCard;
        var model = new AlexNetModel(card.Architecture, header.Options.Seed);
        try
        {
            if (device is not null)
            {
                model.to(device);
            }
            // A run trained in bf16 is evaluated in float32 where bf16 would crawl (its weights are float32); asked
            // for, bf16 is refused there. int8 is the engine's alone; the modules stay float32 (features, §6.1).
            Precision wanted = precision ?? (LowPrecision.Fast(model.Device) ? header.Options.Precision
                : Precision.Fp32);
            model.Precision = wanted == Precision.Int8 ? Precision.Fp32 : wanted;
            string from = averagedWeights ? "ema/" : "model/";
            if (averagedWeights && !header.Tensors.Any(t => t.Name.StartsWith("ema/", StringComparison.Ordinal)))
            {
                throw new InvalidDataException(
                    $"{path} holds no weight average: the run was trained without --ema. Evaluate its weights " +
                        $"(--weights model).");
            }
            var targets = model.state_dict().ToDictionary(kv => from + kv.Key, kv => kv.Value);
            Require(path, header.Tensors, targets.Keys, $"a whole {card.Architecture.Variant} net",
                "Use another checkpoint of the run (last.ckpt or best.ckpt).");
            ReadTensors(path, header.Tensors, targets);
            model.eval();
            model.UseEngine(OneDnnNet.For(model, wanted, engine, card.Int8, path));
            return (model, card);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The model card of a checkpoint of any build (verified; no tensor is read).</summary>
    public static ModelCard ReadCard(string path) => Parse(ReadHeader(path), path).ModelCard;

    /// <summary>
    /// Writes <paramref name="source"/> again as <paramref name="output"/> with <paramref name="card"/> in its header
    /// (`alexnet quantize`): the same tensors, the same training state.
    /// </summary>
    public static void WriteWithCard(string source, string output, ModelCard card)
    {
        JsonNode header = JsonNode.Parse(ReadHeader(source))!;
        header["card"] = JsonSerializer.SerializeToNode(card, Json.Options);
        header["mean"] = new JsonArray();   // the mean image is written once, in the card
        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(header, Json.Options);
        using FileStream from = File.OpenRead(source);
        long start = Magic.Length + 8 + HeaderLength(from);
        Write(output, bytes, (file, hash) =>
        {
            from.Seek(start, SeekOrigin.Begin);
            var buffer = new byte[1 << 20];
            for (long left = from.Length - 32 - start; left > 0;)
            {
                int n = from.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
                file.Write(buffer, 0, n);
                hash.AppendData(buffer, 0, n);
                left -= n;
            }
        });
    }

    /// <summary>
    /// Writes a checkpoint: <paramref name="header"/> (its "tensors" table lists <paramref name="tensors"/> in order),
    /// then each tensor as little-endian float32.
    /// </summary>
    public static void Write(string path, byte[] header, IReadOnlyList<Tensor> tensors) =>
        Write(path, header, (file, hash) =>
    {
        foreach (Tensor t in tensors)
        {
            using Tensor cpu = t.detach().to(DeviceType.CPU).to(ScalarType.Float32).contiguous();
            file.Write(cpu.bytes);
            hash.AppendData(cpu.bytes);
        }
    });

    private static void Write(string path, byte[] header, Action<Stream, IncrementalHash> body) =>
        AtomicFile.Write(path, file =>
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Put(ReadOnlySpan<byte> bytes)
        {
            file.Write(bytes);
            hash.AppendData(bytes);
        }
        Put(Magic);
        Put(BitConverter.GetBytes(Version));
        Put(BitConverter.GetBytes((uint)header.Length));
        Put(header);
        body(file, hash);
        file.Write(hash.GetHashAndReset());
    });

    /// <summary>The header's JSON, after checking magic, version and checksum.</summary>
    public static byte[] ReadHeader(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"checkpoint {path} does not exist.", path);
        }
        Verify(path);
        using FileStream f = File.OpenRead(path);
        var header = new byte[HeaderLength(f)];
        f.ReadExactly(header);
        return header;
    }

    /// <summary>
    /// Refuses a checkpoint whose table lacks any of <paramref name="names"/>, before anything is read into a net.
    /// </summary>
    /// <param name="holds">What it should hold, for the message ("a whole paper net").</param>
    /// <param name="fix">What to do instead, or empty.</param>
    public static void Require(string path, IReadOnlyList<TensorEntry> entries, IEnumerable<string> names, string holds,
        string fix = "")
    {
        var present = entries.Select(e => e.Name).ToHashSet();
        string[] absent = names.Where(n => !present.Contains(n)).ToArray();
        if (absent.Length > 0)
        {
            string then = fix.Length > 0 ? " " + fix : "";
            throw new InvalidDataException(
                $"{path} lacks {string.Join(", ", absent)}: it does not hold {holds}.{then}");
        }
    }

    /// <summary>
    /// Reads the tensors named in <paramref name="targets"/> into them (shapes checked) and passes over the rest.
    /// </summary>
    public static void ReadTensors(string path, IReadOnlyList<TensorEntry> entries,
        IReadOnlyDictionary<string, Tensor> targets)
    {
        using FileStream f = File.OpenRead(path);
        f.Seek(HeaderLength(f), SeekOrigin.Current);
        using var _ = no_grad();
        foreach (TensorEntry entry in entries)
        {
            if (!targets.TryGetValue(entry.Name, out Tensor? target))
            {
                f.Seek(entry.Bytes, SeekOrigin.Current);   // velocity in a checkpoint loaded for inference
                continue;
            }
            if (!target.shape.SequenceEqual(entry.Shape))
            {
                throw new InvalidDataException(
                    $"{path}: {entry.Name} has shape [{string.Join(",", entry.Shape)}], the model expects " +
                    $"[{string.Join(",", target.shape)}].");
            }
            var data = new float[entry.Bytes / 4];
            f.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
            using Tensor src = tensor(data, entry.Shape);
            target.copy_(src);
        }
    }

    /// <summary>Leaves <paramref name="f"/> at the header's first byte and returns its length.</summary>
    private static uint HeaderLength(FileStream f)
    {
        f.Seek(Magic.Length + 4, SeekOrigin.Begin);
        var length = new byte[4];
        f.ReadExactly(length);
        return BitConverter.ToUInt32(length);
    }

    /// <summary>Checks magic, version and checksum; a damaged file gets an error that names it and what to
    /// do.</summary>
    private static void Verify(string path)
    {
        using FileStream f = File.OpenRead(path);
        var magic = new byte[Magic.Length];
        if (f.Length < Magic.Length + 8 + 32 || f.Read(magic) != Magic.Length || !magic.AsSpan().SequenceEqual(Magic))
        {
            throw new InvalidDataException(
                $"{path} is not an alexnet checkpoint (wrong header). Pass a .ckpt file written by `alexnet train`.");
        }
        var version = new byte[4];
        f.ReadExactly(version);
        if (BitConverter.ToUInt32(version) != Version)
        {
            throw new InvalidDataException(
                $"{path} is checkpoint format v{BitConverter.ToUInt32(version)}; this alexnet reads v{Version}.");
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
            throw new InvalidDataException(
                $"{path} is damaged (checksum mismatch: truncated or altered). Use another checkpoint of the run " +
                    $"(last.ckpt or best.ckpt), or retrain.");
        }
    }

    private static Header Parse(byte[] header, string path)
    {
        try
        {
            Header h = JsonSerializer.Deserialize<Header>(header, Partial)
                ?? throw new InvalidDataException($"{path}: the checkpoint header is empty.");
            h.ModelCard.Validate(path);
            return h;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: the checkpoint header is unreadable ({e.Message}).");
        }
    }

    /// <summary>What inference reads of a header; earlier builds wrote no card, only the fields it is derived
    /// from.</summary>
    private sealed record Header(TensorEntry[] Tensors, ModelCard? Card, Architecture Architecture, TrainedWith Options,
        string[] ClassNames,
        float[] Mean, int StoreHeight, int StoreWidth)
    {
        [JsonIgnore]
        public ModelCard ModelCard =>
            Card ?? ModelCard.Derive(Architecture, ClassNames, Mean, StoreHeight, StoreWidth, Options.Pad, Options.Crop,
            Options.SubtractMean, Options.InputScale ?? Initialization.InputScaleFor(Options.Init ?? Architecture.Init),
                Options.Normalization);
    }

    /// <summary>
    /// The options a run was trained with, as far as inference reads them: what fixed the test-time input (for
    /// checkpoints without a card), the number format it trained in, and the seed its net was built with.
    /// </summary>
    private sealed record TrainedWith(InitScheme? Init = null, int Pad = InputDefaults.Pad, int? Crop = null,
        bool SubtractMean = InputDefaults.SubtractMean, float? InputScale = null,
        InputNormalization Normalization = InputDefaults.Normalization, Precision Precision = Precision.Fp32,
        long Seed = 1);
}
