using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Threading.Tasks;
using AlexNet.Inference;
using AlexNet.Serving;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Hosting;
using SkiaSharp;
using Xunit;

namespace AlexNet.Tests.Serving;

/// <summary>
/// One served net for the API tests: a `small` net (seeded, untrained), a synthetic 10-class store as its neighbours, a
/// run to stream.
/// </summary>
public sealed class ServedNet : IAsyncLifetime
{
    private readonly TestData.TempDir _dir = new();

    /// <summary>A path in the fixture's temporary folder.</summary>
    public string this[string name] => _dir[name];
    public Server Server { get; private set; } = null!;
    public ServerFactory Factory { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;
    public Classifier Reference { get; private set; } = null!;
    public string Checkpoint => _dir["small.ckpt"];

    /// <summary>A 300×200 JPEG with a gradient and a bar: something to classify that needs no package.</summary>
    public static readonly byte[] Photo = TestData.Encode(300, 200,
        (x, y) => new SKColor((byte)x, (byte)(y + 40), (byte)(x ^ y)), SKEncodedImageFormat.Jpeg);

    public Task InitializeAsync()
    {
        TestData.WriteSyntheticStore(_dir["store"], 120, 10);
        using (var store = AlexNet.Data.ImageStore.Open(_dir["store"]))
        {
            AlexNet.Model.Architecture arch = AlexNet.Model.Variants.Get(AlexNet.Model.Variants.Small, classes: 10,
                inputChannels: 1, inputSize: 32);
            using var model = new AlexNet.Model.AlexNetModel(arch, seed: 3);
            AlexNet.Training.Checkpoint.Save(Checkpoint,
                AlexNet.Training.Checkpoint.WeightsOnly(new AlexNet.Training.TrainOptions
                {
                    Model = arch.Variant,
                }, arch,
                store.Manifest.Classes.Select(c => c.Name).ToArray(), store.Mean, 28), model, velocity: null);
        }
        Directory.CreateDirectory(_dir["run-a"]);
        File.WriteAllText(_dir["run-a/metrics.jsonl"],
            "{\"kind\":\"step\",\"step\":1,\"loss\":2.3}\n{\"kind\":\"step\",\"step\":2,\"loss\":2.1}\n");
        Server = Server.Create(new ServeOptions(Checkpoint, Store: _dir["store"], Run: _dir["run-a"], MaxBatch: 16,
            MaxWaitMs: 20, MaxUploadMb: 1));
        Factory = new ServerFactory(Server);
        Client = Factory.CreateClient();   // builds and starts the host in memory
        Reference = Classifier.Load(Checkpoint);
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        Reference.Dispose();
        await Factory.DisposeAsync();
        await Server.DisposeAsync();
        _dir.Dispose();
    }
}

/// <summary>
/// ASP.NET Core's test factory over `serve`'s host: the tool's entry point names the application, the server's own
/// host builder (what `alexnet serve` starts on Kestrel) is the one run in memory.
/// </summary>
public sealed class ServerFactory(Server server) : WebApplicationFactory<Program>
{
    protected override IHostBuilder CreateHostBuilder() => server.CreateHostBuilder();

    // The page and API are embedded in the assembly: no content root of files to find.
    protected override void ConfigureWebHost(IWebHostBuilder builder) =>
        builder.UseContentRoot(AppContext.BaseDirectory);
}

public class ServeApiTests(ServedNet served) : IClassFixture<ServedNet>
{
    private readonly HttpClient _client = served.Client;

    private static MultipartFormDataContent Form(byte[] image, string name = "photo.jpg", string field = "image")
    {
        var form = new MultipartFormDataContent();
        var part = new ByteArrayContent(image);
        part.Headers.ContentType = new MediaTypeHeaderValue("image/jpeg");
        form.Add(part, field, name);
        return form;
    }

    private static ByteArrayContent Raw(byte[] body, string type)
    {
        var c = new ByteArrayContent(body);
        c.Headers.ContentType = MediaTypeHeaderValue.Parse(type);
        return c;
    }

