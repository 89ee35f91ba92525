using System.CommandLine;
using System.Globalization;
using System.Linq;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using AlexNet.Performance;
using Spectre.Console;

namespace AlexNet.Cli;

internal static class BenchCommand
{
    public static Command Create()
    {
        Option<string> model = Cli.ModelOption(Variants.Paper);
        var batch = new Option<int>("--batch-size", "-b") { Description = "Batch size.", DefaultValueFactory = _ => 64 };
        var threads = new Option<int>("--threads") { Description = "Compute threads.", DefaultValueFactory = _ => System.Environment.ProcessorCount };
        var lrn = new Option<string>("--lrn") { Description = "fused (ours), torch (libtorch's), none.", DefaultValueFactory = _ => "fused" };
        lrn.AcceptOnlyFromAmong("fused", "torch", "none");
        var steps = new Option<int>("--steps") { Description = "Timed steps (after 3 warm-up steps); the median is reported.", DefaultValueFactory = _ => 10 };
        var input = new Option<int?>("--input", "-s") { Description = "Input side (default: the variant's)." };
        var classes = new Option<int>("--classes") { Description = "Classes.", DefaultValueFactory = _ => 1000 };
        var channels = new Option<int>("--channels") { Description = "Input channels.", DefaultValueFactory = _ => 3 };
        Option<string> device = Cli.DeviceOption();
        Option<string> precision = Cli.PrecisionOption(inference: true);
        var towers = new Option<string?>("--towers") { Description = "§3.2: time the net as two towers on these two devices, e.g. cpu,cpu (paper and small)." };
        var concurrentTowers = new Option<bool>("--concurrent-towers") { Description = "With --towers: the two towers' forward work at the same time, --threads split between them." };
        var replicas = new Option<int>("--replicas") { Description = Cli.ReplicasDescription, DefaultValueFactory = _ => 1 };
        var command = new Command("bench", "Measure training-step and inference throughput on in-memory batches.")
        {
            model, batch, threads, lrn, steps, classes, channels, input, device, precision, towers, concurrentTowers, replicas,
        };
        var lrnOnly = new Option<string?>("--lrn-only") { Description = "Time LRN alone on a tensor of this shape, e.g. 64x96x55x55." };
        command.Options.Add(lrnOnly);
        var stageOnly = new Option<string?>("--stage-only") { Description = "Time the fused ReLU→LRN→max-pool stage and libtorch's three operations on a conv output of this shape, e.g. 64x96x55x55." };
        command.Options.Add(stageOnly);
        var updateOnly = new Option<bool>("--update-only") { Description = "Time §5's update over the net's parameters alone: the fused pass and libtorch's operations." };
        command.Options.Add(updateOnly);
        var layers = new Option<bool>("--layers") { Description = "Time each layer's forward and backward alone." };
        command.Options.Add(layers);
        var rss = new Option<int>("--rss-steps") { Description = "Train this many steps after 50 warm-up steps and report resident memory every 50." };
        command.Options.Add(rss);
        var loaderStore = new Option<string?>("--loader") { Description = "Measure the training loader (full §4.1 augmentation) on this store, with 1 and 2 workers." };
        command.Options.Add(loaderStore);
        var peer = new Option<bool>("--peer") { Description = "Run the PyTorch peer (bench/peer.py) on the same nets, interleaved with ours, and print the ratios." };
        var models = new Option<string?>("--models") { Description = "With --peer: comma-separated nets to compare (default: --model)." };
        var rounds = new Option<int>("--rounds") { Description = "With --peer: interleaved rounds; medians are reported.", DefaultValueFactory = _ => 3 };
        var peerScript = new Option<string>("--peer-script") { Description = "With --peer: the peer script.", DefaultValueFactory = _ => "bench/peer.py" };
        var peerPython = new Option<string>("--peer-python") { Description = "With --peer: the interpreter that runs the peer script.", DefaultValueFactory = _ => PeerComparison.DefaultPython };
        var peerChannelsLast = new Option<bool>("--peer-channels-last") { Description = "With --peer: run the peer in channels-last (NHWC) layout." };
        var prepare = new Option<string?>("--prepare") { Description = "Time `alexnet prepare` on this class-folder tree against the PIL peer (bench/prepare_peer.py), --rounds rounds, and print the ratio." };
        var prepareScript = new Option<string>("--prepare-script") { Description = "With --prepare: the PIL peer script.", DefaultValueFactory = _ => "bench/prepare_peer.py" };
        command.Options.Add(prepare);
        command.Options.Add(prepareScript);
        var onnxPeer = new Option<bool>("--onnx-peer") { Description = "Inference of the net (--models or --model) exported to ONNX and run by ONNX Runtime, same weights, batch and threads, alternating --rounds with ours; the ratio." };
        command.Options.Add(onnxPeer);
        Option<string> engine = Cli.EngineOption();
        command.Options.Add(engine);
        var json = new Option<string?>("--json") { Description = "Also write the results to this JSON file (throughput runs and --peer)." };
        foreach (Option o in new Option[] { peer, models, rounds, peerScript, peerPython, peerChannelsLast, json })
        {
            command.Options.Add(o);
        }
        command.Subcommands.Add(BenchServeCommand.Create());
        command.SetAction(r => Cli.Run(() =>
        {
            if (r.GetValue(prepare) is string prepareRoot)
            {
                return PreparePeer.Run(prepareRoot, r.GetValue(threads), r.GetValue(rounds), r.GetValue(peerPython)!, r.GetValue(prepareScript)!, r.GetValue(json));
            }
            if (!r.GetValue(onnxPeer) && LowPrecision.Parse(r.GetValue(precision)!) == Precision.Int8)
            {
                throw new UserError("--precision int8 times inference only: add --onnx-peer (ours against ONNX Runtime, both int8, with our float32 beside them).");
            }
            if (r.GetValue(onnxPeer))
            {
                string[] nets = (r.GetValue(models) ?? r.GetValue(model)!).Split(',', System.StringSplitOptions.RemoveEmptyEntries | System.StringSplitOptions.TrimEntries);
                return OnnxPeer(nets, r.GetValue(batch), r.GetValue(threads), r.GetValue(steps), r.GetValue(rounds), r.GetValue(classes), r.GetValue(channels),
                    LowPrecision.Parse(r.GetValue(precision)!), OneDnnNet.ParseEngine(r.GetValue(engine)!), r.GetValue(json));
            }
            if (r.GetValue(peer))
            {
                string[] names = (r.GetValue(models) ?? r.GetValue(model)!).Split(',', System.StringSplitOptions.RemoveEmptyEntries | System.StringSplitOptions.TrimEntries);
                foreach (string name in names)
                {
                    Variants.Get(name, r.GetValue(classes), r.GetValue(channels));   // unknown names fail here, before anything runs
                }
                if (r.GetValue(rounds) < 1 || r.GetValue(steps) < 1)
                {
                    throw new System.ArgumentException("--rounds and --steps must be at least 1.");
                }
                return PeerComparison.Run(names, r.GetValue(batch), r.GetValue(threads), r.GetValue(steps), r.GetValue(rounds), r.GetValue(peerPython)!, r.GetValue(peerScript)!,
                    r.GetValue(peerChannelsLast), r.GetValue(classes), r.GetValue(channels), r.GetValue(json));
            }
            if (r.GetValue(rss) is int rssSteps && rssSteps > 0)
            {
                var samples = Benchmark.RssOverSteps(Variants.Get(r.GetValue(model)!, r.GetValue(classes), r.GetValue(channels)), r.GetValue(lrn)!,
                    r.GetValue(batch), r.GetValue(threads), 50, rssSteps, LowPrecision.Parse(r.GetValue(precision)!));
                foreach ((int step, long bytes) in samples)
                {
                    System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"step {step}: RSS {bytes / 1048576.0:F1} MiB"));
                }
                long lo = samples.Min(s => s.RssBytes), hi = samples.Max(s => s.RssBytes);
                System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RSS range over {rssSteps} steps: {lo / 1048576.0:F1}–{hi / 1048576.0:F1} MiB ({100.0 * (hi - lo) / lo:F1}% spread)"));
                return 0;
            }
            if (r.GetValue(loaderStore) is string storeDir)
            {
                using var store = AlexNet.Data.ImageStore.Open(storeDir);
                foreach (int workers in new[] { 1, 2 })
                {
                    double rate = Benchmark.LoaderImagesPerSecond(store, workers, r.GetValue(batch));
                    System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"loader {storeDir} ({store.Height}×{store.Width}×{store.Channels}), full §4.1 augmentation, {workers} worker(s), batch {r.GetValue(batch)}: {rate:F0} images/s"));
                }
                var o = new AlexNet.Training.TrainOptions { Model = r.GetValue(model)!, BatchSize = r.GetValue(batch), InputScale = AlexNet.Training.Recipes.InputScaleFor(store.Height) };
                (double withLoader, double inMemory) = Benchmark.LoaderVersusMemory(store, o, new AlexNet.Training.MachineOptions(r.GetValue(threads)), r.GetValue(steps));
                System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{o.Model} batch {o.BatchSize}: step {withLoader:F1} ms fed by the loader (full augmentation, 1 worker) vs {inMemory:F1} ms in memory: ratio {withLoader / inMemory:F3}; the step consumes {o.BatchSize * 1000 / inMemory:F1} images/s"));
                return 0;
            }
            if (r.GetValue(stageOnly) is string stageShape)
            {
                long[] shape = System.Array.ConvertAll(stageShape.Split('x'), long.Parse);
                foreach (bool fused in new[] { true, false })
                {
                    (double f, double bw) = Benchmark.StageOnly(shape, fused, r.GetValue(threads));
                    System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"ReLU→LRN→pool {(fused ? "fused" : "libtorch")} {stageShape}: forward {f:F2} ms, backward {bw:F2} ms"));
                }
                return 0;
            }
            if (r.GetValue(lrnOnly) is string shapeText)
            {
                long[] shape = System.Array.ConvertAll(shapeText.Split('x'), long.Parse);
                foreach (int t in new[] { 1, 2 })
                {
                    (double kf, double kb) = Benchmark.LrnKernelOnly(shape, t);
                    System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"LRN kernel only, {t} thread(s): forward {kf:F2} ms, backward {kb:F2} ms"));
                }
                foreach (bool fused in new[] { true, false })
                {
                    (double f, double bw) = Benchmark.LrnOnly(shape, fused, r.GetValue(threads));
                    System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"LRN {(fused ? "fused" : "libtorch")} {shapeText}: forward {f:F2} ms, backward {bw:F2} ms"));
                }
                return 0;
            }
            Architecture arch = Variants.Get(r.GetValue(model)!, r.GetValue(classes), r.GetValue(channels), r.GetValue(input));
            if (r.GetValue(updateOnly))
            {
                (double fusedMs, double torchMs) = Benchmark.UpdateOnly(arch, r.GetValue(threads), r.GetValue(steps));
                System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"§5 update of {ModelSummary.Of(arch).Parameters / 1e6:F1} M parameters, {r.GetValue(threads)} threads: one fused pass {fusedMs:F1} ms, libtorch's operations and zero_ {torchMs:F1} ms ({torchMs / fusedMs:F2}×)"));
                return 0;
            }
            if (r.GetValue(layers))
            {
                var table = new Table().AddColumn("layer").AddColumn(new TableColumn("forward ms").RightAligned()).AddColumn(new TableColumn("backward ms").RightAligned());
                double tf = 0, tb = 0;
                foreach ((string layer, double f, double bw) in Benchmark.PerLayer(arch, r.GetValue(batch), r.GetValue(threads), LowPrecision.Parse(r.GetValue(precision)!)))
                {
                    table.AddRow(Markup.Escape(layer), f.ToString("F2", CultureInfo.InvariantCulture), bw.ToString("F2", CultureInfo.InvariantCulture));
                    tf += f;
                    tb += bw;
                }
                table.AddRow("total", tf.ToString("F1", CultureInfo.InvariantCulture), tb.ToString("F1", CultureInfo.InvariantCulture));
                AnsiConsole.Write(table);
                return 0;
            }
            BenchResult b = Benchmark.Run(arch, r.GetValue(lrn)!, r.GetValue(batch), r.GetValue(threads), 3, r.GetValue(steps), r.GetValue(device)!,
                LowPrecision.Parse(r.GetValue(precision)!), r.GetValue(towers), r.GetValue(concurrentTowers), r.GetValue(replicas));
            double matmul = Benchmark.MatmulGflops(r.GetValue(threads));
            PeakRate peak = PeakProbe.Measure(r.GetValue(threads));
            b = b with { MatmulGflops = matmul, PeakGflops = peak.Gflops };
            System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{b.Model}{(b.Towers is null ? "" : $" towers={b.Towers}")}{(b.Replicas > 1 ? $" replicas={b.Replicas}" : "")} lrn={b.Lrn} precision={b.Precision.ToString().ToLowerInvariant()} batch={b.Batch} threads={b.Threads}: train {b.TrainImagesPerSecond:F1} img/s ({b.TrainStepMs:F1} ms/step), infer {b.InferImagesPerSecond:F1} img/s, peak RSS {b.PeakRssBytes / 1048576} MiB ({b.HugePageBytes / 1048576} MiB in huge pages after training)"));
            System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"the machine: FMA peak {peak.Gflops:F1} GFLOP/s ({peak.Vectors}, {peak.Threads} threads); libtorch's 2048² matmul {matmul:F1} GFLOP/s; float32 FC layers on {(FullyConnected.Available ? "oneDNN's sgemm" : "libtorch's linear (no libdnnl2 or no AVX-512)")}"));
            System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{b.MultiplyAddsPerImage / 1e6:F1} M multiply-adds per image forward, {b.TrainMultiplyAddsPerImage / 1e6:F1} M per training image (3× less conv1's input gradient, {b.Conv1MultiplyAdds / 1e6:F1} M, which is not computed)"));
            System.Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"achieved: train {b.TrainGflops:F1} GFLOP/s = {100 * b.TrainGflops / peak.Gflops:F0}% of the FMA peak ({100 * b.TrainGflops / matmul:F0}% of the matmul rate); infer {b.InferGflops:F1} GFLOP/s = {100 * b.InferGflops / peak.Gflops:F0}% of the peak"));
            if (b.Precision == Precision.Bf16)
            {
                System.Console.WriteLine("bf16: the yardstick is still the float32 FMA peak; AVX-512 BF16's dot products do two multiply-adds per float32 lane per instruction, so over 100% is possible.");
            }
            if (r.GetValue(json) is string jsonPath)
            {
                Json.Write(jsonPath, b);
            }
            return 0;
        }));
        return command;
    }

    /// <summary>
    /// `bench --onnx-peer`: our inference against ONNX Runtime's on the same exported weights, alternating rounds;
    /// under --precision int8 both run the same QDQ file and our float32 is timed beside them.
    /// </summary>
    private static int OnnxPeer(string[] nets, int batch, int threads, int steps, int rounds, int classes, int channels, Precision precision,
        InferenceEngine engine, string? json)
    {
        bool int8 = precision == Precision.Int8;
        // The yardsticks before the rounds and after them, the larger kept: a shared machine's slow moment is not its
        // peak (the fraction of peak is then a lower bound only where the rounds themselves met such a moment).
        PeakRate peak = PeakProbe.Measure(threads);
        Int8PeakRate? int8Peak = int8 ? PeakProbe.MeasureInt8(threads) : null;
        var table = new Table().Title($"inference {precision.ToString().ToLowerInvariant()}, batch {batch}, {threads} threads, {rounds} alternating rounds (medians); oneDNN {OneDnnNet.Isa}")
            .AddColumn("net").AddColumn(new TableColumn("ours img/s").RightAligned()).AddColumn(new TableColumn("ONNX Runtime img/s").RightAligned())
            .AddColumn(new TableColumn("ours / ORT").RightAligned()).AddColumn(new TableColumn(int8 ? "int8 / our fp32" : "of FMA peak").RightAligned());
        var results = new System.Collections.Generic.List<OnnxPeerResult>();
        string temp = System.IO.Directory.CreateTempSubdirectory("alexnet-onnx-peer").FullName;
        try
        {
            foreach (string name in nets)
            {
                Architecture arch = Variants.Get(name, classes, channels);
                var perRound = Benchmark.VersusOnnxRuntime(arch, batch, threads, steps, rounds, System.IO.Path.Combine(temp, name + ".onnx"), precision, engine);
                double ours = Benchmark.Median(perRound.Select(p => p.Ours).ToList()), ort = Benchmark.Median(perRound.Select(p => p.OnnxRuntime).ToList());
                double ratio = Benchmark.Median(perRound.Select(p => p.Ours / p.OnnxRuntime).ToList());
                double? overFp32 = int8 ? Benchmark.Median(perRound.Select(p => p.Ours / p.OursFp32!.Value).ToList()) : null;
                double gflops = ours * 2 * ModelSummary.Of(arch).MultiplyAdds / 1e9;
                results.Add(new OnnxPeerResult(name, precision.ToString().ToLowerInvariant(), batch, threads, Compute.CpuDescription(), OneDnnNet.Isa, perRound.ToArray(), ours, ort, ratio,
                    overFp32, gflops, 0, null));
                System.IO.File.Delete(System.IO.Path.Combine(temp, name + ".onnx"));
            }
        }
        finally
        {
            System.IO.Directory.Delete(temp, recursive: true);
        }
        PeakRate after = PeakProbe.Measure(threads);
        peak = after.Gflops > peak.Gflops ? after : peak;
        if (int8Peak is not null)
        {
            Int8PeakRate again = PeakProbe.MeasureInt8(threads);
            int8Peak = new Int8PeakRate(System.Math.Max(again.VnniYmmGops, int8Peak.VnniYmmGops), System.Math.Max(again.OneDnnGemmGops, int8Peak.OneDnnGemmGops), threads);
        }
        for (int i = 0; i < results.Count; i++)
        {
            OnnxPeerResult x = results[i] = results[i] with { FmaPeakGflops = peak.Gflops, Int8Peak = int8Peak };
            table.AddRow(x.Net, x.Ours.ToString("F1", CultureInfo.InvariantCulture), x.OnnxRuntime.ToString("F1", CultureInfo.InvariantCulture),
                (x.Ratio < 1 ? "[red]" : "") + x.Ratio.ToString("F2", CultureInfo.InvariantCulture) + "×" + (x.Ratio < 1 ? "[/]" : ""),
                x.Int8OverFp32 is double o ? o.ToString("F2", CultureInfo.InvariantCulture) + "×" : (x.OursGflops / peak.Gflops).ToString("P0", CultureInfo.InvariantCulture));
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated($"FMA peak {peak.Gflops:F0} GFLOP/s ({peak.Vectors}, {threads} threads); ours runs on {(engine == InferenceEngine.Libtorch ? "libtorch" : "oneDNN where it serves the net")}.");
        if (int8Peak is not null)
        {
            AnsiConsole.MarkupLineInterpolated($"int8 yardsticks: VNNI on 256-bit vectors {int8Peak.VnniYmmGops:F0} GOP/s, oneDNN's 2048³ u8·s8 GEMM {int8Peak.OneDnnGemmGops:F0} GOP/s; ours: {string.Join(", ", results.Select(x => $"{x.Net} {x.OursGflops:F0} GOP/s ({x.OursGflops / int8Peak.OneDnnGemmGops:P0} of the GEMM's)"))}.");
        }
        if (json is not null)
        {
            Json.Write(json, results);
        }
        return 0;
    }

    /// <summary>
    /// `bench --onnx-peer`'s result for one net (medians over the rounds), as written to --json. GFLOP/s counts a
    /// multiply-add as 2 operations, int8 or float; under int8 the int8 yardsticks (PeakProbe) are recorded too.
    /// </summary>
    internal sealed record OnnxPeerResult(string Net, string Precision, int Batch, int Threads, string Cpu, string OneDnnIsa, Benchmark.InferenceRound[] Rounds,
        double Ours, double OnnxRuntime, double Ratio, double? Int8OverFp32, double OursGflops, double FmaPeakGflops, Int8PeakRate? Int8Peak);
}
