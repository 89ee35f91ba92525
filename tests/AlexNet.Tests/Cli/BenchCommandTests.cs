using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Cli;
using AlexNet.Model;
using AlexNet.Performance;
using Xunit;

namespace AlexNet.Tests.Cli;

/// <summary>
/// `alexnet bench`: the FLOP accounting and the peer driver (with a stand-in peer, so no PyTorch is needed).
/// </summary>
public class BenchCommandTests
{
    [Fact]
    public void AchievedFlopsCountThreeForwardPassesPerTrainingStepLessConv1sInputGradient()
    {
        long macs = ModelSummary.Of(Variants.Get(Variants.Paper)).MultiplyAdds;
        // conv1: 55×55 positions × 96 kernels × 3×11×11 weights.
        const long conv1 = 55L * 55 * 96 * 3 * 11 * 11;
        var r = new BenchResult("paper", "fused", 64, 2, TrainImagesPerSecond: 20, InferImagesPerSecond: 60, 3200, 1066,
            0, macs, Conv1MultiplyAdds: conv1);
        Assert.Equal(724_406_816, macs);
        Assert.Equal(105_415_200, conv1);
        Assert.Equal(2.0 * (3L * 724_406_816 - 105_415_200) * 20 / 1e9, r.TrainGflops, 9);
        Assert.Equal(2.0 * 724_406_816 * 60 / 1e9, r.InferGflops, 9);
    }

    /// <summary>
    /// The peer's JSON is read into a typed record: a key it renamed or left out is an error naming the script, not a
    /// zero.
    /// </summary>
    [Fact]
    public void APeerThatRenamedAKeyIsRefusedNamingTheScript()
    {
        using var dir = new TestData.TempDir();
        File.WriteAllText(dir["peer.sh"], """
            echo '{"peer": "x", "blas": null, "model": "small", "batch": 8, "threads": 1, "channels_last": false, "train_step_ms": 1, "train_ips": 50.0, "infer_ms": 1, "infer_images_per_second": 200.0, "peak_rss_bytes": 1}'
            """);
        AlexNet.Tests.Cli.CliCapture.Refuses(2,
            new[] { "bench", "peer", "-m", "small", "--classes", "10", "--channels", "1", "-b", "8", "--threads", "1",
            "--steps", "1", "--rounds", "1", "--python", "/bin/sh", "--script", dir["peer.sh"] }, dir["peer.sh"],
                "printed no PeerOutput result", "train_ips");
    }

    [Fact]
    public void ThePeerDriverInterleavesRunsAndReportsRatiosAgainstThePeer()
    {
        using var dir = new TestData.TempDir();
        // A stand-in peer (a shell script, so the tests need no Python) that answers as bench/peer.py does, with fixed
        // rates, and logs each call's arguments.
        File.WriteAllText(dir["peer.sh"], $$"""
            echo "$*" >> '{{dir["calls.txt"]}}'
            echo '{"peer": "pytorch stand-in", "blas": "stand-in", "model": "small", "batch": 8, "threads": 1, "channels_last": false, "train_step_ms": 160.0, "train_images_per_second": 50.0, "infer_ms": 40.0, "infer_images_per_second": 200.0, "peak_rss_bytes": 1048576}'
            """);
        int code = App.Run(new[] { "bench", "peer", "-m", "small", "--classes", "10", "--channels",
            "1", "-b", "8", "--threads", "1",
            "--steps", "1", "--rounds", "2", "--python", "/bin/sh", "--script",
                dir["peer.sh"], "--json", dir["out.json"] });
        Assert.Equal(0, code);
        string[] calls = File.ReadAllLines(dir["calls.txt"]);
        Assert.Equal(2, calls.Length);
        Assert.Contains("--model small --batch 8 --threads 1 --steps 1 --classes 10 --channels 1", calls[0]);
        using var doc = JsonDocument.Parse(File.ReadAllText(dir["out.json"]));
        JsonElement row = doc.RootElement[0];
        Assert.Equal(50.0, row.GetProperty("peerTrain").GetDouble());
        double ours = row.GetProperty("oursTrain").GetDouble();
        Assert.True(ours > 0);
        Assert.Equal(ours / 50.0, row.GetProperty("trainRatio").GetDouble(), 9);
        Assert.Equal(row.GetProperty("oursInfer").GetDouble() / 200.0, row.GetProperty("inferRatio").GetDouble(), 9);
    }

    [Fact]
    public void APlainRunWritesItsJsonResult()
    {
        using var dir = new TestData.TempDir();
        Assert.Equal(0, App.Run(new[] { "bench", "-m", "small", "--classes", "10", "--channels", "1", "-b", "8",
            "--threads", "1", "--steps", "2",
            "--json", dir["bench.json"] }));
        using var doc = JsonDocument.Parse(File.ReadAllText(dir["bench.json"]));
        JsonElement r = doc.RootElement;
        Assert.Equal("small", r.GetProperty("model").GetString());
        Assert.Equal(ModelSummary.Of(Variants.Get(Variants.Small, 10, 1)).MultiplyAdds,
            r.GetProperty("multiplyAddsPerImage").GetInt64());
        Assert.True(r.GetProperty("trainImagesPerSecond").GetDouble() > 0
            && r.GetProperty("matmulGflops").GetDouble() > 0);
        Assert.Equal(2.0 * (3 * r.GetProperty("multiplyAddsPerImage")
            .GetInt64() - r.GetProperty("conv1MultiplyAdds").GetInt64())
            * r.GetProperty("trainImagesPerSecond").GetDouble() / 1e9, r.GetProperty("trainGflops").GetDouble(), 6);
        Assert.True(r.GetProperty("conv1MultiplyAdds").GetInt64() > 0
            && r.GetProperty("peakGflops").GetDouble() > r.GetProperty("matmulGflops").GetDouble() / 4);
    }

