using System;
using System.IO;
using System.Linq;
using AlexNet.Cli;
using AlexNet.Data;
using AlexNet.Interop;
using AlexNet.Model;
using AlexNet.Training;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Interop;

/// <summary>
/// Every variant exported to ONNX and run by ONNX Runtime: the same logits as ours (1e-4) and the same top-1.
/// </summary>
public class OnnxTests
{
    /// <summary>The side of the net's input for records of the variant's usual size (§4.1's crop of them).</summary>
    private static int InputSize(string variant)
    {
        int record = PyTorchWeights.DefaultRecordSize(variant);
        return new TrainOptions { Model = variant }.Augment(record, record).Crop;
    }

    private static AlexNet.Inference.ModelCard Header(AlexNetModel model,
        InputNormalization norm = InputNormalization.MeanImage, int? recordSize = null, int? crop = null)
    {
        Architecture a = model.Architecture;
        int record = recordSize ?? PyTorchWeights.DefaultRecordSize(a.Variant);
        var options = new TrainOptions { Model = a.Variant, Normalization = norm, Crop = crop };
        float[] mean = norm == InputNormalization.MeanImage ? Enumerable.Range(0,
            a.InputChannels * record * record).Select(i => (float)(i % 97)).ToArray() : Array.Empty<float>();
        return Checkpoint.WeightsOnly(options, a,
            Enumerable.Range(0, a.Classes).Select(i => $"c{i}").ToArray(), mean, record).ModelCard;
    }

    [Theory]
    [InlineData(Variants.Paper, 3)]
    [InlineData(Variants.Paper1Gpu, 3)]
    [InlineData(Variants.Owt, 3)]
    [InlineData(Variants.Small, 1)]
    [InlineData(Variants.Small1Gpu, 3)]
    [InlineData(Variants.Figure1, 3)]
    public void OnnxRuntimeReproducesOurLogits(string variant, int channels)
    {
        using var dir = new TestData.TempDir();
        int size = InputSize(variant);
        using var model = new AlexNetModel(Variants.Get(variant, classes: 10,
            inputChannels: channels, inputSize: size), seed: 3);
        model.eval();
        // Larger logits than the initialisation's: scale fc8 so that a wrong layer cannot hide under the tolerance.
        using (no_grad())
        {
            model.LayerParameters("fc8").Weight.mul_(50);
        }
        OnnxExport.Write(dir["net.onnx"], model, Header(model));
        using var generator = new Generator(11);
        using Tensor x = randn(new long[] { 3, channels, size, size }, generator: generator).mul_(40);
        float[] ours;
        using (no_grad())
        using (Tensor y = model.forward(x))
        {
            ours = y.data<float>().ToArray();
        }
        Assert.True(ours.Max(Math.Abs) > 0.1, "the test needs logits well above the tolerance");
        foreach (bool optimize in new[] { true, false })
        {
            using var ort = new OnnxClassifier(dir["net.onnx"], threads: 2, optimize);
            float[] theirs = ort.Logits(x.data<float>().ToArray(), 3);
            Assert.Equal(ours.Length, theirs.Length);
            double scale = Math.Max(1, ours.Max(Math.Abs));
            for (int i = 0; i < ours.Length; i++)
            {
                Assert.True(Math.Abs(ours[i] - theirs[i]) <= 1e-4 * scale,
                    $"{variant}, optimisations {optimize}: logit {i} {ours[i]} vs {theirs[i]}");
            }
            for (int n = 0; n < 3; n++)
            {
                Assert.Equal(ArgMax(ours, n, 10), ArgMax(theirs, n, 10));
            }
            Assert.Equal(10, ort.Classes);
            Assert.Equal(variant, ort.Variant);
        }
    }

    private static int ArgMax(float[] v, int row, int k) => Enumerable.Range(0, k).MaxBy(j => v[row * k + j]);

    [Fact]
    public void TorchvisionsAdaptivePoolBecomesAnAveragePoolWhereItDivides()
    {
        using var dir = new TestData.TempDir();
        // 415 px: conv1 103 → 51 → 25 → 12, a 12×12 map that the adaptive pool halves.
        using var model = new AlexNetModel(Variants.Get(Variants.Owt, classes: 10, inputSize: 415), seed: 2);
        model.eval();
        OnnxExport.Write(dir["owt415.onnx"], model,
            Header(model, InputNormalization.Imagenet, recordSize: 474, crop: 415));
        using Tensor x = rand(1, 3, 415, 415);
        using var ort = new OnnxClassifier(dir["owt415.onnx"], threads: 2);
        float[] theirs = ort.Logits(x.data<float>().ToArray(), 1);
        using (no_grad())
        using (Tensor y = model.forward(x))
        {
            float[] ours = y.data<float>().ToArray();
            Assert.All(ours.Zip(theirs), p => Assert.True(Math.Abs(p.First - p.Second) <= 1e-4));
        }
        Assert.Contains("Imagenet",
            System.Text.Json.JsonSerializer.Serialize(ort.Preprocessing.Normalization.ToString()));

        // a 7×7 map
        using var uneven = new AlexNetModel(Variants.Get(Variants.Owt, classes: 10, inputSize: 256), seed: 2);
        var e = Assert.Throws<ArgumentException>(() => OnnxExport.Build(uneven,
            Header(uneven, InputNormalization.Imagenet, recordSize: 292, crop: 256)));
        Assert.Contains("7×7", e.Message);
    }

