// Pretrained weights in: a PyTorch state_dict — torch.save's zip format (.pth) or .safetensors — into one of our
// nets, whose state_dict keys are torchvision's (features.N / classifier.N, AlexNetModel.cs). Read through
// TorchSharp.PyBridge's own unpickler, not `load_py`: that one keeps the file's requires_grad=False on every
// parameter and checks no shapes. Its unpickler runs nothing — an unknown global becomes a plain object or an
// error — and everything it returns is checked here before a single value is copied: every value a float32
// tensor, the key set exactly ours (missing and unexpected keys by name), every shape equal.
using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Model;
using AlexNet.Training;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace AlexNet.Interop;

/// <param name="Variant">The net the weights are for (owt = torchvision's alexnet; paper etc. in bench/peer.py's
/// layout).</param>
/// <param name="RecordSize">Side of the §2 records the net is evaluated on (null: 256 for 224-px nets, 28 for small, 32
/// for fig1).</param>
/// <param name="Normalization">How pixels become inputs: torchvision's per-channel statistics, or §2's mean image
/// (needs <paramref name="Mean"/>).</param>
/// <param name="Mean">§2's mean image (C×R×R, a store's), for <see cref="InputNormalization.MeanImage"/>.</param>
/// <param name="ClassNames">Names of the classes in output order (null: ILSVRC-2012's for 1000, else the
/// indices).</param>
public sealed record ImportOptions(string Variant, int? RecordSize = null,
    InputNormalization Normalization = InputNormalization.Imagenet,
    float[]? Mean = null, string[]? ClassNames = null, float InputScale = 1f);