    [Fact]
    public void ThePeakProbeMeasuresAPlausibleRate()
    {
        PeakRate p = PeakProbe.Measure(threads: 1, seconds: 0.05);
        // One core does at least 2 FLOPs × 8 lanes per cycle at well under 1 GHz, and at most 2 FMA ports × 16 lanes ×
        // 2 at 6 GHz.
        Assert.InRange(p.Gflops, 8, 400);
        Assert.Equal(1, p.Threads);
    }

    [Fact]
    public void PerLayerTimingsCoverEveryModuleInForwardOrder()
    {
        var rows = Benchmark.PerLayer(Variants.Get(Variants.Small, 10, 1), batch: 4, threads: 1, steps: 1);
        Assert.Equal("conv1", rows[0].Layer);
        Assert.Equal("fc8", rows[^1].Layer);
        Assert.Equal(new[] { "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8" },
            rows.Select(r => r.Layer).Where(l => !l.StartsWith(' ')));
        Assert.All(rows, r => Assert.True(r.ForwardMs > 0 && r.BackwardMs > 0, r.Layer));
    }

    [Fact]
    public void AMissingOrFailingPeerIsAClearError()
    {
        using var dir = new TestData.TempDir();
        string[] args = { "bench", "peer", "-m", "small", "--classes", "10", "--channels", "1", "-b", "4", "--threads",
            "1", "--steps", "1", "--rounds", "1" };
        CliCapture.Refuses(2, [.. args, "--python", "/bin/sh", "--script", dir["nowhere.sh"]],
            "nowhere.sh' does not exist", "--script PATH");
        File.WriteAllText(dir["broken.sh"], "echo \"ModuleNotFoundError: No module named 'torch'\" >&2; exit 1\n");
        CliCapture.Refuses(2, [.. args, "--python", "/bin/sh", "--script", dir["broken.sh"]], "ModuleNotFoundError",
            "apt-get install python3-torch");
        CliCapture.Refuses(2, [.. args, "--python", dir["no-such-python"], "--script", dir["broken.sh"]],
            "no-such-python' could not be started");
        CliCapture.Refuses(2, [.. args, "--python", "/bin/sh", "--script", dir["broken.sh"], "--models",
            "small,nonet"], "Unknown model 'nonet'");
    }

    /// <summary>The modes that were flags of `bench` are sub-commands: the old flag names the new command.</summary>
    [Theory]
    [InlineData("--peer", "bench peer")]
    [InlineData("--onnx-peer", "bench onnx")]
    [InlineData("--layers", "bench layers")]
    [InlineData("--update-only", "bench update")]
    public void AModeFlagOfOldNamesItsSubCommand(string flag, string now) =>
        CliCapture.Refuses(2, new[] { "bench", "-m", "small", flag }, $"`bench {flag}` is now the sub-command `{now}`");

    /// <summary>
    /// Each part timed alone writes its typed record: the shape or net it timed, and times that are positive.
    /// </summary>
    [Fact]
    public void EachPartTimedAloneWritesItsTypedResult()
    {
        using var dir = new TestData.TempDir();
        Assert.Equal(0, App.Run(new[] { "bench", "lrn", "2x8x6x6", "--threads", "1", "--json", dir["lrn.json"] }));
        var lrn = AlexNet.Json.Read<LrnResult>(dir["lrn.json"]);
        Assert.Equal(new long[] { 2, 8, 6, 6 }, lrn.Shape);
        Assert.Equal(new[] { 1, 2 }, lrn.Kernel.Select(k => k.Threads));
        Assert.True(lrn.Fused.ForwardMs > 0 && lrn.Libtorch.BackwardMs > 0);

        Assert.Equal(0,
            App.Run(new[] { "bench", "stage", "2x8x13x13", "--threads", "1", "--json", dir["stage.json"] }));
        var stage = AlexNet.Json.Read<StageResult>(dir["stage.json"]);
        Assert.Equal(new long[] { 2, 8, 13, 13 }, stage.Shape);
        Assert.True(stage.Fused.ForwardMs > 0 && stage.Libtorch.ForwardMs > 0);

        string[] small = { "-m", "small", "--classes", "10", "--channels", "1", "--threads", "1" };
        Assert.Equal(0,
            App.Run([.. new[] { "bench", "update", "--steps", "1", "--json", dir["update.json"] }, .. small]));
        var update = AlexNet.Json.Read<UpdateResult>(dir["update.json"]);
        Assert.Equal(ModelSummary.Of(Variants.Get(Variants.Small, 10, 1)).Parameters, update.Parameters);
        Assert.True(update.FusedMs > 0 && update.LibtorchMs > 0);

        Assert.Equal(0, App.Run([.. new[] { "bench", "layers", "-b", "2", "--json", dir["layers.json"] }, .. small]));
        var layers = AlexNet.Json.Read<LayersResult>(dir["layers.json"]);
        Assert.Equal(new[] { "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8" },
            layers.Layers.Select(l => l.Layer).Where(l => !l.StartsWith(' ')));
        Assert.Equal(layers.Layers.Sum(l => l.ForwardMs), layers.ForwardMs, 9);

        CliCapture.Refuses(2, new[] { "bench", "lrn", "64x96" }, "shape 64x96", "NxCxHxW");
        CliCapture.Refuses(2, [.. new[] { "bench", "layers", "--precision", "int8" }, .. small],
            "bench onnx --precision int8");
    }
}
