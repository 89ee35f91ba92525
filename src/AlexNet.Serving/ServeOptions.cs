// What `alexnet serve` is asked to serve, and its limits. Every limit has a default a laptop survives.
using AlexNet.Model;

namespace AlexNet.Serving;

/// <param name="Checkpoint">The net to serve (a run's, or one `alexnet import` wrote).</param>
/// <param name="Store">The training store whose images are the neighbours (default: the features' own store).</param>
/// <param name="Features">fc7 of every training image (`alexnet features`), for §6.1's retrieval.</param>
/// <param name="Run">A run folder whose metrics.jsonl is streamed as server-sent events.</param>
/// <param name="Urls">Where to listen: loopback unless the user says otherwise.</param>
/// <param name="MaxBatch">Dynamic batching: up to this many images in one forward pass (1 = no batching).</param>
/// <param name="MaxWaitMs">How long the first image of a batch waits for others.</param>
/// <param name="MaxUploadMb">Larger request bodies are refused with 413.</param>
/// <param name="MaxMegapixels">Images declaring more pixels are refused before decoding (decompression bombs).</param>
/// <param name="Precision">The products' number format (null: the run's own).</param>
/// <param name="Codes">§6.1's binary codes of the training images (`alexnet codes encode`): the neighbours by Hamming
/// search, re-ranked by exact fc7 when --features is given too.</param>
public sealed record ServeOptions(
    string Checkpoint,
    string? Store = null,
    string? Features = null,
    string? Run = null,
    string Urls = ServeOptions.DefaultUrls,
    int MaxBatch = 32,
    int MaxWaitMs = 5,
    int MaxUploadMb = 20,
    double MaxMegapixels = 40,
    Precision? Precision = null,
    string? Codes = null)
{
    public const string DefaultUrls = "http://127.0.0.1:8080";

    /// <summary>
    /// Neighbours asked for at most (a page of Figure 4 holds a handful; the feature file may hold millions).
    /// </summary>
    public const int MaxNeighbours = 100;

    /// <summary>With codes and features, the top Rerank × k by Hamming distance are re-ordered by exact fc7.</summary>
    public const int Rerank = 10;

    public void Validate()
    {
        Check(MaxBatch is >= 1 and <= 1024, "--max-batch must be 1 to 1024");
        Check(MaxWaitMs is >= 0 and <= 10_000, "--max-wait-ms must be 0 to 10000");
        Check(MaxUploadMb is >= 1 and <= 1024, "--max-upload-mb must be 1 to 1024");
        Check(MaxMegapixels > 0 && MaxMegapixels <= 1000, "--max-megapixels must be above 0 and at most 1000");
        Check(!string.IsNullOrWhiteSpace(Urls), "--urls must name at least one address, e.g. http://127.0.0.1:8080");
    }

    private static void Check(bool ok, string message)
    {
        if (!ok)
        {
            throw new System.ArgumentException(message + ".");
        }
    }
}
