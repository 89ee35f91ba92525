using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net.Http;
using System.Threading.Tasks;
using AlexNet.Inference;
using AlexNet.Serving;
using Xunit;
using Xunit.Abstractions;

namespace AlexNet.Tests.Serving;

/// <summary>Runs alone: the load test reads the test process's RSS, which tests running beside it would move.</summary>
[CollectionDefinition("alone", DisableParallelization = true)]
public sealed class AloneCollection;

/// <summary>The server on a real loopback socket: a bounded load, and a stop with requests in flight.</summary>
[Collection("alone")]
public class ServeUnderLoadTests(ITestOutputHelper output)
{
    /// <summary>A seeded `small` net on 28-px gray records, as a checkpoint in <paramref name="dir"/>.</summary>
    internal static string SmallCheckpoint(TestData.TempDir dir, string name = "small.ckpt")
    {
        TestData.WriteSyntheticStore(dir["store"], 60, 10);
        using var store = AlexNet.Data.ImageStore.Open(dir["store"]);
        AlexNet.Model.Architecture arch = AlexNet.Model.Variants.Get(AlexNet.Model.Variants.Small, classes: 10,
            inputChannels: 1, inputSize: 32);
        using var model = new AlexNet.Model.AlexNetModel(arch, seed: 3);
        AlexNet.Training.Checkpoint.Save(dir[name],
            AlexNet.Training.Checkpoint.WeightsOnly(new AlexNet.Training.TrainOptions
            {
                Model = arch.Variant,
            }, arch,
            store.Manifest.Classes.Select(c => c.Name).ToArray(), store.Mean, 28), model, velocity: null);
        return dir[name];
    }

    private static long Rss()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
            System.Globalization.CultureInfo.InvariantCulture) * 1024;
    }

    /// <summary>
    /// 2,000 requests from 32 clients: no errors, every answer the single-image prediction, memory flat after the first
    /// 500.
    /// </summary>
    [Fact]
    public async Task TwoThousandRequestsFromThirtyTwoClientsAllRightWithFlatMemory()
    {
        using var dir = new TestData.TempDir();
        string ckpt = SmallCheckpoint(dir);
        byte[] image = ServedNet.Photo;
        (int, double)[] expected;
        using (Classifier net = Classifier.Load(ckpt))
        {
            expected = net.Predict(new[] { net.Decode(image) }, new[] { "x" }, 5,
                AlexNet.Evaluation.Evaluator.Views(false))[0].Top.Select(t => (t.Index, t.Probability)).ToArray();
        }
        await using Server server = Server.Create(new ServeOptions(ckpt,
            Urls: "http://127.0.0.1:0", MaxBatch: 32, MaxWaitMs: 5));
        string url = (await server.StartAsync())[0];
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 64 })
        {
            BaseAddress = new Uri(url),
        };
        long at500 = 0;
        LoadResult r = await LoadTest.Run(http, image, "?top=5&views=centre", clients: 32, requests: 2000, expected,
            onAnswered: n =>
            {
                if (n == 500)
                {
                    at500 = Rss();
                }
            });
        long after = Rss();
        output.WriteLine(
            $"{r.Describe()}; RSS {at500 / 1e6:F0} MB at 500, {after / 1e6:F0} MB at 2000; mean " +
            $"batch {server.Metrics.BatchSize.Sum / server.Metrics.BatchSize.Count:F1}");
        Assert.Equal(0, r.Errors);
        Assert.Equal(0, r.Wrong);
        Assert.True(after <= 1.05 * at500,
            $"RSS grew from {at500 / 1e6:F0} MB at 500 requests to {after / 1e6:F0} MB at 2000");
        Assert.True(server.Metrics.BatchSize.Sum / server.Metrics.BatchSize.Count > 1.5, "32 clients were not batched");
    }

    /// <summary>
    /// A JPEG of noise, width×height: slow to decode, quick to make (TestData.Encode sets pixels one by one).
    /// </summary>
    private static byte[] Noise(int width, int height)
    {
        using var bitmap = new SkiaSharp.SKBitmap(new SkiaSharp.SKImageInfo(width, height,
            SkiaSharp.SKColorType.Rgba8888, SkiaSharp.SKAlphaType.Opaque));
        new Random(5).NextBytes(bitmap.GetPixelSpan());
        using SkiaSharp.SKData data = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Jpeg, 90);
        return data.ToArray();
    }

    /// <summary> A stop (what Ctrl-C or SIGTERM asks of the host) while requests are in flight: each accepted request
    /// is answered, then the server is gone. (The CLI's exit code 0 on SIGTERM was checked by hand: docs/serving.md.)
    /// </summary>
    [Fact]
    public async Task AStopDrainsInFlightRequests()
    {
        using var dir = new TestData.TempDir();
        string ckpt = SmallCheckpoint(dir);
        Server server = Server.Create(new ServeOptions(ckpt, Urls: "http://127.0.0.1:0", MaxBatch: 4, MaxWaitMs: 5));
        string url = (await server.StartAsync())[0];
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromSeconds(60) };
        byte[] big = Noise(1600, 1200);
        Task<HttpResponseMessage>[] inFlight = Enumerable.Range(0,
            12).Select(_ => http.PostAsync("/api/predict?views=ten", new ByteArrayContent(big))).ToArray();
        while (server.Metrics.QueueDepth.Value == 0 && server.Metrics.BatchSize.Count == 0)
        {
            await Task.Delay(1);   // until the first image reaches the net
        }
        Task stop = server.StopAsync();
        HttpResponseMessage[] answers = await Task.WhenAll(inFlight);
        await stop.WaitAsync(TimeSpan.FromSeconds(60));
        await server.DisposeAsync();
        Assert.All(answers, a => Assert.Equal(System.Net.HttpStatusCode.OK, a.StatusCode));
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync("/healthz"));
    }
}
