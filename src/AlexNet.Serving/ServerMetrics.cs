// GET /metrics in Prometheus' text format (prometheus-net, one registry per server): requests by endpoint and
// status, errors, request latency, the sizes of the batches the net actually ran, and the queue's depth.
using System.IO;
using System.Threading.Tasks;
using Prometheus;

namespace AlexNet.Serving;

public sealed class ServerMetrics
{
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();

    public ServerMetrics()
    {
        MetricFactory f = Metrics.WithCustomRegistry(_registry);
        Requests = f.CreateCounter("alexnet_requests_total",
            "HTTP requests answered, by endpoint and status code.", "endpoint", "code");
        Errors = f.CreateCounter("alexnet_errors_total",
            "Requests answered with a 4xx or 5xx status, by endpoint.", "endpoint");
        Latency = f.CreateHistogram("alexnet_request_duration_seconds",
            "Time from a request's arrival to its answer, by endpoint.",
            new HistogramConfiguration
            {
                LabelNames = new[] { "endpoint" },
                Buckets = Histogram.ExponentialBuckets(0.001, 2, 15),
            });
        BatchSize = f.CreateHistogram("alexnet_batch_size", "Images in each forward pass the dynamic batcher ran.",
            new HistogramConfiguration { Buckets = new double[] { 1, 2, 4, 8, 16, 32, 64, 128, 256 } });
        QueueDepth = f.CreateGauge("alexnet_queue_depth", "Images waiting for the net.");
    }

    public Counter Requests { get; }
    public Counter Errors { get; }
    public Histogram Latency { get; }
    public Histogram BatchSize { get; }
    public Gauge QueueDepth { get; }

    public Task WriteAsync(Stream output) => _registry.CollectAndExportAsTextAsync(output);
}
