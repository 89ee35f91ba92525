using System;
using System.CommandLine;
using System.Globalization;
using System.Linq;
using AlexNet.Analysis;
using AlexNet.Data;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>`alexnet codes eval`: §6.1's binary codes (Analysis/BinaryCodes.cs) against exact fc7 search and random projections.</summary>
internal static class CodesCommand
{
    public static Command Create()
    {
        var features = new Option<string>("--features", "-f") { Description = "fc7 of the database images (`alexnet features` on the training store).", Required = true };
        var queries = new Option<string>("--queries", "-q") { Description = "fc7 of the query images (`alexnet features` on the test store).", Required = true };
        var bits = new Option<string>("--bits") { Description = "Code lengths, comma-separated multiples of 64.", DefaultValueFactory = _ => "64,128,256" };
        var seeds = new Option<string>("--seeds") { Description = "Seeds, comma-separated.", DefaultValueFactory = _ => "1,2,3" };
        var limit = new Option<int>("--query-limit") { Description = "The first N query images.", DefaultValueFactory = _ => 1000 };
        var k = new Option<int>("-k") { Description = "Neighbours per query.", DefaultValueFactory = _ => 10 };
        var epochs = new Option<int>("--epochs") { Description = "Auto-encoder epochs.", DefaultValueFactory = _ => 20 };
        var json = new Option<string?>("--json") { Description = "Also write the scores to this JSON file." };
        var eval = new Command("eval", "Precision@k of the same class and recall of the exact fc7 top-k: auto-encoder codes and random-projection codes (LSH) of each length, against exact Euclidean fc7 (§6.1).")
        {
            features, queries, bits, seeds, limit, k, epochs, json,
        };
        eval.SetAction(r => Cli.Run(() =>
        {
            int[] Ints(string s) => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(x => int.Parse(x, CultureInfo.InvariantCulture)).ToArray();
            using FeatureMatrix db = Retrieval.Open(r.GetValue(features)!);
            using FeatureMatrix qm = Retrieval.Open(r.GetValue(queries)!);
            if (qm.Header!.Checkpoint != db.Header!.Checkpoint || qm.Header.Layer != db.Header.Layer)
            {
                throw new ArgumentException($"{r.GetValue(queries)} holds {qm.Header.Layer} of {qm.Header.Checkpoint}, {r.GetValue(features)} {db.Header.Layer} of {db.Header.Checkpoint}: write both with `alexnet features` from the same checkpoint and layer.");
            }
            if (qm.Dimensions != db.Dimensions)
            {
                throw new ArgumentException($"{r.GetValue(queries)} holds {qm.Dimensions}-d features, {r.GetValue(features)} {db.Dimensions}-d ones: write both with `alexnet features` from the same checkpoint and layer.");
            }
            using ImageStore dbStore = ImageStore.Open(db.Header!.Store);
            using ImageStore qStore = ImageStore.Open(qm.Header!.Store);
            int q = (int)Math.Min(r.GetValue(limit), qm.Count);
            float[] queryRows = qm.Rows(0, q).ToArray();
            int[] queryLabels = qStore.Labels.Take(q).ToArray();
            float[] dbRows = db.Rows(0, checked((int)db.Count)).ToArray();
            int[] dbLabels = dbStore.Labels;
            (RetrievalScore exact, long[][] exactNeighbours) = RetrievalEvaluation.Exact(db, dbLabels, queryRows, queryLabels, r.GetValue(k));
            var scores = new System.Collections.Generic.List<RetrievalScore> { exact };
            foreach (int b in Ints(r.GetValue(bits)!))
            {
                foreach (int seed in Ints(r.GetValue(seeds)!))
                {
                    foreach (BinaryCoder coder in new[]
                    {
                        BinaryCodes.TrainAutoencoder(dbRows, db.Dimensions, b, seed, r.GetValue(epochs)),
                        BinaryCodes.RandomProjections(dbRows, db.Dimensions, b, seed),
                    })
                    {
                        RetrievalScore c = RetrievalEvaluation.Score(coder, seed, db, dbLabels, queryRows, queryLabels, exactNeighbours, r.GetValue(k));
                        scores.Add(c);
                        AnsiConsole.MarkupLineInterpolated($"{c.Method} {c.Bits} bits, seed {seed}: precision@{r.GetValue(k)} {c.PrecisionAtK:P2}, recall of exact {c.RecallOfExact:P2}, {c.MillisecondsPerQuery:F2} ms/query");
                    }
                }
            }
            AnsiConsole.MarkupLineInterpolated($"exact fc7: precision@{r.GetValue(k)} {exact.PrecisionAtK:P2}, {exact.MillisecondsPerQuery:F2} ms/query");
            if (r.GetValue(json) is string file)
            {
                Json.Write(file, scores);
            }
            return 0;
        }));
        return new Command("codes", "§6.1's short binary codes for retrieval.") { eval };
    }
}
