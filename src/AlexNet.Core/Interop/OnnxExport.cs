// ONNX out: any of our nets as an opset-17 graph, through OnnxSharp's generated ONNX classes (Google.Protobuf),
// written from the Architecture record layer by layer, so each §3 operation maps to one ONNX operator:
//   conv  → Conv (group 2 on conv2/4/5 of the two-tower nets, §3.2)      ReLU/tanh → Relu/Tanh (§3.1)
//   LRN   → LRN: size n, alpha = the paper's α·n (ONNX divides by n, §3.3), bias k, beta; odd n only
//   pool  → MaxPool 3/2, no ceil mode (§3.4)                             fc → Gemm with transB (W is out×in)
//   torchvision's adaptive 6×6 average pool → AveragePool whose kernel equals its stride (refused where it does not
// divide)
// Dropout is an identity at test time and left out. Initialisers are named by state_dict key; the batch axis is
// dynamic; the model card (Inference/ModelCard.cs) travels in the model's metadata: "alexnet.card" (the card
// without its mean image), "alexnet.mean" (§2's mean image, base64 float32 C×R×R), and for readers of earlier
// builds "alexnet.preprocessing" and "alexnet.classes".
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Inference;
using AlexNet.Model;
using Google.Protobuf;
using Onnx;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Interop;

public static class OnnxExport
{
    public const int Opset = 17;
    public const string InputName = "input";
    public const string OutputName = "logits";
    public const string PreprocessingKey = "alexnet.preprocessing";
    public const string ClassesKey = "alexnet.classes";
    public const string MeanKey = "alexnet.mean";
    public const string VariantKey = "alexnet.variant";
    public const string CardKey = "alexnet.card";

    private const int Float = 1;   // TensorProto.DataType.FLOAT

    /// <summary>Writes the net as FILE (atomically: a failed export leaves no partial file).</summary>
    /// <param name="int8">ONNX's QDQ form of the card's int8 calibration (see QuantizeDequantize) instead of
    /// float32.</param>
    public static void Write(string path, AlexNetModel model, ModelCard card, bool int8 = false)
    {
        ModelProto proto = Build(model, card, int8);
        AtomicFile.Write(path, stream => proto.WriteTo(stream));
    }

