// `alexnet serve`: the trained net behind ASP.NET Core's minimal APIs, and a page that shows what the paper
// shows for the user's own images: Figure 4's top-5 bars and nearest training images (§6.1), Figure 3's
// kernels, and the training curves of a run in progress. Bad input is answered with a 4xx and a JSON message;
// nothing a request says becomes a file-system path (pictures are served by record index, runs by the one
// name the server was given).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using AlexNet.Analysis;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Inference;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace AlexNet.Serving;

/// <summary>A request that cannot be served as sent: its status code and a message naming what was wrong.</summary>
public sealed class ApiException(int status, string message) : Exception(message)
{
    public int Status { get; } = status;
}

/// <summary>What a client needs of the card with every answer: the net, its classes and its preprocessing.</summary>
public sealed record CardSummary(string Variant, int Classes, string Summary, Preprocessing Preprocessing)
{
    public static CardSummary Of(ModelCard c) => new(c.Architecture.Variant, c.Classes, c.Summary, c.Preprocessing);
}

public sealed record PredictResponse(ClassScore[] Top, string Views, CardSummary Model, double Milliseconds);

public sealed record NeighbourResponse(int Rank, int Index, int Class, string Name, double Distance, string Image);

/// <param name="Method">How they were found: exact fc7, or Hamming search over binary codes (re-ranked by fc7 or
/// not).</param>
public sealed record NeighboursResponse(NeighbourResponse[] Neighbours, string Layer,
    string Method, double Milliseconds);

/// <summary>
/// GET /api/model: the card (its mean image left out: it is data, not description) and what this server offers.
/// </summary>
public sealed record ModelResponse(ModelCard Card, string Summary, string Checkpoint, bool Neighbours,
    string? Run, int MaxBatch, int MaxWaitMs);

public sealed record ErrorResponse(string Error);

public sealed class Server : IAsyncDisposable
{
    private readonly ServeOptions _options;
    private readonly Classifier _net;
    private readonly Batcher _batcher;
    private readonly DecodePool _decoders = new(Math.Max(1, Environment.ProcessorCount));
    private readonly FeatureMatrix? _features;
    private readonly HammingIndex? _codes;
    private readonly BinaryCoder? _coder;
    private readonly ImageStore? _store;
    private readonly byte[] _kernels;
    private readonly string? _runName;

    private IHost? _host;

    public ServerMetrics Metrics { get; } = new();
    public ModelCard Card => _net.Card;

