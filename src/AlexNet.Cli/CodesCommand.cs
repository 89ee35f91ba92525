using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Globalization;
using System.IO;
using System.Linq;
using AlexNet.Analysis;
using AlexNet.Data;
using AlexNet.Performance;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary> `alexnet codes train|encode|eval|bench`: §6.1's short binary codes (Analysis/BinaryCodes.cs,
/// Analysis/HammingIndex.cs).
/// </summary>
internal static class CodesCommand
{
    public static Command Create() =>
        new("codes", "§6.1's short binary codes for retrieval.") { Train(), Encode(), Eval(), Bench() };

    private static Command Train()
    {
        var features = new Option<string>("--features", "-f")
        {
            Description = "fc7 of the database images (`alexnet features`).",
            Required = true,
        };
        var bits = new Option<int>("--bits")
        {
            Description = "Code length: a multiple of 64.",
            DefaultValueFactory = _ => 256,
        };
        var kind = new Option<string>("--kind")
        {
            Description = "autoencoder (Krizhevsky & Hinton 2011) or lsh (random projections).",
            DefaultValueFactory = _ => "autoencoder",
        };
        var seed = new Option<int>("--seed")
        {
            Description = "Seed of the initial weights, the noise and the order.",
            DefaultValueFactory = _ => 1,
        };
        var epochs = new Option<int>("--epochs")
        {
            Description = "Auto-encoder epochs.",
            DefaultValueFactory = _ => 20,
        };
        var sample = new Option<int>("--sample")
        {
            Description =
                "Train on at most this many rows, evenly spaced (ImageNet's 1.28 M × 4096 floats do not fit in " +
                "memory).",
            DefaultValueFactory = _ => 200_000,
        };
        var output = new Option<string>("--out", "-o")
        {
            Description = "Coder file (plus FILE.json).",
            Required = true,
        };
        var command = new Command("train", "Train a coder from fc7 to short binary codes (§6.1).")
        {
            features,
            bits,
            kind,
            seed,
            epochs,
            sample,
            output,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string k = r.GetValue(kind)!;
            if (k is not ("autoencoder" or "lsh"))
            {
                throw new ArgumentException($"--kind {k}: give autoencoder or lsh.");
            }
            Cli.Positive(r.GetValue(epochs), "--epochs");
            Cli.Positive(r.GetValue(sample), "--sample");
            string file = r.GetValue(features)!;
            using FeatureMatrix db = Retrieval.Open(file);
            float[] rows = Sample(db, r.GetValue(sample));
            int b = r.GetValue(bits), d = db.Dimensions;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            BinaryCoder coder = k == "lsh" ? BinaryCodes.RandomProjections(rows, d, b, r.GetValue(seed))
                : BinaryCodes.TrainAutoencoder(rows, d, b, r.GetValue(seed), r.GetValue(epochs),
                    progress: (e,
                loss) => AnsiConsole.MarkupLineInterpolated($"epoch {e}: reconstruction error {loss:F2}"));
            FeatureHeader h = db.Header!;
            coder.Save(r.GetValue(output)!,
                new CoderHeader(CoderHeader.FormatName, k, d, b, r.GetValue(seed), k == "lsh" ? 0 : r.GetValue(epochs),
                h.Layer, Path.GetFullPath(file), h.Store, h.Checkpoint));
            AnsiConsole.MarkupLineInterpolated(
                $"Wrote {r.GetValue(output)}: {k} {d}→{b} bits from {rows.Length / d} rows in {clock.Elapsed.TotalSeconds:F1} s.");
            return 0;
        }));
        return command;
    }

    /// <summary>At most <paramref name="limit"/> rows of <paramref name="m"/>, evenly spaced.</summary>
    private static float[] Sample(FeatureMatrix m, int limit)
    {
        if (m.Count <= limit)
        {
            return m.Rows(0, checked((int)m.Count)).ToArray();
        }
        var rows = new float[(long)limit * m.Dimensions];
        for (int i = 0; i < limit; i++)
        {
            m.Rows(i * m.Count / limit, 1).CopyTo(rows.AsSpan(i * m.Dimensions, m.Dimensions));
        }
        return rows;
    }

    private static Command Encode()
    {
        var coder = new Option<string>("--coder", "-c")
        {
            Description = "Coder from `alexnet codes train`.",
            Required = true,
        };
        var features = new Option<string>("--features", "-f")
        {
            Description = "fc7 to encode (`alexnet features`), from the coder's net and layer.",
            Required = true,
        };
        var output = new Option<string>("--out", "-o")
        {
            Description = "Code file: one packed code per image (bits/8 bytes), plus FILE.json.",
            Required = true,
        };
        var command = new Command("encode", "Write one packed binary code per image (§6.1).")
        {
            coder,
            features,
            output,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string coderFile = r.GetValue(coder)!, file = r.GetValue(features)!;
            (BinaryCoder c, CoderHeader ch) = BinaryCoder.Load(coderFile);
            using FeatureMatrix f = Retrieval.Open(file);
            FeatureHeader fh = f.Header!;
            if (fh.Checkpoint != ch.Checkpoint || fh.Layer != ch.Layer || f.Dimensions != c.Dimensions)
            {
                throw new ArgumentException(
                    $"{coderFile} was trained on {ch.Dimensions}-d {ch.Layer} of {ch.Checkpoint}, {file} " +
                    $"holds {f.Dimensions}-d {fh.Layer} of {fh.Checkpoint}: encode features of the coder's net and " +
                    "layer, or train a coder on these.");
            }
            var clock = System.Diagnostics.Stopwatch.StartNew();
            ulong[] codes = c.Encode(f);
            string path = r.GetValue(output)!;
            HammingIndex.Write(path, codes,
                new CodesHeader(HammingIndex.Format, (int)f.Count, c.Bits, c.Kind, Path.GetFullPath(coderFile),
                Path.GetFullPath(file), fh.Store, fh.Checkpoint, fh.Layer));
            AnsiConsole.MarkupLineInterpolated(
                $"Wrote {path}: {f.Count} codes of {c.Bits} bits ({codes.Length * 8L / 1e6:F1} MB, against {f.Count * f.Dimensions * 4L / 1e6:F0} MB of features) in {clock.Elapsed.TotalSeconds:F1} s.");
            return 0;
        }));
        return command;
    }

    private static Command Eval()
    {
        var features = new Option<string>("--features", "-f")
        {
            Description = "fc7 of the database images (`alexnet features` on the training store).",
            Required = true,
        };
        var queries = new Option<string>("--queries", "-q")
        {
            Description = "fc7 of the query images (`alexnet features` on the test store).",
            Required = true,
        };
        var bits = new Option<string>("--bits")
        {
            Description = "Code lengths, comma-separated multiples of 64.",
            DefaultValueFactory = _ => "64,128,256",
        };
        var seeds = new Option<string>("--seeds")
        {
            Description = "Seeds, comma-separated.",
            DefaultValueFactory = _ => "1,2,3",
        };
        var limit = new Option<int>("--query-limit")
        {
            Description = "The first N query images.",
            DefaultValueFactory = _ => 1000,
        };
        var k = new Option<int>("-k") { Description = "Neighbours per query.", DefaultValueFactory = _ => 10 };
        var epochs = new Option<int>("--epochs")
        {
            Description = "Auto-encoder epochs.",
            DefaultValueFactory = _ => 20,
        };
        var pixels = new Option<bool>("--pixels")
        {
            Description =
                "Also the auto-encoder on raw pixels (at most 32×32 per channel) of the same images: §6.1's " +
                "comparison.",
        };
        var json = new Option<string?>("--json") { Description = "Also write the scores to this JSON file." };
        var figure = new Option<string?>("--figure")
        {
            Description =
                "PNG: the first queries' neighbours by each method at the longest code and first seed (Figure 4, " +
                "right).",
        };
        var eval = new Command("eval", "Precision@k of the same class and recall of the exact fc7 top-k: auto-encoder " +
            "codes and random-projection codes (LSH) of each length, against exact Euclidean fc7 (§6.1).")
        {
            features, queries, bits, seeds, limit, k, epochs, pixels, json, figure,
        };
        eval.SetAction(r => Cli.Run(() =>
        {
            using FeatureMatrix db = Retrieval.Open(r.GetValue(features)!);
            using FeatureMatrix qm = Retrieval.Open(r.GetValue(queries)!);
            if (qm.Header!.Checkpoint != db.Header!.Checkpoint || qm.Header.Layer != db.Header.Layer)
            {
                throw new ArgumentException(
                    $"{r.GetValue(queries)} holds {qm.Header.Layer} " +
                    $"of {qm.Header.Checkpoint}, {r.GetValue(features)} {db.Header.Layer} of {db.Header.Checkpoint}: " +
                    "write both with `alexnet features` from the same checkpoint and layer.");
            }
            if (qm.Dimensions != db.Dimensions)
            {
                throw new ArgumentException(
                    $"{r.GetValue(queries)} holds {qm.Dimensions}-d " +
                    $"features, {r.GetValue(features)} {db.Dimensions}-d ones: write both with `alexnet features` " +
                    "from the same checkpoint and layer.");
            }
            using ImageStore dbStore = ImageStore.Open(db.Header!.Store);
            using ImageStore qStore = ImageStore.Open(qm.Header!.Store);
            int q = (int)Math.Min(r.GetValue(limit), qm.Count);
            float[] queryRows = qm.Rows(0, q).ToArray();
            int[] queryLabels = qStore.Labels.Take(q).ToArray();
            float[] dbRows = db.Rows(0, checked((int)db.Count)).ToArray();
            int[] dbLabels = dbStore.Labels;
            (RetrievalScore exact, long[][] exactNeighbours) = RetrievalEvaluation.Exact(db, dbLabels,
                queryRows, queryLabels, r.GetValue(k));
            var scores = new List<RetrievalScore> { exact };
            using FeatureMatrix? dbPixels = r.GetValue(pixels)
                ? BinaryCodes.PixelFeatures(dbStore, dbStore.Count) : null;
            // once, not per length and seed
            float[]? dbPixelRows = dbPixels?.Rows(0, checked((int)dbPixels.Count)).ToArray();
            float[]? queryPixels = null;
            if (dbPixels is not null)
            {
                using FeatureMatrix qp = BinaryCodes.PixelFeatures(qStore, q);
                queryPixels = qp.Rows(0, q).ToArray();
                (RetrievalScore exactPixels, _) = RetrievalEvaluation.Exact(dbPixels, dbLabels,
                    queryPixels, queryLabels, r.GetValue(k));
                scores.Add(exactPixels with { Method = "exact pixels", RecallOfExact = double.NaN });
            }
            const int shown = 4;   // queries in the figure
            int longest = Cli.Ints(r.GetValue(bits)!, "--bits").Max(),
                first = Cli.Ints(r.GetValue(seeds)!, "--seeds")[0];
            var figureRows = new List<(string Method, int Query, int[] Neighbours)>();
            for (int i = 0; i < Math.Min(shown, q); i++)
            {
                figureRows.Add(("exact fc7", i, exactNeighbours[i].Select(x => (int)x).ToArray()));
            }
            Action<HammingHit[][]>? Keep(string method, int b, int seed) => b != longest || seed != first ? null
                : hits => figureRows.AddRange(hits.Take(shown).Select((h, i) => ($"{method}, {b} bits", i,
                h.Select(x => x.Index).ToArray())));
            void Report(RetrievalScore c)
            {
                scores.Add(c);
                AnsiConsole.MarkupLineInterpolated(
                    $"{c.Method} {c.Bits} bits, seed {c.Seed}: precision@{r.GetValue(k)} {c.PrecisionAtK:P2}, recall of exact {c.RecallOfExact:P2}, {c.MillisecondsPerQuery:F2} ms/query");
            }
            foreach (int b in Cli.Ints(r.GetValue(bits)!, "--bits"))
            {
                foreach (int seed in Cli.Ints(r.GetValue(seeds)!, "--seeds"))
                {
                    foreach (BinaryCoder coder in new[]
                    {
                        BinaryCodes.TrainAutoencoder(dbRows, db.Dimensions, b, seed, r.GetValue(epochs)),
                        BinaryCodes.RandomProjections(dbRows, db.Dimensions, b, seed),
                    })
                    {
                        Report(RetrievalEvaluation.Score(coder, seed, db, dbLabels, queryRows, queryLabels,
                            exactNeighbours, r.GetValue(k),
                            Keep(coder.Kind, b, seed)));
                    }
                    if (dbPixels is not null)
                    {
                        BinaryCoder coder = BinaryCodes.TrainAutoencoder(dbPixelRows!,
                            dbPixels.Dimensions, b, seed, r.GetValue(epochs));
                        Report(RetrievalEvaluation.Score(coder, seed, dbPixels, dbLabels, queryPixels!, queryLabels, exactNeighbours, r.GetValue(k),
                            Keep("autoencoder on pixels", b, seed)) with
                        { Method = "autoencoder on pixels" });
                    }
                }
            }
            AnsiConsole.MarkupLineInterpolated(
                $"exact fc7: precision@{r.GetValue(k)} {exact.PrecisionAtK:P2}, {exact.MillisecondsPerQuery:F2} ms/query");
            if (r.GetValue(json) is string file)
            {
                Json.Write(file, scores);
            }
            if (r.GetValue(figure) is string png)
            {
                Figures.RetrievalRows(dbStore, figureRows.OrderBy(f => f.Query)
                    .Select(f => (f.Method, qStore.Record(f.Query).ToArray(), queryLabels[f.Query],
                    f.Neighbours)).ToList(), png);
                AnsiConsole.MarkupLineInterpolated($"Wrote {png}");
            }
            return 0;
        }));
        return eval;
    }

    private static Command Bench()
    {
        var count = new Option<int>("--count")
        {
            Description = "Codes in the database (ILSVRC-2012's training set: 1,281,167).",
            DefaultValueFactory = _ => 1_281_167,
        };
        var bits = new Option<string>("--bits")
        {
            Description = "Code lengths, comma-separated.",
            DefaultValueFactory = _ => "64,256",
        };
        var queries = new Option<int>("--queries")
        {
            Description = "Queries per measurement.",
            DefaultValueFactory = _ => 100,
        };
        var threads = new Option<int>("--threads")
        {
            Description = "Threads.",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var exact = new Option<string?>("--exact")
        {
            Description =
                "A feature file to search exactly for comparison; written with synthetic fc7 (--count × --dimensions " +
                "floats) when it does not exist.",
        };
        var dims = new Option<int>("--dimensions")
        {
            Description = "fc7's width for a synthetic --exact file.",
            DefaultValueFactory = _ => 4096,
        };
        var json = new Option<string?>("--json") { Description = "Also write the result to this JSON file." };
        var command =
            new Command("bench", "Hamming search over synthetic ImageNet-size code files, against exact fc7 search " +
            "and the machine's read bandwidth (§6.1).")
        {
            count, bits, queries, threads, exact, dims, json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            int t = r.GetValue(threads), n = r.GetValue(count);
            Cli.Positive(n, "--count");
            Cli.Positive(r.GetValue(queries), "--queries");
            Cli.Positive(t, "--threads");
            var costs = new List<SearchCost>();
            foreach (int b in Cli.Ints(r.GetValue(bits)!, "--bits"))
            {
                // first: the bandwidth probe's 1 GiB would count in RSS
                costs.AddRange(CodesBenchmark.Hamming(n, b, r.GetValue(queries), t));
            }
            double bandwidth = CodesBenchmark.ReadBandwidth(t);
            AnsiConsole.MarkupLineInterpolated(
                $"{Compute.CpuDescription()}: read bandwidth {bandwidth:F1} GB/s on {t} thread(s).");
            if (r.GetValue(exact) is string file)
            {
                if (!File.Exists(file))
                {
                    AnsiConsole.MarkupLineInterpolated(
                        $"Writing {n} × {r.GetValue(dims)} synthetic floats to {file} ({(long)n * r.GetValue(dims) * 4 / 1e9:F1} GB) …");
                    CodesBenchmark.WriteSyntheticFeatures(file, n, r.GetValue(dims));
                }
                costs.AddRange(CodesBenchmark.Exact(file, t));
            }
            var table = new Table().AddColumns("method", "threads", "database", "ms/query", "queries/s", "GB/s", "RSS");
            foreach (SearchCost c in costs)
            {
                table.AddRow(c.Method, c.Threads.ToString(CultureInfo.InvariantCulture),
                    $"{c.DatabaseBytes / 1e6:F0} MB",
                    c.MillisecondsPerQuery.ToString("F3", CultureInfo.InvariantCulture),
                    c.QueriesPerSecond.ToString("F1", CultureInfo.InvariantCulture),
                    c.GigabytesPerSecond.ToString("F1", CultureInfo.InvariantCulture),
                    $"{c.ResidentBytes / 1e6:F0} MB");
            }
            AnsiConsole.Write(table);
            if (r.GetValue(json) is string out_)
            {
                Json.Write(out_, new CodesBenchResult(Compute.CpuDescription(), n, r.GetValue(dims),
                    true, bandwidth, costs.ToArray()));
            }
            return 0;
        }));
        return command;
    }
}