public static class PyTorchWeights
{
    /// <summary>
    /// A state_dict file's tensors by key; a file that is not one, or holds anything but tensors, is refused.
    /// </summary>
    public static Dictionary<string, Tensor> Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"weights file {path} does not exist.", path);
        }
        byte[] head = new byte[8];
        using (FileStream f = File.OpenRead(path))
        {
            f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        bool zip = head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4;
        try
        {
            return zip ? ReadPickle(path) : LooksLikeSafetensors(path,
                head) ? ReadSafetensors(path) : throw Refuse(path, head);
        }
        catch (Razorvine.Pickle.PickleException e) when (System.Text.RegularExpressions.Regex.Match(e.Message,
            @"\(for ([\w.]+)\)") is { Success: true } m)
        {
            // The unpickler builds only tensors and containers: anything else is a call the file asks for, not data.
            throw new InvalidDataException(
                $"{path} is refused: unpickling it would call {m.Groups[1].Value}, and a state_dict holds " +
                "tensors only. Nothing in it was run and nothing was written; do not load it in Python either.", e);
        }
        catch (InvalidOperationException e) when (zip
            && e.Message.Contains("no matching element", StringComparison.Ordinal))
        {
            throw new InvalidDataException(
                $"{path}: its archive lacks the data record of a tensor its pickle names (a file cut short or " +
                "damaged in a copy): take another copy of it. Nothing was written.", e);
        }
        catch (Exception e) when (e is not InvalidDataException and not OutOfMemoryException)
        {
            throw new InvalidDataException(
                $"{path} could not be read as a PyTorch state_dict ({e.GetType().Name}: {e.Message}); nothing was " +
                "written.", e);
        }
    }

    private static bool LooksLikeSafetensors(string path, byte[] head)
    {
        ulong headerBytes = BitConverter.ToUInt64(head);
        return headerBytes > 1 && headerBytes < 100_000_000 && (long)headerBytes + 8 <= new FileInfo(path).Length
            && (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) || FirstHeaderByte(path) == '{');
    }

    private static int FirstHeaderByte(string path)
    {
        using FileStream f = File.OpenRead(path);
        f.Seek(8, SeekOrigin.Begin);
        return f.ReadByte();
    }

    private static InvalidDataException Refuse(string path, byte[] head) => new(head[0] == 0x80
        ? $"{path} is in torch.save's legacy (pre-1.6) format, which is a bare pickle that cannot be read safely. " +
          "Re-save it in PyTorch ≥ 1.6: `torch.save(torch.load(path), 'new.pth')` (the zip format is the default), or " +
        "as .safetensors; nothing was written."
        : $"{path} is neither a torch.save zip file nor a .safetensors file. Pass a state_dict saved with " +
        "`torch.save(model.state_dict(), path)`; nothing was written.");

    /// <summary>
    /// torch.save writes each tensor as (storage, offset, shape, stride), and torch.load reads a view into a larger
    /// storage or a transposed one as it is. TorchSharp.PyBridge's constructor assumes a dense tensor at offset 0 and
    /// refuses both with a libtorch stack trace; ours reads the storage whole and copies the view's values into a
    /// dense tensor, checking first that the view lies inside its storage.
    /// </summary>
    private sealed class ViewedTensor : Razorvine.Pickle.IObjectConstructor
    {
        public object construct(object[] args)
        {
            object storage = args[0];   // PyBridge's record of the storage: its archive entry and dtype
            var entry = (System.IO.Compression.ZipArchiveEntry)Member(storage, "ArchiveEntry");
            var dtype = (ScalarType)Member(storage, "DType");
            var data = new byte[entry.Length];
            using (Stream s = entry.Open())
            {
                s.ReadExactly(data);
            }
            long offset = Convert.ToInt64(args[1], System.Globalization.CultureInfo.InvariantCulture);
            long[] shape = ((object[])args[2]).Select(d => Convert.ToInt64(d,
                System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            long[] stride = ((object[])args[3]).Select(d => Convert.ToInt64(d,
                System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            using Tensor one = empty(0, dtype);
            long values = data.Length / one.ElementSize;
            long last = offset + shape.Zip(stride, (n, st) => n > 0 ? (n - 1) * st : 0).Sum();
            if (offset < 0 || stride.Any(st => st < 0) || shape.All(n => n > 0) && last >= values)
            {
                throw new InvalidDataException(
                    $"a tensor of shape [{string.Join("×", shape)}] reads its storage of {values} values at " +
                    $"offset {offset} " +
                    $"with stride ({string.Join(", ", stride)}), past the storage's end: the file is damaged");
            }
            using Tensor flat = empty(values, dtype);
            flat.bytes = data;
            using Tensor view = flat.as_strided(shape, stride, offset);
            Tensor dense = empty(shape, dtype);
            dense.copy_(view);
            return dense;
        }
    }

    /// <summary>A property of PyBridge's storage record, by name (1.4.4: the archive entry and the dtype).</summary>
    private static object Member(object o, string name) =>
        o.GetType().GetProperty(name,
        System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance)?.GetValue(o)
        ?? throw new InvalidDataException(
        $"this TorchSharp.PyBridge keeps no storage {name} (not the version this build was made for)");

    static PyTorchWeights()
    {
        // PyBridge registers its own when its class is first used: run that first, then take the tensor's place.
        System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(typeof(PyTorchUnpickler).TypeHandle);
        Razorvine.Pickle.Unpickler.registerConstructor("torch._utils", "_rebuild_tensor", new ViewedTensor());
        Razorvine.Pickle.Unpickler.registerConstructor("torch._utils", "_rebuild_tensor_v2", new ViewedTensor());
    }

    private static Dictionary<string, Tensor> ReadPickle(string path)
    {
        object loaded;
        using (FileStream f = File.OpenRead(path))
        {
            loaded = PyTorchUnpickler.UnpickleStateDict(f);
        }
        if (loaded is not Hashtable table)
        {
            throw new InvalidDataException(
                $"{path} holds a {loaded.GetType().Name}, not a state_dict. Save `model.state_dict()`, not the " +
                "model; nothing was written.");
        }
        var result = new Dictionary<string, Tensor>();
        var wrong = new List<string>();
        foreach (DictionaryEntry e in table)
        {
            if (e.Key is string key && e.Value is Tensor t)
            {
                result[key] = t;
            }
            else
            {
                wrong.Add($"{e.Key} ({Describe(e.Value)})");
            }
        }
        if (wrong.Count > 0)
        {
            foreach (Tensor t in result.Values)
            {
                t.Dispose();
            }
            throw new InvalidDataException(
                $"{path}: not every entry is a tensor: {string.Join(", ", wrong)}. A state_dict holds tensors only; " +
                "this file was refused and nothing in it was run or written.");
        }
        return result;
    }

    private static string Describe(object? value) => value switch
    {
        null => "None",
        Razorvine.Pickle.Objects.ClassDict c => $"an object of {c.ClassName}",
        _ => value.GetType().Name,
    };

    private static Dictionary<string, Tensor> ReadSafetensors(string path)
    {
        CheckSafetensorsHeader(path);
        return Safetensors.LoadStateDict(path);
    }

    /// <summary>
    /// Every tensor's byte range inside the file and of its shape's size, checked first, so that a bad one is named.
    /// </summary>
    private static void CheckSafetensorsHeader(string path)
    {
        long length = new FileInfo(path).Length;
        byte[] header;
        using (FileStream f = File.OpenRead(path))
        {
            var size = new byte[8];
            f.ReadExactly(size);
            header = new byte[BitConverter.ToUInt64(size)];
            f.ReadExactly(header);
        }
        long data = length - 8 - header.Length;
        using var doc = System.Text.Json.JsonDocument.Parse(header);
        foreach (System.Text.Json.JsonProperty t in doc.RootElement.EnumerateObject()
            .Where(p => p.Name != "__metadata__"))
        {
            long[] range = t.Value.GetProperty("data_offsets").EnumerateArray().Select(v => v.GetInt64()).ToArray();
            long count = t.Value.GetProperty("shape").EnumerateArray().Aggregate(1L, (n, d) => n * d.GetInt64());
            int bytes = t.Value.GetProperty("dtype").GetString() switch
            {
                "F64" or "I64" => 8,
                "F32" or "I32" => 4,
                "F16" or "BF16" or "I16" => 2,
                _ => 1,
            };
            if (range.Length != 2 || range[0] < 0 || range[1] < range[0] || range[1] > data)
            {
                throw new InvalidDataException(
                    $"{path}: tensor {t.Name}'s bytes [{string.Join(", ", range)}) lie outside the file's {data} " +
                    "bytes of " +
                    "data (a file cut short or damaged in a copy): take another copy of it. Nothing was written.");
            }
            if (range[1] - range[0] != count * bytes)
            {
                throw new InvalidDataException(
                    $"{path}: tensor {t.Name} has {range[1] - range[0]} bytes for its shape's {count * bytes}: the " +
                    "file is " +
                    "damaged. Nothing was written.");
            }
        }
    }

    /// <summary>
    /// Copies a state_dict into <paramref name="model"/> after checking all of it; on any mismatch nothing is copied.
    /// </summary>
    public static void LoadInto(AlexNetModel model, IReadOnlyDictionary<string, Tensor> state, string source)
    {
        Dictionary<string, Tensor> ours = model.state_dict();
        string[] missing = ours.Keys.Where(k => !state.ContainsKey(k)).ToArray();
        string[] unexpected = state.Keys.Where(k => !ours.ContainsKey(k)).OrderBy(k => k,
            StringComparer.Ordinal).ToArray();
        var problems = new List<string>();
        if (missing.Length > 0)
        {
            problems.Add($"missing keys: {string.Join(", ", missing)}");
        }
        if (unexpected.Length > 0)
        {
            problems.Add($"unexpected keys: {string.Join(", ", unexpected)}");
        }
        foreach ((string key, Tensor target) in ours)
        {
            if (state.TryGetValue(key, out Tensor? t))
            {
                if (!t.shape.SequenceEqual(target.shape))
                {
                    problems.Add(
                        $"{key} is [{string.Join("×", t.shape)}], the {model.Architecture.Variant} net's is " +
                        $"[{string.Join("×", target.shape)}]");
                }
                else if (t.dtype != ScalarType.Float32)
                {
                    problems.Add($"{key} is {t.dtype}, not float32 (convert with `.float()` before saving)");
                }
            }
        }
        if (problems.Count > 0)
        {
            throw new InvalidDataException(
                $"{source} does not fit the {model.Architecture.Variant} net ({model.Architecture.Classes} classes, " +
                $"{model.Architecture.InputChannels} channel(s)): {string.Join("; ", problems)}. Nothing was written.");
        }
        using var _ = no_grad();
        foreach ((string key, Tensor target) in ours)
        {
            target.copy_(state[key]);
        }
    }

    /// <summary>
    /// A state_dict file as a net of ours and the header of a checkpoint that holds it (Checkpoint.Save).
    /// </summary>
    public static (AlexNetModel Model, RunState State) Import(string path, ImportOptions o)
    {
        Dictionary<string, Tensor> state = Read(path);
        try
        {
            (int classes, int channels) = ShapeOf(state, path);
            int record = o.RecordSize ?? DefaultRecordSize(o.Variant);
            var options = new TrainOptions
            {
                Model = o.Variant,
                Normalization = o.Normalization,
                InputScale = o.InputScale,
                Epochs = 1,
            };
            AugmentOptions augment = options.Augment(record, record);
            Architecture arch = options.Architecture(classes, channels, augment.Crop);
            float[] mean = o.Normalization == InputNormalization.MeanImage
                ? o.Mean ?? throw new ArgumentException(
                "§2's mean-image normalisation needs the mean image of the data the net was trained on (import " +
                "--mean-from STORE).")
                : Array.Empty<float>();
            if (mean.Length != 0 && mean.Length != channels * record * record)
            {
                throw new ArgumentException(
                    $"the mean image has {mean.Length} values; a {channels}×{record}×{record} record " +
                    $"needs {channels * record * record} (--record-size).");
            }
            augment.ChannelNorm?.Validate(channels);
            string[] names = o.ClassNames ?? DefaultNames(classes);
            if (names.Length != classes)
            {
                throw new ArgumentException($"{names.Length} class names for a net with {classes} outputs.");
            }
            var model = new AlexNetModel(arch, seed: 0);
            try
            {
                LoadInto(model, state, path);
            }
            catch
            {
                model.Dispose();
                throw;
            }
            model.eval();
            return (model, Checkpoint.WeightsOnly(options, arch, names, mean, record));
        }
        finally
        {
            foreach (Tensor t in state.Values)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>Classes from fc8 (the classifier's last weight), input channels from conv1's weight.</summary>
    private static (int Classes, int Channels) ShapeOf(Dictionary<string, Tensor> state, string path)
    {
        if (!state.TryGetValue("features.0.weight", out Tensor? conv1) || conv1.dim() != 4)
        {
            throw new InvalidDataException(
                $"{path} has no 4-d features.0.weight (conv1): not an AlexNet state_dict in torchvision's layout " +
                $"(its keys: {string.Join(", ", state.Keys.Take(8))}{(state.Count > 8 ? ", …" : "")}). Nothing was " +
                "written.");
        }
        string? last = state.Keys.Where(k => k.StartsWith("classifier.",
            StringComparison.Ordinal) && k.EndsWith(".weight", StringComparison.Ordinal))
            .OrderBy(k => int.TryParse(k.Split('.')[1], out int i) ? i : -1).LastOrDefault();
        if (last is null || state[last].dim() != 2)
        {
            throw new InvalidDataException(
                $"{path} has no classifier.N.weight (fc8): not an AlexNet state_dict in torchvision's layout. " +
                "Nothing was written.");
        }
        return ((int)state[last].shape[0], (int)conv1.shape[1]);
    }

    public static int DefaultRecordSize(string variant) => variant switch
    {
        Variants.Small or Variants.Small1Gpu => 28,
        Variants.Figure1 => 32,
        _ => 256,
    };

    private static string[] DefaultNames(int classes)
    {
        if (classes == 1000 && File.Exists(AlexNet.Data.ClassNames.DarknetIds)
            && File.Exists(AlexNet.Data.ClassNames.OpenCvNames))
        {
            return AlexNet.Data.ClassNames.Ilsvrc2012().Select(c => c.Name).ToArray();
        }
        return Enumerable.Range(0,
            classes).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
    }
}
