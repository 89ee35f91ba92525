// `alexnet bench serve`: the server's throughput and latency at several numbers of concurrent clients, with
// dynamic batching on (--max-batch N) and off (1), in alternating rounds so the machine's noise falls on both.
// The server runs in this process on a loopback port; the clients share the CPU with it, as a sidecar would.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net.Http;
using System.Threading.Tasks;

namespace AlexNet.Serving;

public sealed record ServeBenchRow(string Variant, int MaxBatch, int Clients, int Round,
    LoadResult Result, double MeanBatch);

public static class ServeBenchmark
{
    /// <param name="maxBatches">The --max-batch settings to compare (1 = batching off).</param>
    /// <param name="precision">The server's --precision (null: the checkpoint's own).</param>
    public static async Task<List<ServeBenchRow>> Run(string checkpoint, byte[] image, IReadOnlyList<int> clients,
        IReadOnlyList<int> maxBatches,
        int requests, int rounds, int maxWaitMs, string views, Action<ServeBenchRow>? progress = null,
        AlexNet.Model.Precision? precision = null)
    {
        var rows = new List<ServeBenchRow>();
        for (int round = 1; round <= rounds; round++)
        {
            foreach (int maxBatch in maxBatches)
            {
                var options = new ServeOptions(checkpoint, Urls: "http://127.0.0.1:0", MaxBatch: maxBatch,
                    MaxWaitMs: maxWaitMs, Precision: precision);
                await using Server server = Server.Create(options);
                string url = (await server.StartAsync().ConfigureAwait(false))[0];
                using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024 })
                {
                    BaseAddress = new Uri(url),
                };
                string query = $"?top=5&views={views}";
                // warm-up: JIT, allocator, first batches
                await LoadTest.Run(http, image, query, 4, 20).ConfigureAwait(false);
                foreach (int c in clients)
                {
                    double passes = server.Metrics.BatchSize.Count, images = server.Metrics.BatchSize.Sum;
                    LoadResult r = await LoadTest.Run(http, image, query, c,
                        Math.Max(requests, 4 * c)).ConfigureAwait(false);
                    double mean = (server.Metrics.BatchSize.Sum - images) / Math.Max(1,
                        server.Metrics.BatchSize.Count - passes);
                    var row = new ServeBenchRow(server.Card.Architecture.Variant, maxBatch, c, round, r, mean);
                    rows.Add(row);
                    progress?.Invoke(row);
                }
            }
        }
        return rows;
    }

    /// <summary>Per (max batch, clients): the median over rounds of throughput and of p50/p99.</summary>
    public static IEnumerable<(int MaxBatch, int Clients, double RequestsPerSecond, double P50Ms, double P99Ms, double MeanBatch, int Errors)> Medians(IEnumerable<ServeBenchRow> rows) =>
        rows.GroupBy(r => (r.MaxBatch, r.Clients)).Select(g => (g.Key.MaxBatch, g.Key.Clients,
        Median(g.Select(r => r.Result.RequestsPerSecond)),
            Median(g.Select(r => r.Result.P50Ms)), Median(g.Select(r => r.Result.P99Ms)),
        Median(g.Select(r => r.MeanBatch)), g.Sum(r => r.Result.Errors + r.Result.Wrong)));

    private static double Median(IEnumerable<double> values)
    {
        double[] v = values.OrderBy(x => x).ToArray();
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}
