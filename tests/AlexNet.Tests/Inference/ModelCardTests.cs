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

namespace AlexNet.Tests.Inference;

/// <summary>
/// The model card: derived for checkpoints of earlier builds, written once in new ones, carried into ONNX.
/// </summary>
public class ModelCardTests
{
    /// <summary>
    /// A fig1 run of 2 steps on Fashion-MNIST, written by the build before model cards (main at df471cb).
    /// </summary>
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "checkpoints", name);

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
        Assert.Equal(0.0125f, card.Preprocessing.InputScale);   // fig1's fan-in-scaled init (Recipes.InputScaleFor), recorded by that build
        Assert.Equal(28 * 28, card.MeanImage.Length);

        // `alexnet predict --json --top 10` of that build, on the same photo: the same ten probabilities.
        Expected then = JsonSerializer.Deserialize<Expected[]>(File.ReadAllText(Fixture("fig1-wave2.dog.json")), Json.Options)![0];
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
        Checkpoint.Save(dir["c.ckpt"], Checkpoint.WeightsOnly(options, arch, new[] { "a", "b", "c" }, mean, 28), model, velocity: null);

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
        RunState state = Checkpoint.WeightsOnly(new TrainOptions { Model = Variants.Figure1 }, arch, new[] { "a", "b", "c" }, new float[28 * 28], 28);
        Checkpoint.Save(dir["bad.ckpt"], state with { Card = state.ModelCard with { MeanImage = new float[5] } }, model, velocity: null);
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.ReadState(dir["bad.ckpt"]));
        Assert.Contains(dir["bad.ckpt"], e.Message);
        Assert.Contains("model card", e.Message);
    }
}
