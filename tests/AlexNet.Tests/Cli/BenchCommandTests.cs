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
        var r = new BenchResult("paper", "fused", 64, 2, TrainImagesPerSecond: 20, InferImagesPerSecond: 60, 3200, 1066, 0, macs, Conv1MultiplyAdds: conv1);
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
        AlexNet.Tests.Cli.CliCapture.Refuses(2, new[] { "bench", "--peer", "-m", "small", "--classes", "10", "--channels", "1", "-b", "8", "--threads", "1",
            "--steps", "1", "--rounds", "1", "--peer-python", "/bin/sh", "--peer-script", dir["peer.sh"] }, dir["peer.sh"], "printed no PeerOutput result", "train_ips");
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
        int code = App.Run(new[] { "bench", "--peer", "-m", "small", "--classes", "10", "--channels", "1", "-b", "8", "--threads", "1",
            "--steps", "1", "--rounds", "2", "--peer-python", "/bin/sh", "--peer-script", dir["peer.sh"], "--json", dir["out.json"] });
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
        Assert.Equal(0, App.Run(new[] { "bench", "-m", "small", "--classes", "10", "--channels", "1", "-b", "8", "--threads", "1", "--steps", "2",
            "--json", dir["bench.json"] }));
        using var doc = JsonDocument.Parse(File.ReadAllText(dir["bench.json"]));
        JsonElement r = doc.RootElement;
        Assert.Equal("small", r.GetProperty("model").GetString());
        Assert.Equal(ModelSummary.Of(Variants.Get(Variants.Small, 10, 1)).MultiplyAdds, r.GetProperty("multiplyAddsPerImage").GetInt64());
        Assert.True(r.GetProperty("trainImagesPerSecond").GetDouble() > 0 && r.GetProperty("matmulGflops").GetDouble() > 0);
        Assert.Equal(2.0 * (3 * r.GetProperty("multiplyAddsPerImage").GetInt64() - r.GetProperty("conv1MultiplyAdds").GetInt64())
            * r.GetProperty("trainImagesPerSecond").GetDouble() / 1e9, r.GetProperty("trainGflops").GetDouble(), 6);
        Assert.True(r.GetProperty("conv1MultiplyAdds").GetInt64() > 0 && r.GetProperty("peakGflops").GetDouble() > r.GetProperty("matmulGflops").GetDouble() / 4);
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
        Assert.Equal(new[] { "conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8" }, rows.Select(r => r.Layer).Where(l => !l.StartsWith(' ')));
        Assert.All(rows, r => Assert.True(r.ForwardMs > 0 && r.BackwardMs > 0, r.Layer));
    }

    [Fact]
    public void AMissingOrFailingPeerIsAClearError()
    {
        using var dir = new TestData.TempDir();
        string[] args = { "bench", "--peer", "-m", "small", "--classes", "10", "--channels", "1", "-b", "4", "--threads", "1", "--steps", "1", "--rounds", "1" };
        Assert.Equal(2, App.Run([.. args, "--peer-python", "/bin/sh", "--peer-script", dir["nowhere.sh"]]));
        File.WriteAllText(dir["broken.sh"], "echo \"ModuleNotFoundError: No module named 'torch'\" >&2; exit 1\n");
        Assert.Equal(2, App.Run([.. args, "--peer-python", "/bin/sh", "--peer-script", dir["broken.sh"]]));
        Assert.Equal(2, App.Run([.. args, "--peer-python", dir["no-such-python"], "--peer-script", dir["broken.sh"]]));
        Assert.Equal(2, App.Run([.. args, "--peer-python", "/bin/sh", "--peer-script", dir["broken.sh"], "--models", "small,nonet"]));
    }
}