    private static async Task<JsonElement> Json(HttpResponseMessage r) =>
        JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;

    /// <summary>
    /// The served answer is the library's single-image prediction of the same bytes: same classes, same probabilities.
    /// </summary>
    [Fact]
    public async Task PredictGivesTheLibrarysTopFiveWithTheCard()
    {
        var expected =
            served.Reference.Predict(new[] { served.Reference.Decode(ServedNet.Photo) }, new[] { "p" }, 5)[0];
        foreach (HttpContent body in new HttpContent[] { Form(ServedNet.Photo), Raw(ServedNet.Photo, "image/jpeg") })
        {
            HttpResponseMessage r = await _client.PostAsync("/api/predict?top=5&views=ten", body);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            JsonElement j = await Json(r);
            JsonElement[] top = j.GetProperty("top").EnumerateArray().ToArray();
            Assert.Equal(expected.Top.Select(t => t.Index), top.Select(t => t.GetProperty("index").GetInt32()));
            Assert.Equal(expected.Top.Select(t => t.Name), top.Select(t => t.GetProperty("name").GetString()));
            Assert.All(expected.Top.Zip(top),
                p => Assert.Equal(p.First.Probability, p.Second.GetProperty("probability").GetDouble(), 5));
            Assert.Equal("small", j.GetProperty("model").GetProperty("variant").GetString());
            Assert.Equal(28, j.GetProperty("model").GetProperty("preprocessing").GetProperty("recordSize").GetInt32());
            Assert.Equal("ten", j.GetProperty("views").GetString());
        }
        JsonElement centre = await Json(await _client.PostAsync("/api/predict?top=2&views=centre",
            Raw(ServedNet.Photo, "application/octet-stream")));
        Assert.Equal(2, centre.GetProperty("top").GetArrayLength());
        Assert.Equal("centre", centre.GetProperty("views").GetString());
    }

    public static IEnumerable<object[]> BadRequests()
    {
        byte[] jpeg = ServedNet.Photo;
        yield return new object[] { "empty body", "/api/predict",
            Raw(Array.Empty<byte>(), "image/jpeg"), 400, "empty" };
        yield return new object[] { "a text file", "/api/predict",
            Raw(Encoding.UTF8.GetBytes("just words"), "text/plain"), 415, "not an image" };
        yield return new object[] { "text sent as an image", "/api/predict", Raw(
            Encoding.UTF8.GetBytes("just words, long enough to look at"), "image/png"), 400, "not a decodable image" };
        yield return new object[] { "a truncated JPEG", "/api/predict",
            Raw(jpeg[..(jpeg.Length / 3)], "image/jpeg"), 400, "truncated" };
        yield return new object[] { "a 100-megapixel declaration", "/api/predict",
            Raw(TestData.PngDeclaring(10_000, 10_000), "image/png"), 413, "megapixel" };
        yield return new object[] { "a decompression bomb", "/api/neighbors",
            Raw(TestData.PngDeclaring(60_000, 60_000), "image/png"), 413, "megapixel" };
        yield return new object[] { "a body over the limit", "/api/predict",
            Raw(new byte[(1 << 20) + 100_000], "image/jpeg"), 413, "--max-upload-mb" };
        yield return new object[] { "a wrong content type", "/api/predict",
            Raw(jpeg, "application/json"), 415, "multipart/form-data" };
        yield return new object[] { "a form without a file", "/api/predict",
            new FormUrlEncodedContent(new Dictionary<string, string> { ["a"] = "b" }), 400, "field named `image`" };
        yield return new object[] { "top=0", "/api/predict?top=0", Raw(jpeg, "image/jpeg"), 400, "top=0" };
        yield return new object[] { "top=abc", "/api/predict?top=abc", Raw(jpeg, "image/jpeg"), 400, "top" };
        yield return new object[] { "views=sideways", "/api/predict?views=sideways",
            Raw(jpeg, "image/jpeg"), 400, "centre, ten or flip" };
        yield return new object[] { "k=0", "/api/neighbors?k=0", Raw(jpeg, "image/jpeg"), 400, "k=0" };
        yield return new object[] { "k=10⁶", "/api/neighbors?k=1000000", Raw(jpeg, "image/jpeg"), 400, "k=1000000" };
    }