    [Fact]
    public void AnEvenLrnSizeIsRefused()
    {
        Architecture a = Variants.Get(Variants.Small, 10, 1, 32);
        using var model = new AlexNetModel(a with { Lrn = new LrnParams(Size: 4) }, seed: 1);
        Assert.Throws<ArgumentException>(() => OnnxExport.Build(model, Header(model)));
    }

    [SkippableFact]
    public void ExportAndPredictThroughTheCommandsAgree()
    {
        using var dir = new TestData.TempDir();
        Assert.Equal(0, App.Run(new[] { "import", ImportTests.Fixture("small.pth"), "-m", "small", "-o",
            dir["s.ckpt"], "--normalize", "mean-image",
            "--mean-from", MeanStore(dir) }));
        Assert.Equal(0, App.Run(new[] { "export", "-c", dir["s.ckpt"], "--onnx", dir["s.onnx"] }));
        const string image = "/usr/share/darknet/data/dog.jpg";
        Skip.IfNot(File.Exists(image), $"{image} (Debian's darknet) is not installed");
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(dir["s.ckpt"]);
        using (model)
        using (var ort = new OnnxClassifier(dir["s.onnx"], threads: 2))
        {
            var ours = AlexNet.Evaluation.Predictor.PredictFiles(model, state.ModelCard, new[] { image }, 10)[0];
            var theirs = ort.PredictFiles(new[] { image }, 10)[0];
            Assert.Equal(ours.Top.Select(c => c.Index), theirs.Top.Select(c => c.Index));
            Assert.All(ours.Top.Zip(theirs.Top), p => Assert.Equal(p.First.Probability, p.Second.Probability, 1e-5));
        }
        Assert.Equal(0, App.Run(new[] { "predict", "--onnx", dir["s.onnx"], image }));
        Assert.Equal(2, App.Run(new[] { "predict", "--onnx", dir["s.ckpt"], image }));   // not an ONNX file
    }

    /// <summary>
    /// `export --precision int8`: ONNX's QDQ form (s8 per-channel weights and int32 biases behind DequantizeLinear,
    /// Q/DQ pairs at the activations), which ONNX Runtime runs on its own int8 kernels to nearly our int8 engine's
    /// logits: nearer them than float32's are. (ORT also requantizes the ReLU outputs §3.3's LRN reads, which our
    /// engine keeps float32: the difference left.)
    /// </summary>
    [SkippableTheory]
    [InlineData(Variants.Small, 1)]
    [InlineData(Variants.Owt, 3)]
    public void TheInt8ExportIsQdqWhichOnnxRuntimeRunsAsOurInt8Engine(string variant, int channels)
    {
        Skip.If(AlexNet.Model.Kernels.OneDnnNet.Unavailable is not null,
            $"oneDNN is not used here: {AlexNet.Model.Kernels.OneDnnNet.Unavailable}");
        using var dir = new TestData.TempDir();
        Architecture arch = Variants.Get(variant, variant == Variants.Owt ? 1000 : 10, channels);
        using var model = new AlexNetModel(arch, seed: 2);
        model.eval();
        using var g = new Generator(3);
        var calibration = Enumerable.Range(0,
            2).Select(_ => randn(new long[] { 8, channels, arch.InputSize, arch.InputSize }, generator: g)).ToList();
        AlexNet.Inference.ModelCard card = Header(model, crop: arch.InputSize) with
        {
            Int8 = Int8Quantization.Calibrate(model, calibration, CalibrationMethod.Percentile),
        };
        var refused = Assert.Throws<ArgumentException>(() => OnnxExport.Build(model, card with
        {
            Int8 = null,
        }, int8: true));
        Assert.Contains("not quantized", refused.Message);

        OnnxExport.Write(dir["q.onnx"], model, card, int8: true);
        Onnx.ModelProto proto = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(dir["q.onnx"]));
        Assert.All(model.LayerNames, layer => Assert.Contains(proto.Graph.Initializer,
            t => t.Name == model.StateKey(layer) + ".weight.quantized" && t.DataType == 3));
        Assert.True(proto.Graph.Node.Count(n => n.OpType == "QuantizeLinear") >= model.LayerNames.Count());

        using var _ = no_grad();
        using Tensor x = randn(new long[] { 6, channels, arch.InputSize, arch.InputSize }, generator: g);
        using var engine = new AlexNet.Model.Kernels.OneDnnNet(model, card.Int8);
        using Tensor ours = engine.Forward(x), fp32 = model.forward(x);
        using var ort = new OnnxClassifier(dir["q.onnx"], threads: 2);
        using Tensor theirs = tensor(ort.Logits(x.data<float>().ToArray(), 6), ours.shape);
        double toOurs = (theirs - ours).abs().max().item<float>(), fp32ToOurs = (fp32 - ours).abs().max().item<float>();
        Assert.True(toOurs < fp32ToOurs, $"ONNX Runtime's int8 is {toOurs:E2} from ours, float32 {fp32ToOurs:E2}");
        Assert.Equal(ours.argmax(1).data<long>().ToArray(), theirs.argmax(1).data<long>().ToArray());
        calibration.ForEach(t => t.Dispose());
    }

    private static string MeanStore(TestData.TempDir dir)
    {
        // the fixture net's 10 classes: import takes the store's names
        TestData.WriteSyntheticStore(dir["store"], 10, 10);
        return dir["store"];
    }
}
