// A bounded load on a running server, as one measures Triton with perf_analyzer: C clients each send requests
// back to back until N are answered; the answers are checked against the first one (same image, same answer)
// and the latencies summarised. Used by `alexnet bench serve` and the tests.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;

namespace AlexNet.Serving;

/// <param name="Wrong">Answers that differ from the expected top classes (and probabilities within 1e-5).</param>
public sealed record LoadResult(int Clients, int Requests, int Errors, int Wrong,
    double Seconds, double RequestsPerSecond,
    double P50Ms, double P90Ms, double P99Ms, double MaxMs)
{
    public string Describe() =>
        $"{Clients} clients, {Requests} requests: {RequestsPerSecond:F1} req/s, p50 {P50Ms:F1} ms, p99 {P99Ms:F1} " +
        "ms, " +
        $"max {MaxMs:F1} ms; {Errors} errors, {Wrong} wrong answers";
}

public static class LoadTest
{
    /// <param name="client">A client of the server (its BaseAddress set).</param>
    /// <param name="expected">The answer every request must get: (class index, probability) of the top classes.</param>
    /// <param name="onAnswered">Called with the count of answers so far, after each (the tests read RSS at
    /// 500).</param>
    public static async Task<LoadResult> Run(HttpClient client, byte[] image, string query, int clients, int requests,
        (int Index, double Probability)[]? expected = null, Action<int>? onAnswered = null,
        CancellationToken cancel = default)
    {
        int next = 0, errors = 0, wrong = 0, answered = 0;
        var latencies = new double[requests];
        var clock = Stopwatch.StartNew();
        async Task Client()
        {
            while (true)
            {
                int i = Interlocked.Increment(ref next) - 1;
                if (i >= requests)
                {
                    return;
                }
                var start = Stopwatch.GetTimestamp();
                using var body = new ByteArrayContent(image);
                body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                try
                {
                    using HttpResponseMessage r = await client.PostAsync("/api/predict" + query, body,
                        cancel).ConfigureAwait(false);
                    string text = await r.Content.ReadAsStringAsync(cancel).ConfigureAwait(false);
                    latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                    if (!r.IsSuccessStatusCode)
                    {
                        Interlocked.Increment(ref errors);
                    }
                    else if (expected is not null && !Same(text, expected))
                    {
                        Interlocked.Increment(ref wrong);
                    }
                }
                catch (HttpRequestException)
                {
                    latencies[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                    Interlocked.Increment(ref errors);
                }
                onAnswered?.Invoke(Interlocked.Increment(ref answered));
            }
        }
        await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(Client, cancel))).ConfigureAwait(false);
        double seconds = clock.Elapsed.TotalSeconds;
        Array.Sort(latencies);
        double At(double q) => latencies[Math.Min(requests - 1, (int)Math.Floor(q * requests))];
        return new LoadResult(clients, requests, errors, wrong, seconds, requests / seconds, At(0.5),
            At(0.9), At(0.99), latencies[^1]);
    }

    /// <summary>The top classes and probabilities of a /api/predict answer.</summary>
    public static (int Index, double Probability)[] Top(string json)
    {
        using JsonDocument d = JsonDocument.Parse(json);
        return d.RootElement.GetProperty("top").EnumerateArray()
            .Select(t => (t.GetProperty("index").GetInt32(), t.GetProperty("probability").GetDouble())).ToArray();
    }

    private static bool Same(string json, IReadOnlyList<(int Index, double Probability)> expected)
    {
        (int Index, double Probability)[] got = Top(json);
        return got.Length == expected.Count && got.Zip(expected).All(p => p.First.Index == p.Second.Index
            && Math.Abs(p.First.Probability - p.Second.Probability) < 1e-5);
    }
}