    /// <summary>
    /// Each bad input gets its 4xx and a JSON message naming what was wrong, and the next request is served.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task BadInputGetsA4xxWithAMessageAndTheServerGoesOn(string what, string url,
        HttpContent body, int status, string message)
    {
        HttpResponseMessage r = await _client.PostAsync(url, body);
        Assert.True(status == (int)r.StatusCode, $"{what}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        Assert.Contains(message, (await Json(r)).GetProperty("error").GetString());
        Assert.Equal(HttpStatusCode.OK,
            (await _client.PostAsync("/api/predict", Raw(ServedNet.Photo, "image/jpeg"))).StatusCode);
    }

    [Theory]
    [InlineData("/api/runs/..%2F..%2Fetc/events", 400, "not a name")]
    [InlineData("/api/runs/..%2Frun-a/events", 400, "not a name")]
    [InlineData("/api/runs/other/events", 404, "run-a")]
    [InlineData("/api/images/120", 404, "0 to 119")]
    [InlineData("/api/images/..%2F..%2Fetc%2Fpasswd", 404, "no image")]
    [InlineData("/api/nothing", 404, "openapi")]
    public async Task NamesFromRequestsAreNeverPaths(string url, int status, string message)
    {
        HttpResponseMessage r = await _client.GetAsync(url);
        Assert.Equal(status, (int)r.StatusCode);
        Assert.Contains(message, (await Json(r)).GetProperty("error").GetString());
    }

    /// <summary>
    /// Figure 4 (right): the neighbours are the exact fc7 search over the store, and their pictures load by index.
    /// </summary>
    [Fact]
    public async Task NeighboursAreTheExactFc7SearchAndTheirPicturesLoad()
    {
        HttpResponseMessage r = await _client.PostAsync("/api/neighbors?k=3", Form(ServedNet.Photo));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        JsonElement[] hits = (await Json(r)).GetProperty("neighbours").EnumerateArray().ToArray();
        Assert.Equal(3, hits.Length);
        using var store = AlexNet.Data.ImageStore.Open(served["store"]);
        float[] q = served.Reference.Features(new[] { served.Reference.Decode(ServedNet.Photo) });
        float[] all = served.Reference.Features(Enumerable.Range(0,
            store.Count).Select(i => store.Record(i).ToArray()).ToArray());
        int d = q.Length;
        int[] exact = Enumerable.Range(0, store.Count)
            .OrderBy(i => Enumerable.Range(0,
            d).Sum(j => (double)(all[i * d + j] - q[j]) * (all[i * d + j] - q[j]))).Take(3).ToArray();
        Assert.Equal(exact, hits.Select(h => h.GetProperty("index").GetInt32()));
        Assert.Equal($"class{store.Labels[exact[0]]}", hits[0].GetProperty("name").GetString());
        HttpResponseMessage picture = await _client.GetAsync(hits[0].GetProperty("image").GetString());
        Assert.Equal("image/png", picture.Content.Headers.ContentType!.MediaType);
        using SKBitmap png = SKBitmap.Decode(await picture.Content.ReadAsByteArrayAsync());
        Assert.Equal(28 * 4, png.Width);   // Fashion-MNIST-sized records drawn 4× on the page
    }

    [Fact]
    public async Task TheCardKernelsHealthMetricsOpenApiAndPageAreServed()
    {
        JsonElement model = await Json(await _client.GetAsync("/api/model"));
        Assert.Equal("small", model.GetProperty("card").GetProperty("architecture").GetProperty("variant").GetString());
        Assert.Equal("class2", model.GetProperty("card").GetProperty("classNames")[2].GetString());
        Assert.True(model.GetProperty("neighbours").GetBoolean());
        Assert.Equal("run-a", model.GetProperty("run").GetString());

        using SKBitmap kernels = SKBitmap.Decode(await _client.GetByteArrayAsync("/api/kernels.png"));
        Assert.True(kernels.Width > 100 && kernels.Height > 10);

        Assert.Equal("ok", await _client.GetStringAsync("/healthz"));
        Assert.Equal("ready", await _client.GetStringAsync("/readyz"));

        await _client.PostAsync("/api/predict", Raw(ServedNet.Photo, "image/jpeg"));
        await _client.PostAsync("/api/predict", Raw(Array.Empty<byte>(), "image/jpeg"));
        string metrics = await _client.GetStringAsync("/metrics");
        Assert.Contains("alexnet_requests_total{endpoint=\"/api/predict\",code=\"200\"}", metrics);
        Assert.Contains("alexnet_errors_total{endpoint=\"/api/predict\"}", metrics);
        Assert.Contains("alexnet_batch_size_bucket", metrics);
        Assert.Contains("alexnet_request_duration_seconds_bucket{endpoint=\"/api/predict\"", metrics);

        JsonElement api = await Json(await _client.GetAsync("/openapi/v1.json"));
        Assert.Equal("alexnet | v1", api.GetProperty("info").GetProperty("title").GetString());
        JsonElement paths = api.GetProperty("paths");
        foreach (string p in new[] { "/api/predict", "/api/neighbors", "/api/model", "/api/kernels.png", "/metrics",
            "/healthz", "/readyz", "/api/runs/{name}/events" })
        {
            Assert.True(paths.TryGetProperty(p, out _), p);
        }

        string page = await _client.GetStringAsync("/");
        Assert.Contains("Drop an image", page);
        Assert.Contains("EventSource", await _client.GetStringAsync("/app.js"));
    }

    /// <summary>
    /// Concurrent requests are gathered into batches, and each caller still gets its own image's answer.
    /// </summary>
    [Fact]
    public async Task ConcurrentRequestsAreBatchedAndEachGetsItsOwnAnswer()
    {
        byte[][] images = Enumerable.Range(0, 12).Select(i => TestData.Encode(40 + i, 40,
            (x, y) => new SKColor((byte)(x * i), (byte)(y * 7), (byte)(i * 20)))).ToArray();
        int[] expected = images.Select(b => served.Reference.Predict(new[] { served.Reference.Decode(b) },
            new[] { "x" }, 1, AlexNet.Evaluation.Evaluator.Views(false))[0].Top[0].Index).ToArray();
        double[] expectedP = images.Select(b => served.Reference.Predict(new[] { served.Reference.Decode(b) },
            new[] { "x" }, 1, AlexNet.Evaluation.Evaluator.Views(false))[0].Top[0].Probability).ToArray();
        double before = served.Server.Metrics.BatchSize.Count;
        double sumBefore = served.Server.Metrics.BatchSize.Sum;
        JsonElement[] answers = await Task.WhenAll(images.Select(async b =>
            await Json(await _client.PostAsync("/api/predict?top=1&views=centre", Raw(b, "image/png")))));
        Assert.Equal(expected, answers.Select(a => a.GetProperty("top")[0].GetProperty("index").GetInt32()));
        Assert.All(expectedP.Zip(answers),
            p => Assert.Equal(p.First, p.Second.GetProperty("top")[0].GetProperty("probability").GetDouble(), 5));
        double passes = served.Server.Metrics.BatchSize.Count - before;
        Assert.Equal(12, served.Server.Metrics.BatchSize.Sum - sumBefore);
        Assert.True(passes < 12, $"12 concurrent images ran in {passes} forward passes: no batching");
    }

    /// <summary>
    /// A run's metrics.jsonl as server-sent events: the lines already there, then a line appended while the stream is
    /// open.
    /// </summary>
    [Fact]
    public async Task ARunsMetricsStreamAsServerSentEvents()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/runs/run-a/events");
        using HttpResponseMessage r = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType!.MediaType);
        using var reader = new StreamReader(await r.Content.ReadAsStreamAsync());
        async Task<string> NextData()
        {
            var read = reader.ReadLineAsync();
            while (true)
            {
                string? line = await read.WaitAsync(TimeSpan.FromSeconds(10));
                if (line!.StartsWith("data: ", StringComparison.Ordinal))
                {
                    return line[6..];
                }
                read = reader.ReadLineAsync();
            }
        }
        Assert.Contains("\"step\":1", await NextData());
        Assert.Contains("\"step\":2", await NextData());
        File.AppendAllText(served["run-a/metrics.jsonl"],
            "{\"kind\":\"epoch\",\"step\":3,\"valTop1Error\":0.5}\n{\"kind\":\"step\",\"st");   // and a torn line
        Assert.Contains("\"valTop1Error\":0.5", await NextData());
    }
}

