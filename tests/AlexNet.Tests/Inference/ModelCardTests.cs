using System;
using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Inference;
using AlexNet.Interop;
using AlexNet.Model;
using AlexNet.Training;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Inference;

/// <summary>
/// The model card: derived for checkpoints of earlier builds, written once in new ones, carried into ONNX.
/// </summary>
public class ModelCardTests
{
    /// <summary>
    /// A fig1 run of 2 steps on Fashion-MNIST, written by the build before model cards (main at df471cb).
    /// </summary>
    private static string Fixture(string name) =>
        Path.Combine(AppContext.BaseDirectory, "Fixtures", "checkpoints", name);

    private const string Dog = "/usr/share/darknet/data/dog.jpg";

    private sealed record Score(int Index, string Name, double Probability);

    private sealed record Expected(string Source, Score[] Top);

    [SkippableFact]
    public void ACheckpointOfAnEarlierBuildLoadsWithItsCardAndPredictsAsItDid()
    {
        Skip.IfNot(File.Exists(Dog), "darknet's photos are not installed (./setup.sh installs them)");
        using Classifier net = Classifier.Load(Fixture("fig1-wave2.ckpt"));
        ModelCard card = net.Card;
        Assert.Equal(Variants.Figure1, card.Architecture.Variant);
        Assert.Equal("Pullover", card.ClassNames[2]);
        Assert.Equal((28, 32, 4, 1), (card.RecordSize, card.Preprocessing.Crop, card.Preprocessing.Pad, card.Channels));
        Assert.Equal(InputNormalization.MeanImage, card.Preprocessing.Normalization);
        // fig1's fan-in-scaled init (Initialization.InputScaleFor), recorded by that build
        Assert.Equal(0.0125f, card.Preprocessing.InputScale);
        Assert.Equal(28 * 28, card.MeanImage.Length);

        // `alexnet predict --json --top 10` of that build, on the same photo: the same ten probabilities.
        Expected then =
            JsonSerializer.Deserialize<Expected[]>(File.ReadAllText(Fixture("fig1-wave2.dog.json")), Json.Options)![0];
        var now = net.Predict(new[] { net.Read(Dog) }, new[] { Dog }, top: 10)[0];
        Assert.Equal(then.Top.Select(s => s.Index), now.Top.Select(s => s.Index));
        Assert.All(then.Top.Zip(now.Top), p => Assert.Equal(p.First.Probability, p.Second.Probability, 6));
    }

    [Fact]
    public void ANewCheckpointCarriesItsCardWithTheMeanImageWrittenOnce()
    {
        using var dir = new TestData.TempDir();
        Architecture arch = Variants.Get(Variants.Figure1, classes: 3, inputChannels: 1, inputSize: 32);
        using var model = new AlexNetModel(arch, seed: 1);
        float[] mean = Enumerable.Range(0, 28 * 28).Select(i => i / 7f).ToArray();
        var options = new TrainOptions { Model = Variants.Figure1, InputScale = 0.5f };
        Checkpoint.Save(dir["c.ckpt"],
            Checkpoint.WeightsOnly(options, arch, new[] { "a", "b", "c" }, mean, 28), model, velocity: null);

        RunState state = Checkpoint.ReadState(dir["c.ckpt"]);
        Assert.NotNull(state.Card);
        Assert.Equal(mean, state.Card!.MeanImage);
        Assert.Equal(mean, state.Mean);   // put back for the trainer's readers
        Assert.Equal(0.5f, state.Card.Preprocessing.InputScale);
        Assert.Equal(new[] { "a", "b", "c" }, state.Card.ClassNames);

        // The header holds the mean image once: in the card, not again in the state.
        byte[] file = File.ReadAllBytes(dir["c.ckpt"]);
        int length = BitConverter.ToInt32(file, 12);
        using JsonDocument header = JsonDocument.Parse(file.AsMemory(16, length));
        Assert.Equal(0, header.RootElement.GetProperty("mean").GetArrayLength());
        Assert.Equal(mean.Length, header.RootElement.GetProperty("card").GetProperty("meanImage").GetArrayLength());
    }

    [Fact]
    public void AnOnnxFileCarriesTheCheckpointsCard()
    {
        using var dir = new TestData.TempDir();
        using Classifier net = Classifier.Load(Fixture("fig1-wave2.ckpt"));
        OnnxExport.Write(dir["n.onnx"], net.Model, net.Card);
        using var ort = new OnnxClassifier(dir["n.onnx"], threads: 1);
        Assert.NotNull(ort.Card);
        Assert.Equal(Json.Serialize(net.Card), Json.Serialize(ort.Card!));
    }

