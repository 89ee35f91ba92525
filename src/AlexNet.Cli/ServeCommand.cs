using System;
using System.Collections.Generic;
using System.CommandLine;
using AlexNet.Serving;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>
/// `alexnet serve`: the net as a local HTTP API and web page (AlexNet.Serving); Ctrl-C or SIGTERM drains and exits 0.
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint", "-c")
        {
            Description = "Checkpoint to serve (a run's, or one `alexnet import` wrote).",
            Required = true,
        };
        var store = new Option<string?>("--store")
        {
            Description =
                "Training store whose images are the neighbours (§6.1): its fc7 is written once and cached, unless " +
                "--features gives it (default: the store --features was written from).",
        };
        var features = new Option<string?>("--features", "-f")
        {
            Description =
                "fc7 of the store's images (`alexnet features`), for /api/neighbors and the page's nearest images " +
                "(§6.1).",
        };
        var codes = new Option<string?>("--codes")
        {
            Description =
                "Binary codes of the store's images (`alexnet codes encode`): neighbours by Hamming search (§6.1), " +
                "re-ranked by fc7 when --features is given too.",
        };
        var run = new Option<string?>("--run")
        {
            Description = "A run folder (train's --out) whose metrics are streamed to the page as live curves.",
        };
        var urls = new Option<string>("--urls")
        {
            Description =
                "Where to listen (semicolon-separated). Loopback by default; another address only when given here.",
            DefaultValueFactory = _ => ServeOptions.DefaultUrls,
        };
        var maxBatch = new Option<int>("--max-batch")
        {
            Description =
                "Dynamic batching: concurrent images gathered into one forward pass, up to this many (1 = off).",
            DefaultValueFactory = _ => 32,
        };
        var maxWait = new Option<int>("--max-wait-ms")
        {
            Description = "How long the first image of a batch waits for others.",
            DefaultValueFactory = _ => 5,
        };
        var maxUpload = new Option<int>("--max-upload-mb")
        {
            Description = "Request bodies over this size are refused (413).",
            DefaultValueFactory = _ => 20,
        };
        var maxPixels = new Option<double>("--max-megapixels")
        {
            Description = "Images declaring more pixels are refused before decoding (413).",
            DefaultValueFactory = _ => 40,
        };
        var threads = new Option<int>("--threads")
        {
            Description = "Compute threads.",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        Option<string?> precision = Cli.CheckpointPrecisionOption();
        var command =
            new Command("serve", "Serve a net as a local web page and HTTP API: top-5 (Figure 4, left), nearest " +
            "training images (Figure 4, right), conv1's kernels (Figure 3), live training curves; /metrics, /healthz, " +
            "/readyz, /openapi/v1.json.")
        {
            checkpoint, store, features, codes, run, urls, maxBatch, maxWait, maxUpload, maxPixels, threads, precision,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            Compute.UseThreads(r.GetValue(threads));
            var options = new ServeOptions(r.GetValue(checkpoint)!, r.GetValue(store), r.GetValue(features),
                r.GetValue(run), r.GetValue(urls)!,
                r.GetValue(maxBatch), r.GetValue(maxWait), r.GetValue(maxUpload), r.GetValue(maxPixels),
                Cli.PrecisionOrNull(r.GetValue(precision)), r.GetValue(codes));
            Server server = Server.Create(options, message: m => AnsiConsole.MarkupLineInterpolated($"{m}"));
            try
            {
                IReadOnlyList<string> addresses;
                try
                {
                    addresses = server.StartAsync().GetAwaiter().GetResult();
                }
                catch (System.IO.IOException e)
                {
                    throw new UserError(
                        $"cannot listen on {options.Urls}: {e.Message}. Choose another with --urls (e.g. " +
                        "http://127.0.0.1:8081).");
                }
                AnsiConsole.MarkupLineInterpolated($"Serving {options.Checkpoint}: {server.Card.Summary}.");
                foreach (string a in addresses)
                {
                    AnsiConsole.MarkupLineInterpolated(
                        $"Listening on [bold]{a}[/] (the page at /, the API at /openapi/v1.json). Ctrl-C stops.");
                }
                server.WaitForShutdownAsync().GetAwaiter().GetResult();
                AnsiConsole.MarkupLine("Stopped: in-flight requests were answered.");
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            return 0;
        }));
        return command;
    }
}
