using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Cli;
using AlexNet.Data;
using AlexNet.Interop;
using AlexNet.Model;
using AlexNet.Training;
using TorchSharp.PyBridge;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Interop;

/// <summary>
/// PyTorch state_dicts in: golden logits from the fixture script (Fixtures/pytorch/make_fixtures.py), and every
/// refusal.
/// </summary>
public class ImportTests
{
    internal static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "pytorch", name);

    private static readonly ImportOptions Small = new(Variants.Small,
        Normalization: InputNormalization.MeanImage, Mean: new float[28 * 28]);

    /// <summary>The fixture's two inputs and the logits torch 1.13 computed for them.</summary>
    private static (Tensor Input, float[] Logits) Golden()
    {
        byte[] raw = File.ReadAllBytes(Fixture("small.input.f32"));
        float[] x = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw).ToArray();
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Fixture("small.logits.json")));
        float[] logits = doc.RootElement.GetProperty("logits").EnumerateArray().Select(e => e.GetSingle()).ToArray();
        return (tensor(x, new long[] { 2, 1, 32, 32 }), logits);
    }

    private static void AssertGolden(AlexNetModel model)
    {
        (Tensor input, float[] expected) = Golden();
        using (input)
        using (no_grad())
        using (Tensor y = model.forward(input))
        {
            float[] got = y.data<float>().ToArray();
            Assert.Equal(expected.Length, got.Length);
            for (int i = 0; i < got.Length; i++)
            {
                Assert.True(Math.Abs(got[i] - expected[i]) <= 1e-5, $"logit {i}: {got[i]} vs torch's {expected[i]}");
            }
        }
    }

    [Theory]
    [InlineData("small.pth")]
    [InlineData("small.safetensors")]
    [InlineData("small-views.pth")]   // a bias that is a view at offset 8, fc6 stored transposed (make_view_fixture.py)
    public void AnImportedNetGivesTorchsLogitsAndLearns(string file)
    {
        (AlexNetModel model, RunState state) = PyTorchWeights.Import(Fixture(file), Small);
        using (model)
        {
            AssertGolden(model);
            Assert.All(model.parameters(), p => Assert.True(p.requires_grad));   // load_py would leave them frozen
            Assert.Equal(10, state.Architecture.Classes);
            Assert.Equal(32, state.Architecture.InputSize);
            Assert.Equal(28, state.StoreHeight);
        }
    }

    [Fact]
    public void AnImportedCheckpointReloadsToTheSameLogitsAndNormalisation()
    {
        using var dir = new TestData.TempDir();
        Assert.Equal(0, App.Run(new[] { "import", Fixture("small.pth"), "-m", "small", "-o", dir["small.ckpt"],
            "--normalize", "mean-image", "--record-size", "28",
            "--mean-from", WriteZeroMeanStore(dir) }));
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(dir["small.ckpt"]);
        using (model)
        {
            AssertGolden(model);
            Assert.Equal(InputNormalization.MeanImage, state.Options.Normalization);
        }
    }

    private static string WriteZeroMeanStore(TestData.TempDir dir)
    {
        // the fixture net's 10 classes: import takes the store's names
        TestData.WriteSyntheticStore(dir["store"], 10, 10);
        return dir["store"];
    }

    [Fact]
    public void TorchvisionsLayoutImportsIntoOwtWithItsNormalisation()
    {
        using var dir = new TestData.TempDir();
        using var source = new AlexNetModel(Variants.Get(Variants.Owt, classes: 1000), seed: 5);
        Dictionary<string, Tensor> sd = source.state_dict();
        PyTorchPickler.PickleStateDict(dir["owt.pth"], sd);
        Assert.Equal(0, App.Run(new[] { "import", dir["owt.pth"], "-m", "owt", "-o", dir["owt.ckpt"] }));
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(dir["owt.ckpt"]);
        using (model)
        {
            foreach ((string key, Tensor t) in model.state_dict())
            {
                Assert.True(t.eq(sd[key]).all().item<bool>(), key);
            }
            Assert.Equal(InputNormalization.Imagenet, state.Options.Normalization);
            Assert.Equal(256, state.StoreHeight);
            Assert.Equal(224, state.Architecture.InputSize);
            Assert.Equal(1000, state.ClassNames.Length);
            Assert.Equal("tench, Tinca tinca", state.ClassNames[0]);   // ILSVRC-2012's id-sorted order, torchvision's
        }
    }

    [Fact]
    public void LegacyAndMaliciousFilesAreRefusedWithNothingRunOrWritten()
    {
        const string marker = "/tmp/alexnet-fixture-was-executed";
        File.Delete(marker);
        var legacy = Assert.Throws<InvalidDataException>(() => PyTorchWeights.Read(Fixture("legacy.pth")));
        Assert.Contains("legacy", legacy.Message);
        var evil = Assert.Throws<InvalidDataException>(() => PyTorchWeights.Read(Fixture("malicious.pth")));
        Assert.Contains("malicious.pth", evil.Message);
        // what the file asks for, not the unpickler's internals
        Assert.Contains("would call posix.system", evil.Message);
        Assert.DoesNotContain("IObjectConstructor", evil.Message);
        Assert.False(File.Exists(marker));

        using var dir = new TestData.TempDir();
        File.WriteAllText(dir["text.pth"], "not weights at all");
        foreach (string bad in new[] { Fixture("legacy.pth"), Fixture("malicious.pth"),
            dir["text.pth"], dir["missing.pth"] })
        {
            Assert.Equal(2, App.Run(new[] { "import", bad, "-m", "small", "-o", dir["out.ckpt"] }));
            Assert.False(File.Exists(dir["out.ckpt"]));
        }
        Assert.False(File.Exists(marker));
    }

    [Fact]
    public void ADamagedFileSaysWhatIsMissingOrWhichTensorIsOutOfRange()
    {
        using var dir = new TestData.TempDir();
        // A torch.save archive that lost a tensor's data record.
        File.Copy(Fixture("small.pth"), dir["cut.pth"]);
        using (var zip = System.IO.Compression.ZipFile.Open(dir["cut.pth"],
            System.IO.Compression.ZipArchiveMode.Update))
        {
            zip.Entries.First(e => e.FullName.EndsWith("/data/1", StringComparison.Ordinal)).Delete();
        }
        var cut = Assert.Throws<InvalidDataException>(() => PyTorchWeights.Read(dir["cut.pth"]));
        Assert.Contains("lacks the data record", cut.Message);
        Assert.DoesNotContain("torch.save(", cut.Message);   // re-saving is not the fix for a damaged copy

        // A .safetensors whose last tensor's range runs past the end of the file.
        byte[] file = File.ReadAllBytes(Fixture("small.safetensors"));
        int headerBytes = (int)BitConverter.ToUInt64(file);
        var header = System.Text.Json.Nodes.JsonNode.Parse(file.AsSpan(8, headerBytes))!.AsObject();
        string last = header.Where(p => p.Key != "__metadata__").OrderBy(p =>
            (long)p.Value!["data_offsets"]![1]!).Last().Key;
        header[last]!["data_offsets"]![1] = (long)header[last]!["data_offsets"]![1]! + 4096;
        byte[] json = System.Text.Encoding.UTF8.GetBytes(header.ToJsonString());
        using (FileStream f = File.Create(dir["long.safetensors"]))
        {
            f.Write(BitConverter.GetBytes((ulong)json.Length));
            f.Write(json);
            f.Write(file.AsSpan(8 + headerBytes));
        }
        var outside = Assert.Throws<InvalidDataException>(() => PyTorchWeights.Read(dir["long.safetensors"]));
        Assert.Contains($"tensor {last}'s bytes", outside.Message);
    }

    [Fact]
    public void WrongShapesKeysAndTypesAreNamedAndNothingIsCopied()
    {
        using var dir = new TestData.TempDir();
        Dictionary<string, Tensor> sd = PyTorchWeights.Read(Fixture("small.pth"));
        using var model = new AlexNetModel(Variants.Get(Variants.Small, 10, 1, 32), seed: 1);
        using Tensor before = model.state_dict()["features.0.weight"].clone();

        var shapes = new Dictionary<string, Tensor>(sd) { ["classifier.6.weight"] = zeros(3, 512) };
        var e = Assert.Throws<InvalidDataException>(() => PyTorchWeights.LoadInto(model, shapes, "x.pth"));
        Assert.Contains("classifier.6.weight is [3×512]", e.Message);

        var keys = new Dictionary<string, Tensor>(sd) { ["features.99.weight"] = zeros(1) };
        keys.Remove("features.4.bias");
        e = Assert.Throws<InvalidDataException>(() => PyTorchWeights.LoadInto(model, keys, "x.pth"));
        Assert.Contains("missing keys: features.4.bias", e.Message);
        Assert.Contains("unexpected keys: features.99.weight", e.Message);

        var types = new Dictionary<string, Tensor>(sd)
        {
            ["features.0.bias"] = sd["features.0.bias"].to(ScalarType.Float64),
        };
        e = Assert.Throws<InvalidDataException>(() => PyTorchWeights.LoadInto(model, types, "x.pth"));
        Assert.Contains("features.0.bias is Float64", e.Message);

        // every check before any copy
        Assert.True(model.state_dict()["features.0.weight"].eq(before).all().item<bool>());

        // The same through the file format and the command: a shape error writes no checkpoint.
        PyTorchPickler.PickleStateDict(dir["wrong.pth"], shapes);
        Assert.Equal(2, App.Run(new[] { "import", dir["wrong.pth"], "-m", "small", "-o", dir["out.ckpt"], "--normalize",
            "mean-image", "--mean-from", WriteZeroMeanStore(dir) }));
        Assert.False(File.Exists(dir["out.ckpt"]));
        Assert.Equal(2, App.Run(new[] { "import", Fixture("small.pth"), "-m", "owt", "-o", dir["out.ckpt"] }));
        Assert.False(File.Exists(dir["out.ckpt"]));
    }
}