    [Fact]
    public void ACardThatDoesNotFitTogetherIsRefusedNamingTheFile()
    {
        using var dir = new TestData.TempDir();
        Architecture arch = Variants.Get(Variants.Figure1, classes: 3, inputChannels: 1, inputSize: 32);
        using var model = new AlexNetModel(arch, seed: 1);
        RunState state = Checkpoint.WeightsOnly(new TrainOptions
        {
            Model = Variants.Figure1,
        }, arch, new[] { "a", "b", "c" }, new float[28 * 28], 28);
        Checkpoint.Save(dir["bad.ckpt"], state with
        {
            Card = state.ModelCard with { MeanImage = new float[5] },
        }, model, velocity: null);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.ReadState(dir["bad.ckpt"]));
        Assert.Contains(dir["bad.ckpt"], e.Message);
        Assert.Contains("model card", e.Message);
    }

    /// <summary>A checkpoint of `small` (4 classes, 28-px records) with momentum buffers, as a run writes it.</summary>
    private static (RunState State, Tensor[] Velocity) WriteRunCheckpoint(string path)
    {
        Architecture arch = Variants.Get(Variants.Small, classes: 4, inputChannels: 1, inputSize: 32);
        using var model = new AlexNetModel(arch, seed: 3);
        Tensor[] velocity = model.parameters().Select((p, i) => full_like(p, i + 0.5)).ToArray();
        RunState state = Checkpoint.WeightsOnly(new TrainOptions
        {
            Model = Variants.Small,
            InputScale = 0.25f,
        }, arch, new[] { "a", "b", "c", "d" },
            Enumerable.Range(0, 28 * 28).Select(i => i % 255f).ToArray(), 28) with
        { Epoch = 3, Step = 42 };
        Checkpoint.Save(path, state, model, velocity);
        return (Checkpoint.ReadState(path), velocity);
    }

    [Fact]
    public void RewritingTheCardKeepsEveryTensorAndTheRunsState()
    {
        using var dir = new TestData.TempDir();
        (RunState before, Tensor[] velocity) = WriteRunCheckpoint(dir["c.ckpt"]);
        ModelCard card = ModelFile.ReadCard(dir["c.ckpt"]);
        ModelFile.WriteWithCard(dir["c.ckpt"], dir["renamed.ckpt"], card with
        {
            ClassNames = new[] { "w", "x", "y", "z" },
        });

        RunState after = Checkpoint.ReadState(dir["renamed.ckpt"]);
        Assert.Equal(new[] { "w", "x", "y", "z" }, ModelFile.ReadCard(dir["renamed.ckpt"]).ClassNames);
        Assert.Equal((3, 42L), (after.Epoch, after.Step));
        Assert.Equal(Json.Serialize(before.Tensors), Json.Serialize(after.Tensors));
        Assert.Equal(before.Card!.MeanImage, after.Mean);

        // The weights and the momentum buffers read back bit for bit.
        using var a = new AlexNetModel(before.Architecture, seed: 9);
        using var b = new AlexNetModel(before.Architecture, seed: 10);
        Tensor[] va = velocity.Select(v => zeros_like(v)).ToArray(), vb = velocity.Select(v => zeros_like(v)).ToArray();
        Checkpoint.LoadInto(dir["c.ckpt"], before, a, va);
        Checkpoint.LoadInto(dir["renamed.ckpt"], after, b, vb);
        Assert.All(a.parameters().Zip(b.parameters()), p => Assert.True(p.First.eq(p.Second).all().item<bool>()));
        Assert.All(velocity.Zip(vb), p => Assert.True(p.First.eq(p.Second).all().item<bool>()));
    }

    [Fact]
    public void ACheckpointThatLacksALayerIsRefusedNamingTheFileAndTheLayer()
    {
        using var dir = new TestData.TempDir();
        (RunState state, _) = WriteRunCheckpoint(dir["c.ckpt"]);
        using var model = new AlexNetModel(state.Architecture, seed: 3);
        // The same header and tensors with fc8's bias left out, written whole (a valid checksum).
        (string Name, Tensor T)[] kept = model.state_dict().Where(kv => !kv.Key.EndsWith("bias",
            StringComparison.Ordinal) || !kv.Key.Contains(model.StateKey("fc8")))
            .Select(kv => ("model/" + kv.Key, kv.Value)).ToArray();
        Assert.Equal(model.state_dict().Count - 1, kept.Length);
        RunState cut = state with
        {
            Tensors = kept.Select(t => new TensorEntry(t.Name, t.T.shape, t.T.numel() * 4)).ToArray(),
        };
        ModelFile.Write(dir["cut.ckpt"], JsonSerializer.SerializeToUtf8Bytes(cut, Json.Options),
            kept.Select(t => t.T).ToArray());

        var e = Assert.Throws<InvalidDataException>(() => ModelFile.Load(dir["cut.ckpt"]));
        Assert.Contains(dir["cut.ckpt"], e.Message);
        Assert.Contains($"model/{model.StateKey("fc8")}.bias", e.Message);
        e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadInto(dir["cut.ckpt"],
            Checkpoint.ReadState(dir["cut.ckpt"]), model, optimizer: null));
        Assert.Contains($"model/{model.StateKey("fc8")}.bias", e.Message);
    }

    [Fact]
    public void FineTuningTakesTheCardsNetAndInputUnlessTheCallerSetThem()
    {
        using var dir = new TestData.TempDir();
        WriteRunCheckpoint(dir["c.ckpt"]);
        TrainOptions inherited = FineTuning.Inherit(new TrainOptions(), dir["c.ckpt"]);
        Assert.Equal((Variants.Small, InputNormalization.MeanImage, 0.25f, dir["c.ckpt"]),
            (inherited.Model, inherited.Normalization, inherited.InputScale, inherited.InitFrom));

        var mine = new TrainOptions
        {
            Model = Variants.Paper,
            Normalization = InputNormalization.Imagenet,
            InputScale = 2f,
        };
        TrainOptions kept = FineTuning.Inherit(mine, dir["c.ckpt"], keepModel: true,
            keepNormalization: true, keepInputScale: true);
        Assert.Equal((Variants.Paper, InputNormalization.Imagenet, 2f),
            (kept.Model, kept.Normalization, kept.InputScale));
    }
}
