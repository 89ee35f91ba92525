using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Inference;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using AlexNet.Tests.Cli;
using AlexNet.Training;
using Xunit;

namespace AlexNet.Tests.Inference;

/// <summary>`alexnet quantize` and --precision int8, end to end, on the CPU's own ISA and on oneDNN's AVX2
/// path.</summary>
public class QuantizeTests
{
    private static void SkipUnlessAvailable() =>
        Skip.If(OneDnnNet.Unavailable is not null, $"oneDNN is not used here: {OneDnnNet.Unavailable}");

    /// <summary>A small net on 4 synthetic classes, trained a few steps so that its classes differ, saved.</summary>
    private static string Trained(TestData.TempDir dir, TestData.Stores stores)
    {
        var options = new TrainOptions
        {
            Model = Variants.Small,
            Epochs = 3,
            BatchSize = 16,
            Seed = 3,
            LogEvery = 1000,
            InputScale = 0.0125f,
        };
        Trainer.Fit(options, new MachineOptions(2), stores.Train, stores.Val, dir["run"],
            resume: false, new SilentProgress());
        return Path.Combine(dir["run"], "last.ckpt");
    }

    [SkippableFact]
    public void QuantizeCalibratesEveryLayerAndInt8ClassifiesAsFloat32Does()
    {
        SkipUnlessAvailable();
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, train: 128, val: 64);
        string checkpoint = Trained(dir, stores);

        (int code, string text) = CliCapture.Run("quantize", "-c", checkpoint, "-d", dir["train"], "-o", dir["q.ckpt"],
            "--calibration-images", "48");
        Assert.True(code == 0, text);
        Assert.Contains("int8 calibration on 48 images", text);
        Int8Quantization q = Checkpoint.ReadState(dir["q.ckpt"]).ModelCard.Int8!;
        Assert.Equal(new[] { "conv1", "conv1.out", "conv2", "conv2.out", "conv3", "conv4", "conv5", "fc6", "fc7",
            "fc8" }, q.InputRanges.Keys.Order().ToArray());
        Assert.All(q.InputRanges.Values, r => Assert.True(r > 0 && float.IsFinite(r)));

        using Classifier fp32 = Classifier.Load(dir["q.ckpt"]);
        using Classifier int8 = Classifier.Load(dir["q.ckpt"], Precision.Int8);
        Assert.Equal(Precision.Fp32, fp32.Model.Precision);
        Assert.Equal(Precision.Int8, int8.Model.Precision);
        byte[][] records = Enumerable.Range(0, stores.Val.Count).Select(i => stores.Val.Record(i).ToArray()).ToArray();
        float[] p32 = fp32.Probabilities(records, Evaluator.TenViews),
            p8 = int8.Probabilities(records, Evaluator.TenViews);
        int classes = fp32.Card.Classes, agree = 0;
        for (int i = 0; i < records.Length; i++)
        {
            agree += Argmax(p32.AsSpan(i * classes, classes)) == Argmax(p8.AsSpan(i * classes, classes)) ? 1 : 0;
        }
        double gap = p32.Zip(p8, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(agree >= records.Length - 2, $"int8's top-1 agrees with float32's on {agree} of {records.Length}");
        Assert.True(gap is > 0 and < 0.05, $"largest probability difference {gap}");   // > 0: int8 really ran
    }

    [SkippableFact]
    public void Int8IsRefusedForACheckpointNotQuantizedAndQuantizeWillNotOverwriteItsInput()
    {
        SkipUnlessAvailable();
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, train: 32, val: 8);
        Architecture arch = Variants.Get(Variants.Small, 4, 1);
        using (var model = new AlexNetModel(arch, seed: 1))
        {
            Checkpoint.Save(dir["c.ckpt"], Checkpoint.WeightsOnly(new TrainOptions
            {
                Model = Variants.Small,
            }, arch, new[] { "a", "b", "c", "d" }, stores.Train.Mean, 28), model, velocity: null);
        }
        CliCapture.Refuses(2, new[] { "eval", "-c", dir["c.ckpt"], "-d", dir["val"], "--precision", "int8" },
            $"{dir["c.ckpt"]} is not quantized", "alexnet quantize -c");
        CliCapture.Refuses(2, new[] { "quantize", "-c", dir["c.ckpt"], "-d", dir["train"], "-o",
            dir["c.ckpt"] }, "is the checkpoint itself");
        CliCapture.Refuses(2, new[] { "quantize", "-c", dir["c.ckpt"], "-d", dir["train"], "-o", dir["q.ckpt"],
            "--calibration-images", "0" }, "--calibration-images must be at least 1");
        CliCapture.Refuses(2, new[] { "train", "-d", dir["train"], "--val", dir["val"], "-m", "small", "--precision",
            "int8", "-o", dir["run"] }, "--precision int8 is for inference");
        Assert.False(File.Exists(dir["q.ckpt"]));
    }

    /// <summary>
    /// A CPU without AVX-512 gets oneDNN's AVX2 int8 kernels (no VNNI: u8·s8 pairs through vpmaddubsw, whose weights
    /// oneDNN halves to avoid int16 saturation): the same checkpoint evaluated in a process capped with
    /// ONEDNN_MAX_CPU_ISA=AVX2 says it ran there and scores within one image of this process.
    /// </summary>
    [SkippableFact]
    public void OnAnAvx2CpuInt8RunsOneDnnsAvx2KernelsToTheSameScore()
    {
        SkipUnlessAvailable();
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, train: 128, val: 64);
        string checkpoint = Trained(dir, stores);
        Assert.Equal(0, CliCapture.Run("quantize", "-c", checkpoint, "-d", dir["train"], "-o", dir["q.ckpt"],
            "--calibration-images", "48").Code);
        (int here, string hereText) = CliCapture.Run("eval", "-c", dir["q.ckpt"], "-d", dir["val"], "--views", "centre",
            "--precision", "int8", "--json", dir["here.json"]);
        Assert.True(here == 0, hereText);

        var start = new ProcessStartInfo("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "alexnet.dll")}\" " +
            $"eval -c \"{dir["q.ckpt"]}\" -d \"{dir["val"]}\" --views centre --precision int8 --json " +
            $"\"{dir["avx2.json"]}\"")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["ONEDNN_MAX_CPU_ISA"] = "AVX2";
        using Process p = Process.Start(start)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(120_000) && p.ExitCode == 0, output);
        Assert.Contains("int8 on avx2", output.Replace("\n", "", StringComparison.Ordinal));
        if (!Avx2Only)
        {
            Assert.DoesNotContain("int8 on avx2", hereText);
        }
        double Top1(string file) =>
            JsonDocument.Parse(File.ReadAllText(file)).RootElement[0].GetProperty("top1Error").GetDouble();
        Assert.True(Math.Abs(Top1(dir["here.json"]) - Top1(dir["avx2.json"])) <= 1.0 / 64 + 1e-9,
            $"{Top1(dir["here.json"])} here, {Top1(dir["avx2.json"])} on AVX2");
    }

    /// <summary>This machine itself has no AVX-512 (then both runs are the AVX2 path, and the test still compares
    /// them).</summary>
    private static bool Avx2Only => !System.Runtime.Intrinsics.X86.Avx512F.IsSupported;

    private static int Argmax(ReadOnlySpan<float> p)
    {
        int best = 0;
        for (int i = 1; i < p.Length; i++)
        {
            best = p[i] > p[best] ? i : best;
        }
        return best;
    }
}