    public static ModelProto Build(AlexNetModel model, ModelCard card, bool int8 = false)
    {
        Int8Quantization? q = !int8 ? null : card.Int8
            ?? throw new ArgumentException(
            "the checkpoint is not quantized: run `alexnet quantize` first, then export its output with --precision " +
            "int8.");
        Architecture a = model.Architecture;
        Preprocessing pre = card.Preprocessing;
        if (pre.Crop != a.InputSize)
        {
            throw new ArgumentException(
                $"the checkpoint's {pre.RecordSize}-px records give {pre.Crop}-px views, but its {a.Variant} net " +
                $"takes {a.InputSize} px; the checkpoint is inconsistent.");
        }
        var g = new GraphProto { Name = a.Variant };
        Dictionary<string, Tensor> weights = model.state_dict();
        string h = InputName;
        int side = a.InputSize;
        string Node(string op, string name, IEnumerable<string> inputs, params AttributeProto[] attributes)
        {
            var n = new NodeProto { OpType = op, Name = name };
            n.Input.AddRange(inputs);
            n.Output.Add(name);
            n.Attribute.AddRange(attributes);
            g.Node.Add(n);
            return name;
        }
        string[] Params(string layerName)
        {
            string key = model.StateKey(layerName);
            foreach (string part in new[] { "weight", "bias" })
            {
                g.Initializer.Add(Initializer($"{key}.{part}", weights[$"{key}.{part}"]));
            }
            return new[] { $"{key}.weight", $"{key}.bias" };
        }
        string Activation(string after) => Node(a.Activation == Model.Activation.Relu ? "Relu"
            : "Tanh", after + ".act", new[] { h });

        // int8 (QDQ): QuantizeLinear → DequantizeLinear pairs where our engine holds int8 values (each learned
        // layer's input; a ReLU output, with the next layer's scale), s8 per-channel weights and int32 biases behind
        // DequantizeLinear. ONNX Runtime fuses each DQ → Conv/Gemm → Q group into its own int8 kernels.
        var qdq = q is null ? null : new QuantizeDequantize(g, weights, model);
        string? ready = null;   // the learned layer whose input h already is (a DQ at its scale)
        string[] LayerInputs(string layer, bool signedInput)
        {
            if (qdq is null)
            {
                return Params(layer).Prepend(h).ToArray();
            }
            float scale = q!.InputScale(layer, signedInput);
            string x = ready == layer ? h : qdq.Pair(h, layer + ".in", scale, signedInput);
            ready = null;
            return qdq.Params(layer, scale).Prepend(x).ToArray();
        }
        string[] learned = model.LayerNames.ToArray();
        string Requantize(string layer, bool directlyNext)
        {
            if (qdq is null)
            {
                return h;
            }
            string next = learned[Array.IndexOf(learned, layer) + 1];
            ready = directlyNext ? next : null;
            return qdq.Pair(h, layer + ".act", q!.InputScale(next, signedInput: false), signedInput: false);
        }

        for (int i = 0; i < a.Convs.Length; i++)
        {
            ConvLayer c = a.Convs[i];
            h = Node("Conv", c.Name, LayerInputs(c.Name, signedInput: i == 0),
                Ints("kernel_shape", c.Size, c.Size), Ints("strides", c.Stride, c.Stride),
                Ints("pads", c.Padding, c.Padding, c.Padding, c.Padding),
                Int("group", c.Groups), Ints("dilations", 1, 1));
            side = Shapes.OutputSize(side, c.Size, c.Stride, c.Padding);
            h = Activation(c.Name);
            if (qdq is not null && c.Lrn && a.Lrn is not null)
            {
                h = qdq.Pair(h, c.Name + ".act",
                    q!.Range(c.Name + Int8Quantization.OutputSuffix) / 255f, signedInput: false);
            }
            else if (qdq is not null)
            {
                h = Requantize(c.Name, directlyNext: !c.Pool);
            }
            if (c.Lrn && a.Lrn is LrnParams lrn)
            {
                if (lrn.Size % 2 == 0)
                {
                    throw new ArgumentException(
                        $"ONNX's LRN centres its window, so it has no even size: this net's n = {lrn.Size} cannot be " +
                        "exported.");
                }
                AttributeProto[] lrnAttributes = { Int("size", lrn.Size), Float32("alpha", lrn.TorchAlpha),
                    Float32("beta", lrn.Beta), Float32("bias", lrn.K) };
                if (lrn.Towers == 1)
                {
                    h = Node("LRN", c.Name + ".lrn", new[] { h }, lrnAttributes);
                }
                else
                {
                    // §3.2: each tower normalises its own maps: split the channels in equal halves, LRN each,
                    // concatenate.
                    var split = new NodeProto { OpType = "Split", Name = c.Name + ".towers" };
                    split.Input.Add(h);
                    split.Attribute.Add(Int("axis", 1));
                    string[] towers = Enumerable.Range(0, lrn.Towers).Select(t => $"{c.Name}.tower{t}").ToArray();
                    split.Output.AddRange(towers);
                    g.Node.Add(split);
                    string[] normalised = towers.Select(t => Node("LRN", t + ".lrn",
                        new[] { t }, lrnAttributes)).ToArray();
                    h = Node("Concat", c.Name + ".lrn", normalised, Int("axis", 1));
                }
            }
            if (c.Pool)
            {
                h = Node("MaxPool", c.Name + ".pool", new[] { h }, Ints("kernel_shape", a.PoolWindow, a.PoolWindow),
                    Ints("strides", a.PoolStride, a.PoolStride),
                    Int("ceil_mode", 0));
                side = Shapes.PooledSize(side, a.PoolWindow, a.PoolStride);
            }
        }
        if (a.TorchvisionLayout && side != 6)
        {
            // AdaptiveAvgPool2d(6) is a plain average pool only where 6 divides the map.
            if (side % 6 != 0)
            {
                throw new ArgumentException(
                    $"torchvision's adaptive 6×6 pool over a {side}×{side} map has uneven windows, which ONNX's " +
                    "AveragePool cannot express; export at an input size whose last map is a multiple of 6 (224 px " +
                    "gives 6).");
            }
            int k = side / 6;
            h = Node("AveragePool", "avgpool", new[] { h }, Ints("kernel_shape", k, k), Ints("strides", k, k));
        }
        h = Node("Flatten", "flatten", new[] { h }, Int("axis", 1));
        ready = null;
        foreach (FcLayer f in a.Hidden)
        {
            h = Node("Gemm", f.Name, LayerInputs(f.Name, signedInput: false), Int("transB", 1));
            h = Activation(f.Name);
            h = Requantize(f.Name, directlyNext: true);
        }
        var fc8 = new NodeProto { OpType = "Gemm", Name = "fc8" };
        fc8.Input.AddRange(LayerInputs("fc8", signedInput: false));
        fc8.Output.Add(OutputName);
        fc8.Attribute.Add(Int("transB", 1));
        g.Node.Add(fc8);

        g.Input.Add(Value(InputName, "N", a.InputChannels, a.InputSize, a.InputSize));
        g.Output.Add(Value(OutputName, "N", a.Classes));

        var m = new ModelProto
        {
            IrVersion = 8,   // the IR of opset 17
            ProducerName = "alexnet",
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "",
            DocString = $"{a.Variant}: {Variants.All.First(v => v.Name == a.Variant).Description}",
            Graph = g,
        };
        m.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        Meta(m, CardKey, Json.Serialize(card with { MeanImage = Array.Empty<float>() }));
        Meta(m, PreprocessingKey, Json.Serialize(pre));
        Meta(m, ClassesKey, Json.Serialize(card.ClassNames));
        Meta(m, VariantKey, a.Variant);
        if (pre.Normalization == InputNormalization.MeanImage && pre.SubtractMean)
        {
            Meta(m, MeanKey,
                Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(card.MeanImage.AsSpan())));
        }
        return m;
    }

    /// <summary>
    /// Runs FILE in ONNX Runtime on 4 random inputs against <paramref name="model"/>: the largest logit difference, and
    /// whether every top-1 agrees.
    /// </summary>
    public static (double MaxDiff, bool SameTop1) Check(AlexNetModel model, string path)
    {
        Architecture a = model.Architecture;
        using var _ = no_grad();
        using var generator = new Generator(1);
        using Tensor x = randn(new long[] { 4, a.InputChannels, a.InputSize, a.InputSize }, generator: generator);
        using Tensor ours = model.forward(x);
        using var ort = new OnnxClassifier(path, get_num_threads());
        float[] theirs = ort.Logits(x.data<float>().ToArray(), 4);
        using Tensor t = tensor(theirs, ours.shape);
        using Tensor diff = (ours - t).abs().max();
        using Tensor a1 = ours.argmax(1), a2 = t.argmax(1);
        using Tensor same = a1.eq(a2).all();
        return (diff.item<float>(), same.item<bool>());
    }

    /// <summary>ONNX's QDQ form of the int8 calibration: the initialisers and Q/DQ nodes, named after the
    /// layers.</summary>
    private sealed class QuantizeDequantize(GraphProto g, Dictionary<string, Tensor> weights, AlexNetModel model)
    {
        private const int UInt8 = 2, Int8 = 3, Int32 = 6;

        /// <summary>x → QuantizeLinear → DequantizeLinear at one scale (zero point 0; s8 for the image, else
        /// u8).</summary>
        public string Pair(string x, string name, float scale, bool signedInput)
        {
            g.Initializer.Add(Scalar(name + ".scale", Float, BitConverter.GetBytes(scale)));
            g.Initializer.Add(Scalar(name + ".zero", signedInput ? Int8 : UInt8, new byte[1]));
            string[] args = { name + ".scale", name + ".zero" };
            string quantized = Add("QuantizeLinear", name + ".q", args.Prepend(x));
            return Add("DequantizeLinear", name + ".dq", args.Prepend(quantized));
        }

        /// <summary>
        /// The layer's weights as s8 per output channel (max |w|/127, rounded to even as oneDNN's reorder does) and its
        /// bias as int32 at scale s_in·s_w, each behind a DequantizeLinear on axis 0: the float names Conv/Gemm read.
        /// </summary>
        public string[] Params(string layer, float inputScale)
        {
            string key = model.StateKey(layer);
            Tensor w = weights[$"{key}.weight"], b = weights[$"{key}.bias"];
            float[] scales = Int8Quantization.WeightScales(w);
            using Tensor wf = w.detach().cpu().to(ScalarType.Float32).contiguous().flatten(1);
            float[] wv = wf.data<float>().ToArray(),
                bv = b.detach().cpu().to(ScalarType.Float32).data<float>().ToArray();
            int outputs = scales.Length, per = wv.Length / outputs;
            var wq = new byte[wv.Length];
            var bq = new int[outputs];
            var biasScales = new float[outputs];
            for (int o = 0; o < outputs; o++)
            {
                for (int i = 0; i < per; i++)
                {
                    wq[o * per + i] = (byte)(sbyte)Math.Clamp(Math.Round(wv[o * per + i] / scales[o],
                        MidpointRounding.ToEven), -127, 127);
                }
                biasScales[o] = inputScale * scales[o];
                bq[o] = (int)Math.Clamp(Math.Round(bv[o] / biasScales[o],
                    MidpointRounding.ToEven), int.MinValue, int.MaxValue);
            }
            return new[]
            {
                Dequantize($"{key}.weight", Int8, wq, w.shape, scales, new byte[outputs]),
                Dequantize($"{key}.bias", Int32, System.Runtime.InteropServices.MemoryMarshal.AsBytes(bq.AsSpan())
                    .ToArray(), b.shape, biasScales, new byte[outputs * 4]),
            };
        }

        private string Dequantize(string name, int type, byte[] data, long[] shape, float[] scales, byte[] zeros)
        {
            var t = new TensorProto
            {
                Name = name + ".quantized",
                DataType = type,
                RawData = ByteString.CopyFrom(data),
            };
            t.Dims.AddRange(shape);
            g.Initializer.Add(t);
            g.Initializer.Add(Vector(name + ".scale", Float,
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(scales.AsSpan()).ToArray(), scales.Length));
            g.Initializer.Add(Vector(name + ".zero", type, zeros, scales.Length));
            var n = new NodeProto { OpType = "DequantizeLinear", Name = name };
            n.Input.AddRange(new[] { name + ".quantized", name + ".scale", name + ".zero" });
            n.Output.Add(name);
            n.Attribute.Add(Int("axis", 0));
            g.Node.Add(n);
            return name;
        }

        private string Add(string op, string name, IEnumerable<string> inputs)
        {
            var n = new NodeProto { OpType = op, Name = name };
            n.Input.AddRange(inputs);
            n.Output.Add(name);
            g.Node.Add(n);
            return name;
        }

        private static TensorProto Scalar(string name, int type, byte[] data) =>
            new() { Name = name, DataType = type, RawData = ByteString.CopyFrom(data) };

        private static TensorProto Vector(string name, int type, byte[] data, long length)
        {
            TensorProto t = Scalar(name, type, data);
            t.Dims.Add(length);
            return t;
        }
    }

    private static void Meta(ModelProto m, string key, string value) =>
        m.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });

    private static TensorProto Initializer(string name, Tensor t)
    {
        using Tensor cpu = t.detach().to(DeviceType.CPU).to(ScalarType.Float32).contiguous();
        var p = new TensorProto { Name = name, DataType = Float, RawData = ByteString.CopyFrom(cpu.bytes) };
        p.Dims.AddRange(cpu.shape);
        return p;
    }

    private static ValueInfoProto Value(string name, string batch, params long[] dims)
    {
        var shape = new TensorShapeProto();
        shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimParam = batch });
        foreach (long d in dims)
        {
            shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = d });
        }
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = Float, Shape = shape } },
        };
    }

    private static AttributeProto Int(string name, long v) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = v };

    private static AttributeProto Float32(string name, double v) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = (float)v };

    private static AttributeProto Ints(string name, params long[] v)
    {
        var p = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        p.Ints.AddRange(v);
        return p;
    }
}