    private Server(ServeOptions options, Classifier net, FeatureMatrix? features,
        (HammingIndex Index, BinaryCoder Coder)? codes,
        ImageStore? store)
    {
        (_options, _net, _features, _codes, _coder, _store) = (options, net, features,
            codes?.Index, codes?.Coder, store);
        _batcher = new Batcher(net, options.MaxBatch, options.MaxWaitMs, Metrics);
        (_kernels, _) = KernelGrid.Render(net.Model.LayerParameters("conv1").Weight,
            KernelGrid.ScaleFor(net.Card.Architecture),
            KernelGrid.TowersOf(net.Card.Architecture));
        _runName = options.Run is string run
            ? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(run))) : null;
    }

    /// <summary>
    /// The host of this server: Kestrel at --urls, its limits, the JSON conventions, the OpenAPI document, the guard
    /// and
    /// the endpoints. StartAsync builds and starts it; a test factory (Mvc.Testing's WebApplicationFactory) builds it
    /// with an in-memory server in Kestrel's place.
    /// </summary>
    public IHostBuilder CreateHostBuilder()
    {
        long limit = ((long)_options.MaxUploadMb << 20) + (64 << 10);   // multipart headers on top of the image
        return new HostBuilder()
            // the CLI prints where it listens; request logs would drown the terminal
            .ConfigureLogging(l => l.ClearProviders())
            .UseConsoleLifetime(c => c.SuppressStatusMessages = true)
            .ConfigureServices(s => s.Configure<HostOptions>(h => h.ShutdownTimeout = TimeSpan.FromSeconds(30)))
            .ConfigureWebHost(web => web
                .UseKestrel(k => k.Limits.MaxRequestBodySize = limit)
                .UseUrls(_options.Urls)
                .ConfigureServices(services =>
                {
                    services.AddRouting();
                    services.Configure<FormOptions>(f => f.MultipartBodyLengthLimit = limit);
                    services.ConfigureHttpJsonOptions(j =>
                    {
                        j.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.CamelCase;
                        j.SerializerOptions.NumberHandling =
                            System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals;
                        j.SerializerOptions.Converters.Add(
                            new System.Text.Json.Serialization.JsonStringEnumConverter());
                    });
                    // a bad ?top= gets our JSON message
                    services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(
                        r => r.ThrowOnBadRequest = true);
                    services.AddOpenApi();
                })
                .Configure(app =>
                {
                    app.Use(Guard);
                    app.UseRouting();
                    app.UseEndpoints(Map);
                })
                // after Configure, which names its caller's assembly
                .UseSetting(WebHostDefaults.ApplicationKey, "alexnet"));
    }

    /// <summary>Loads the net (and the retrieval data where given) and builds the server; StartAsync listens.</summary>
    /// <param name="message">Progress for people (the one-time fc7 extraction of --store without --features).</param>
    public static Server Create(ServeOptions options, Action<string>? message = null)
    {
        options.Validate();
        if (options.Run is string run && !Directory.Exists(run))
        {
            throw new DirectoryNotFoundException(
                $"run folder {run} does not exist: pass the --out folder of a `train`.");
        }
        Classifier net = Classifier.Load(options.Checkpoint, options.Precision);
        FeatureMatrix? features = null;
        ImageStore? store = null;
        (HammingIndex Index, BinaryCoder Coder)? codes = null;
        try
        {
            if ((options.Features ?? options.Store ?? options.Codes) is not null
                && net.Card.Architecture.Hidden.Length == 0)
            {
                throw new ArgumentException(
                    $"{net.Card.Architecture.Variant} has no hidden fully connected layer, so §6.1's retrieval by " +
                    "fc7 does not apply: serve it without --store, --features and --codes.");
            }
            if (options.Codes is string codeFile)
            {
                HammingIndex index = HammingIndex.Open(codeFile);
                (BinaryCoder coder, CoderHeader ch) = BinaryCoder.Load(index.Header!.Coder);
                int fc7 = net.Card.Architecture.Hidden[^1].Units;
                if (coder.Dimensions != fc7 || ch.Layer != "fc7" || coder.Bits != index.Bits)
                {
                    throw new ArgumentException(
                        $"{codeFile} was encoded by {index.Header.Coder}, a {ch.Dimensions}-d {ch.Layer} " +
                        $"→ {ch.Bits}-bit coder, but this net's fc7 is {fc7}-d: train and encode codes of this net's " +
                        "features.");
                }
                codes = (index, coder);
                store = ImageStore.Open(options.Store ?? index.Header.Store);
                if (index.Count != store.Count)
                {
                    throw new ArgumentException(
                        $"{codeFile} holds {index.Count} codes, the store {store.Directory} {store.Count} images: " +
                        "encode the features of this store.");
                }
            }
            string? file = options.Features ?? (options.Store is string s && codes is null
                ? FeaturesFor(net, s, message) : null);
            if (file is not null)
            {
                features = Retrieval.Open(file);
                store ??= ImageStore.Open(options.Store ?? features.Header!.Store);
                Retrieval.CheckPair(features, store);
            }
            if (store is not null && store.Channels != net.Card.Channels)
            {
                throw new ArgumentException(
                    $"the store {store.Directory} has {store.Channels} channel(s), the net {net.Card.Channels}.");
            }
            return new Server(options, net, features, codes, store);
        }
        catch
        {
            features?.Dispose();
            store?.Dispose();
            net.Dispose();
            throw;
        }
    }

    /// <summary>
    /// --store without --features: fc7 of every image of the store, written once (Retrieval.Extract) into a cache under
    /// the temporary folder named by the checkpoint's and the store's paths and times, and reused by later starts.
    /// </summary>
    private static string FeaturesFor(Classifier net, string storeDir, Action<string>? message)
    {
        string Stamp(string path) => Path.GetFullPath(path) + "@" + File.GetLastWriteTimeUtc(path).Ticks;
        using ImageStore store = ImageStore.Open(storeDir);
        string key = Stamp(net.Source) + "|" + Stamp(Path.Combine(storeDir, ImageStore.ManifestFile));
        string hash = Convert.ToHexString(
            System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key)))[..16];
        string file = Path.Combine(Path.GetTempPath(), $"alexnet-serve-fc7-{hash}.f32");
        if (!File.Exists(file + ".json"))
        {
            message?.Invoke(
                $"Writing fc7 of the {store.Count} images of {storeDir} once, for the neighbours (§6.1), to {file} …");
            Retrieval.Extract(net.Model, store,
                TestPipeline.Augmentation(net.Card, store.Height, store.Width), "fc7", file, net.Source);
        }
        return file;
    }

    /// <summary>Builds the host and starts listening; the addresses it listens on.</summary>
    public async Task<IReadOnlyList<string>> StartAsync(CancellationToken cancel = default)
    {
        _host ??= CreateHostBuilder().Build();
        await _host.StartAsync(cancel).ConfigureAwait(false);
        return _host.Services.GetRequiredService<IServer>()
            .Features.Get<IServerAddressesFeature>()?.Addresses.ToArray() ?? Array.Empty<string>();
    }

    /// <summary>
    /// Until Ctrl-C or SIGTERM: then Kestrel stops accepting, in-flight requests are answered (30 s at most), and this
    /// returns.
    /// </summary>
    public Task WaitForShutdownAsync() => Started.WaitForShutdownAsync();

    /// <summary>What Ctrl-C or SIGTERM asks of the host: stop accepting, answer what is in flight.</summary>
    public Task StopAsync() => Started.StopAsync();

    private IHost Started => _host ?? throw new InvalidOperationException("the server was not started (StartAsync).");

    /// <summary>Errors as JSON, metrics for every request; whatever a request does, the next one is served.</summary>
    private async Task Guard(HttpContext context, RequestDelegate next)
    {
        var clock = Stopwatch.StartNew();
        string endpoint = EndpointName(context.Request.Path);
        try
        {
            await next(context).ConfigureAwait(false);
        }
        catch (Exception e) when (!context.Response.HasStarted && e is not OperationCanceledException)
        {
            (int status, string message) = e switch
            {
                ApiException a => (a.Status, a.Message),
                BadHttpRequestException b when b.StatusCode == StatusCodes.Status413PayloadTooLarge =>
                    (413, $"the body is over the {_options.MaxUploadMb} MB limit (--max-upload-mb)."),
                BadHttpRequestException b => (b.StatusCode, b.Message),
                InvalidDataException d when d.Message.Contains(
                    "Multipart body length limit", StringComparison.Ordinal) =>
                    (413, $"the body is over the {_options.MaxUploadMb} MB limit (--max-upload-mb)."),
                InvalidDataException d => (400, $"the multipart body is malformed ({d.Message})."),
                _ => (500, $"the server failed on this request ({e.GetType().Name}: {e.Message}); it goes on serving."),
            };
            context.Response.Clear();
            context.Response.StatusCode = status;
            await context.Response.WriteAsJsonAsync(new ErrorResponse(message)).ConfigureAwait(false);
        }
        finally
        {
            int code = context.Response.StatusCode;
            Metrics.Requests.WithLabels(endpoint,
                code.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
            if (code >= 400)
            {
                Metrics.Errors.WithLabels(endpoint).Inc();
            }
            Metrics.Latency.WithLabels(endpoint).Observe(clock.Elapsed.TotalSeconds);
        }
    }

    /// <summary>
    /// A bounded label set for metrics: the route, not the raw path (a path may be anything a client sends).
    /// </summary>
    private static string EndpointName(PathString path)
    {
        string p = path.Value ?? "/";
        foreach (string known in new[] { "/api/predict", "/api/neighbors", "/api/kernels.png", "/api/model",
            "/api/images/", "/api/runs/", "/healthz", "/readyz", "/metrics", "/openapi/" })
        {
            if (p.StartsWith(known, StringComparison.Ordinal))
            {
                return known.TrimEnd('/');
            }
        }
        return p is "/" or "/app.js" or "/app.css" ? "page" : "other";
    }

    private void Map(IEndpointRouteBuilder app)
    {
        app.MapOpenApi();
        app.MapGet("/", () => Page("index.html", "text/html; charset=utf-8")).ExcludeFromDescription();
        app.MapGet("/app.js", () => Page("app.js", "text/javascript; charset=utf-8")).ExcludeFromDescription();
        app.MapGet("/app.css", () => Page("app.css", "text/css; charset=utf-8")).ExcludeFromDescription();

        app.MapPost("/api/predict",
            Predict).WithSummary(
            "Top-k classes of an image (multipart field `image`, or the raw bytes), the softmax averaged over §4.1's " +
            "views.")
            .Produces<PredictResponse>().Produces<ErrorResponse>(400).Produces<ErrorResponse>(413)
            .Produces<ErrorResponse>(415).DisableAntiforgery();
        app.MapPost("/api/neighbors", Neighbours)
            .WithSummary("The k training images nearest to an image by fc7 (§6.1, Figure 4 right); needs --features.")
            .Produces<NeighboursResponse>().Produces<ErrorResponse>(400)
            .Produces<ErrorResponse>(404).DisableAntiforgery();
        app.MapGet("/api/images/{index}",
            Picture).WithSummary("A training image of the neighbours' store, by record index, as PNG.");
        app.MapGet("/api/kernels.png", () => Results.Bytes(_kernels,
            "image/png")).WithSummary("conv1's kernels as a grid, one block per tower (Figure 3).");
        app.MapGet("/api/model", () => new ModelResponse(_net.Card with
        {
            MeanImage = Array.Empty<float>(),
        }, _net.Card.Summary,
            Path.GetFileName(_options.Checkpoint), _features is not null || _codes is not null, _runName,
            _options.MaxBatch, _options.MaxWaitMs))
            .WithSummary("The model card: architecture, classes, preprocessing (the mean image left out).");
        app.MapGet("/api/runs/{name}/events", RunEvents).WithSummary(
            "A training run's metrics.jsonl as server-sent events, new lines as `train` writes them (--run).");
        app.MapGet("/healthz", () => Results.Text("ok")).WithSummary("Alive.");
        app.MapGet("/readyz",
            (IHostApplicationLifetime life) => _batcher.Running && !life.ApplicationStopping.IsCancellationRequested
            ? Results.Text("ready") : Results.Text("not ready",
            statusCode: 503)).WithSummary("Ready to classify (503 while stopping).");
        app.MapGet("/metrics", async () =>
        {
            using var text = new MemoryStream();
            await Metrics.WriteAsync(text).ConfigureAwait(false);
            return Results.Bytes(text.ToArray(), "text/plain; version=0.0.4; charset=utf-8");
        }).WithSummary("Prometheus text format: requests, errors, latency, batch sizes, queue depth.");
        app.MapFallback((HttpContext c) =>
            Results.Json(
            new ErrorResponse(
            $"no such endpoint: {c.Request.Method} {c.Request.Path}. The API is described at /openapi/v1.json."),
            statusCode: 404));
    }

    private static IResult Page(string name, string type)
    {
        using Stream s = Assembly.GetExecutingAssembly().GetManifestResourceStream("web/" + name)
            ?? throw new ApiException(404, $"{name} is not in this build.");
        using var m = new MemoryStream();
        s.CopyTo(m);
        return Results.Bytes(m.ToArray(), type);
    }

    private async Task<PredictResponse> Predict(HttpRequest request, int? top, string? views)
    {
        var clock = Stopwatch.StartNew();
        int k = top ?? 5;
        if (k < 1 || k > Card.Classes)
        {
            throw new ApiException(400, $"top={k}: give 1 to {Card.Classes} (the net's classes).");
        }
        ViewSet set = (views ?? "ten").ToLowerInvariant() switch
        {
            "centre" or "center" => ViewSet.Centre,
            "ten" => ViewSet.Ten,
            "flip" => ViewSet.Flip,
            _ => throw new ApiException(400, $"views={views}: give centre, ten or flip."),
        };
        float[] p = await _batcher.Run(await ReceiveImage(request).ConfigureAwait(false),
            Work.Probabilities(set)).ConfigureAwait(false);
        ClassScore[] best = Predictor.Best(c => p[c], p.Length, Card.ClassNames, k);
        return new PredictResponse(best, set.ToString().ToLowerInvariant(), CardSummary.Of(Card),
            clock.Elapsed.TotalMilliseconds);
    }

    private async Task<NeighboursResponse> Neighbours(HttpRequest request, int? k)
    {
        var clock = Stopwatch.StartNew();
        if ((_features is null && _codes is null) || _store is null)
        {
            throw new ApiException(404,
                "this server has no training images to search: start it with --features F (and --store STORE), F from " +
                "`alexnet features`, or --codes C from `alexnet codes encode`.");
        }
        int n = k ?? 8;
        int most = Math.Min(ServeOptions.MaxNeighbours, _store.Count);
        if (n < 1 || n > most)
        {
            throw new ApiException(400, $"k={n}: give 1 to {most}.");
        }
        float[] f = await _batcher.Run(await ReceiveImage(request).ConfigureAwait(false),
            Work.Fc7).ConfigureAwait(false);
        Neighbour[] hits = _codes is null ? Retrieval.Rank(f, _features!, _store, n)
            : Retrieval.RankByCodes(f, _coder!, _codes, _store, n, _features, ServeOptions.Rerank * n);
        string method = _codes is null ? "exact fc7"
            : _features is null ? $"Hamming over {_codes.Bits}-bit codes"
            : $"Hamming over {_codes.Bits}-bit codes, top {Math.Min(ServeOptions.Rerank * n, _codes.Count)} " +
            "re-ranked by fc7";
        return new NeighboursResponse(hits.Select(h => new NeighbourResponse(h.Rank, h.Index, h.Label,
            _store.Manifest.Classes[h.Label].Name, h.Distance,
            $"/api/images/{h.Index}")).ToArray(), _features?.Header?.Layer ?? "fc7", method,
            clock.Elapsed.TotalMilliseconds);
    }

    private IResult Picture(string index)
    {
        if (_store is null)
        {
            throw new ApiException(404, "this server has no training images: start it with --features F.");
        }
        if (!int.TryParse(index.EndsWith(".png", StringComparison.Ordinal) ? index[..^4] : index,
            System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out int i) || i >= _store.Count)
        {
            throw new ApiException(404, $"no image {index}: records are numbered 0 to {_store.Count - 1}.");
        }
        int scale = _store.Height < 64 ? 4 : 1;   // Fashion-MNIST's 28 px would be a speck on the page
        return Results.Bytes(Figures.RecordPng(_store.Record(i).ToArray(), _store.Height,
            _store.Channels, scale), "image/png");
    }

    /// <summary>
    /// A request's image as a §2 record: read, then decoded on a decoding thread; a batch gathering meanwhile may wait
    /// for it.
    /// </summary>
    private async Task<byte[]> ReceiveImage(HttpRequest request)
    {
        using (_batcher.Arriving())
        {
            byte[] encoded = await ReadImage(request).ConfigureAwait(false);
            return await _decoders.Run(() => DecodeImage(encoded)).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The image of a request: the multipart field `image` (or its only file), or the raw body; bounded by
    /// --max-upload-mb.
    /// </summary>
    private async Task<byte[]> ReadImage(HttpRequest request)
    {
        long limit = (long)_options.MaxUploadMb << 20;
        if (request.ContentLength > limit + (64 << 10))
        {
            throw new ApiException(413,
                $"the body is {request.ContentLength / 1e6:F1} MB, over the {_options.MaxUploadMb} MB limit " +
                "(--max-upload-mb).");
        }
        string type = request.ContentType ?? "";
        if (request.HasFormContentType)
        {
            IFormCollection form = await request.ReadFormAsync().ConfigureAwait(false);
            IFormFile file = form.Files.GetFile("image") ?? (form.Files.Count == 1 ? form.Files[0] : null)
                ?? throw new ApiException(400, "the form has no file: send the image in a field named `image`.");
            if (file.Length > limit)
            {
                throw new ApiException(413,
                    $"{file.FileName} is {file.Length / 1e6:F1} MB, over the {_options.MaxUploadMb} MB limit " +
                    "(--max-upload-mb).");
            }
            using var m = new MemoryStream();
            await file.CopyToAsync(m).ConfigureAwait(false);
            return m.ToArray();
        }
        if (type.Length > 0 && !type.StartsWith("image/", StringComparison.OrdinalIgnoreCase)
            && !type.StartsWith("application/octet-stream", StringComparison.OrdinalIgnoreCase))
        {
            throw new ApiException(415,
                $"content type {type} is not an image: send multipart/form-data with a field `image`, or the bytes " +
                "as image/* or application/octet-stream.");
        }
        using var body = new MemoryStream();
        var buffer = new byte[81920];
        int read;
        while ((read = await request.Body.ReadAsync(buffer).ConfigureAwait(false)) > 0)
        {
            body.Write(buffer, 0, read);
            if (body.Length > limit)
            {
                throw new ApiException(413, $"the body is over the {_options.MaxUploadMb} MB limit (--max-upload-mb).");
            }
        }
        return body.ToArray();
    }

    private byte[] DecodeImage(byte[] encoded)
    {
        if (encoded.Length == 0)
        {
            throw new ApiException(400, "the body is empty: send an image (JPEG, PNG, WebP, BMP or GIF).");
        }
        try
        {
            return _net.Decode(encoded, (long)(_options.MaxMegapixels * 1e6));
        }
        catch (ImageRejectedException e)
        {
            throw new ApiException(e.Message.Contains("megapixel", StringComparison.Ordinal) ? 413 : 400,
                $"the image cannot be used: {e.Message}. Send a JPEG, PNG, WebP, BMP or GIF image" +
                (e.Message.Contains("megapixel", StringComparison.Ordinal)
                ? $" of at most {_options.MaxMegapixels} megapixels (--max-megapixels)." : "."));
        }
    }

    /// <summary>
    /// Server-sent events: each line of the run's metrics.jsonl, then each line `train` appends, until the client or
    /// the server goes.
    /// </summary>
    private async Task RunEvents(HttpContext context, string name, IHostApplicationLifetime life)
    {
        if (name.Length == 0 || name is "." or ".."
            || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            throw new ApiException(400,
                $"run name {name} is not a name: runs are named by their folder's name alone (letters, digits, . - " +
                "_).");
        }
        if (_runName is null || name != _runName)
        {
            throw new ApiException(404, _runName is null ? "this server streams no run: start it with --run RUN."
                : $"no run {name}: this server streams {_runName}.");
        }
        string log = Path.Combine(_options.Run!, "metrics.jsonl");
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        using var stop =
            CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, life.ApplicationStopping);
        long position = 0;
        var pending = new List<byte>();
        var quiet = Stopwatch.StartNew();
        await context.Response.WriteAsync(": alexnet run " + name + "\n\n", stop.Token).ConfigureAwait(false);
        await context.Response.Body.FlushAsync(stop.Token).ConfigureAwait(false);
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var lines = new List<string>();
                if (File.Exists(log))
                {
                    using var f = new FileStream(log, FileMode.Open, FileAccess.Read,
                        FileShare.ReadWrite | FileShare.Delete);
                    if (f.Length < position)
                    {
                        position = 0;   // cut back on resume (MetricsLog.CutBackTo): start the curves again
                        pending.Clear();
                        lines.Add("{\"reset\":true}");
                    }
                    f.Seek(position, SeekOrigin.Begin);
                    var buffer = new byte[(int)Math.Min(f.Length - position, 1 << 20)];
                    int n = f.Read(buffer);
                    position += n;
                    foreach (byte b in buffer.AsSpan(0, n))
                    {
                        if (b == (byte)'\n')
                        {
                            // a torn last line waits for its end
                            lines.Add(System.Text.Encoding.UTF8.GetString(pending.ToArray()));
                            pending.Clear();
                        }
                        else
                        {
                            pending.Add(b);
                        }
                    }
                }
                foreach (string line in lines.Where(l => l.Length > 0))
                {
                    await context.Response.WriteAsync("data: " + line + "\n\n", stop.Token).ConfigureAwait(false);
                }
                if (lines.Count > 0 || quiet.Elapsed > TimeSpan.FromSeconds(15))
                {
                    if (lines.Count == 0)
                    {
                        await context.Response.WriteAsync(": keep-alive\n\n", stop.Token).ConfigureAwait(false);
                    }
                    await context.Response.Body.FlushAsync(stop.Token).ConfigureAwait(false);
                    quiet.Restart();
                }
                await Task.Delay(250, stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
            // the client left, or the server is stopping: the stream simply ends
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_host is IAsyncDisposable host)
        {
            await host.DisposeAsync().ConfigureAwait(false);
        }
        await _batcher.DisposeAsync().ConfigureAwait(false);
        _decoders.Dispose();
        _features?.Dispose();
        _store?.Dispose();
        _net.Dispose();
    }
}
