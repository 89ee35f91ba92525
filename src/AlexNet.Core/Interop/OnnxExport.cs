// ONNX out: any of our nets as an opset-17 graph, through OnnxSharp's generated ONNX classes (Google.Protobuf),
// written from the Architecture record layer by layer, so each §3 operation maps to one ONNX operator:
//   conv  → Conv (group 2 on conv2/4/5 of the two-tower nets, §3.2)      ReLU/tanh → Relu/Tanh (§3.1)
//   LRN   → LRN: size n, alpha = the paper's α·n (ONNX divides by n, §3.3), bias k, beta; odd n only
//   pool  → MaxPool 3/2, no ceil mode (§3.4)                             fc → Gemm with transB (W is out×in)
//   torchvision's adaptive 6×6 average pool → AveragePool whose kernel equals its stride (refused where it does not divide)
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
    public static void Write(string path, AlexNetModel model, ModelCard card)
    {
        ModelProto proto = Build(model, card);
        AtomicFile.Write(path, stream => proto.WriteTo(stream));
    }

    public static ModelProto Build(AlexNetModel model, ModelCard card)
    {
        Architecture a = model.Architecture;
        Preprocessing pre = card.Preprocessing;
        if (pre.Crop != a.InputSize)
        {
            throw new ArgumentException($"the checkpoint's {pre.RecordSize}-px records give {pre.Crop}-px views, but its {a.Variant} net takes {a.InputSize} px; the checkpoint is inconsistent.");
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
        string Activation(string after) => Node(a.Activation == Model.Activation.Relu ? "Relu" : "Tanh", after + ".act", new[] { h });

        foreach (ConvLayer c in a.Convs)
        {
            h = Node("Conv", c.Name, Params(c.Name).Prepend(h),
                Ints("kernel_shape", c.Size, c.Size), Ints("strides", c.Stride, c.Stride), Ints("pads", c.Padding, c.Padding, c.Padding, c.Padding),
                Int("group", c.Groups), Ints("dilations", 1, 1));
            side = Shapes.OutputSize(side, c.Size, c.Stride, c.Padding);
            h = Activation(c.Name);
            if (c.Lrn && a.Lrn is LrnParams lrn)
            {
                if (lrn.Size % 2 == 0)
                {
                    throw new ArgumentException($"ONNX's LRN centres its window, so it has no even size: this net's n = {lrn.Size} cannot be exported.");
                }
                AttributeProto[] lrnAttributes = { Int("size", lrn.Size), Float32("alpha", lrn.TorchAlpha), Float32("beta", lrn.Beta), Float32("bias", lrn.K) };
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
                    string[] normalised = towers.Select(t => Node("LRN", t + ".lrn", new[] { t }, lrnAttributes)).ToArray();
                    h = Node("Concat", c.Name + ".lrn", normalised, Int("axis", 1));
                }
            }
            if (c.Pool)
            {
                h = Node("MaxPool", c.Name + ".pool", new[] { h }, Ints("kernel_shape", a.PoolWindow, a.PoolWindow), Ints("strides", a.PoolStride, a.PoolStride),
                    Int("ceil_mode", 0));
                side = Shapes.PooledSize(side, a.PoolWindow, a.PoolStride);
            }
        }
        if (a.TorchvisionLayout && side != 6)
        {
            // AdaptiveAvgPool2d(6) is a plain average pool only where 6 divides the map.
            if (side % 6 != 0)
            {
                throw new ArgumentException($"torchvision's adaptive 6×6 pool over a {side}×{side} map has uneven windows, which ONNX's AveragePool cannot express; export at an input size whose last map is a multiple of 6 (224 px gives 6).");
            }
            int k = side / 6;
            h = Node("AveragePool", "avgpool", new[] { h }, Ints("kernel_shape", k, k), Ints("strides", k, k));
        }
        h = Node("Flatten", "flatten", new[] { h }, Int("axis", 1));
        foreach (FcLayer f in a.Hidden)
        {
            h = Node("Gemm", f.Name, Params(f.Name).Prepend(h), Int("transB", 1));
            h = Activation(f.Name);
        }
        var fc8 = new NodeProto { OpType = "Gemm", Name = "fc8" };
        fc8.Input.AddRange(Params("fc8").Prepend(h));
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
            Meta(m, MeanKey, Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(card.MeanImage.AsSpan())));
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

    private static void Meta(ModelProto m, string key, string value) => m.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });

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
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = Float, Shape = shape } } };
    }

    private static AttributeProto Int(string name, long v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = v };

    private static AttributeProto Float32(string name, double v) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = (float)v };

    private static AttributeProto Ints(string name, params long[] v)
    {
        var p = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        p.Ints.AddRange(v);
        return p;
    }
}