/// <summary>
/// `serve --codes`: the neighbours are the Hamming search over §6.1's codes of the store, and the answer says so.
/// </summary>
public class ServeOnCodesTests
{
    [Fact]
    public async Task NeighboursComeFromTheCodes()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["store"], 60, 10);
        using var store = AlexNet.Data.ImageStore.Open(dir["store"]);
        AlexNet.Model.Architecture arch = AlexNet.Model.Variants.Get(AlexNet.Model.Variants.Small, classes: 10,
            inputChannels: 1, inputSize: 32);
        using (var model = new AlexNet.Model.AlexNetModel(arch, seed: 3))
        {
            AlexNet.Training.Checkpoint.Save(dir["small.ckpt"],
                AlexNet.Training.Checkpoint.WeightsOnly(new AlexNet.Training.TrainOptions
                {
                    Model = arch.Variant,
                },
                arch, store.Manifest.Classes.Select(c => c.Name).ToArray(), store.Mean, 28), model, velocity: null);
        }
        using Classifier net = Classifier.Load(dir["small.ckpt"]);
        AlexNet.Analysis.Retrieval.Extract(net.Model, store,
            AlexNet.Evaluation.TestPipeline.Augmentation(net.Card, 28, 28), "fc7", dir["fc7"], dir["small.ckpt"]);
        using var features = AlexNet.Analysis.Retrieval.Open(dir["fc7"]);
        var coder = AlexNet.Analysis.BinaryCodes.RandomProjections(features.Rows(0, 60).ToArray(),
            features.Dimensions, 128, seed: 1);
        coder.Save(dir["coder"], new AlexNet.Analysis.CoderHeader(AlexNet.Analysis.CoderHeader.FormatName, "", 0, 0, 1,
            0, "fc7", dir["fc7"], dir["store"], dir["small.ckpt"]));
        ulong[] codes = coder.Encode(features);
        AlexNet.Analysis.HammingIndex.Write(dir["codes"], codes,
            new AlexNet.Analysis.CodesHeader(AlexNet.Analysis.HammingIndex.Format, 60, 128, "lsh", dir["coder"],
            dir["fc7"], dir["store"], dir["small.ckpt"], "fc7"));

        await using Server server = Server.Create(new ServeOptions(dir["small.ckpt"], Codes: dir["codes"]));
        await using var factory = new ServerFactory(server);
        using HttpClient client = factory.CreateClient();
        var body = new ByteArrayContent(ServedNet.Photo);
        body.Headers.ContentType = new MediaTypeHeaderValue("image/jpeg");
        HttpResponseMessage r = await client.PostAsync("/api/neighbors?k=4", body);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        JsonElement answer = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("Hamming over 128-bit codes", answer.GetProperty("method").GetString());
        float[] q = net.Features(new[] { net.Decode(ServedNet.Photo) });
        var expected = new AlexNet.Analysis.HammingIndex(codes, 128).Nearest(coder.Encode(q), 4);
        Assert.Equal(expected.Select(h => (h.Index, (double)h.Distance)),
            answer.GetProperty("neighbours").EnumerateArray().Select(h => (h.GetProperty("index").GetInt32(),
            h.GetProperty("distance").GetDouble())));
        Assert.True((await Json(await client.GetAsync("/api/model"))).GetProperty("neighbours").GetBoolean());
    }

    private static async Task<JsonElement> Json(HttpResponseMessage r) =>
        JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
}
