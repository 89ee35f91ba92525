using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Performance;

namespace AlexNet.Cli;

/// <summary> `alexnet bench prepare TREE`: §2's preparation of a class-folder tree by `alexnet prepare` (into a
/// temporary store, mean and PCA included) and by the usual PIL script (bench/prepare_peer.py, the same number of
/// processes), round by round, and the ratio of the medians.
/// </summary>
internal static class PreparePeer
{
    public sealed record PrepareRound(int Round, double OursImagesPerSecond, double PeerImagesPerSecond);

    public static int Run(string root, int threads, int rounds, string python, string script, string? jsonPath)
    {
        ImageFolder folder = ImageFolder.FromClassFolders(root);
        var results = new List<PrepareRound>();
        for (int r = 1; r <= rounds; r++)
        {
            string store = Path.Combine(Path.GetTempPath(), $"alexnet-prepare-bench-{Guid.NewGuid():N}");
            double ours;
            try
            {
                var clock = Stopwatch.StartNew();
                PrepareSummary s = FolderPreparer.Prepare(folder, store, 256, threads);
                ours = s.Written / clock.Elapsed.TotalSeconds;
            }
            finally
            {
                if (Directory.Exists(store))
                {
                    Directory.Delete(store, recursive: true);
                }
            }
            double theirs = PeerComparison.RunScript<PrepareOutput>(python, script,
                new[] { root, "--processes", threads.ToString(CultureInfo.InvariantCulture) },
                new Dictionary<string, string>(), "python3-pil", root).ImagesPerSecond;
            results.Add(new PrepareRound(r, ours, theirs));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"round {r}: alexnet prepare {ours:F0} images/s, PIL peer {theirs:F0} images/s ({folder.Items.Count} images, {threads} threads / processes)"));
        }
        double o = Benchmark.Median(results.Select(x => x.OursImagesPerSecond).ToArray());
        double p = Benchmark.Median(results.Select(x => x.PeerImagesPerSecond).ToArray());
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"medians: ours {o:F0}, peer {p:F0} images/s: ratio {o / p:F2}×; 1.28 M images would take {1.28e6 / o / 60:F0} min"));
        if (jsonPath is not null)
        {
            Json.Write(jsonPath, results);
        }
        return 0;
    }

    /// <summary>What bench/prepare_peer.py prints.</summary>
    internal sealed record PrepareOutput(int Images, double Seconds, double ImagesPerSecond, int Processes);
}
