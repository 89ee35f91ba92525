using System;
using System.Collections.Generic;
using System.CommandLine;
using System.Globalization;
using System.Linq;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using AlexNet.Performance;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>
/// `alexnet bench`: a training step's and inference's throughput on in-memory batches; each sub-command measures one
/// thing (against a peer, or alone) and writes its typed result with --json.
/// </summary>
internal static class BenchCommand
{
    /// <summary>The flags that were modes of `bench` before its sub-commands, and what to type now.</summary>
    private static readonly (string Flag, string Now)[] Moved =
    [
        ("--peer", "bench peer"), ("--onnx-peer", "bench onnx"), ("--prepare", "bench prepare TREE"),
        ("--prepare-script", "bench prepare --script"),
        ("--loader", "bench loader STORE"), ("--layers", "bench layers"), ("--lrn-only", "bench lrn SHAPE"),
        ("--stage-only", "bench stage SHAPE"),
        ("--update-only", "bench update"), ("--rss-steps", "bench rss --steps N"),
        ("--peer-script", "bench peer --script"),
        ("--peer-python", "bench peer --python"), ("--peer-channels-last", "bench peer --channels-last"),
        ("--models", "bench peer|onnx --models"),
        ("--rounds", "bench peer|onnx|prepare --rounds"), ("--engine", "bench onnx --engine"),
    ];

    public static Command Create()
    {
        var o = new Shared();
        var lrn = LrnMode();
        Option<string> device = Cli.DeviceOption();
        Option<string> precision = Cli.PrecisionOption();
        var towers = new Option<string?>("--towers")
        {
            Description = "§3.2: time the net as two towers on these two devices, e.g. cpu,cpu (paper and small).",
        };
        var concurrentTowers = new Option<bool>("--concurrent-towers")
        {
            Description = "With --towers: the two towers' forward work at the same time, --threads split between them.",
        };
        var replicas = new Option<int>("--replicas")
        {
            Description = Cli.ReplicasDescription,
            DefaultValueFactory = _ => 1,
        };
        var command =
            new Command("bench", "Measure training-step and inference throughput on in-memory batches; the " +
            "sub-commands measure against the peers (peer, onnx, prepare, serve) or one part alone.")
        {
            o.Model, o.Batch, o.Threads, lrn, o.Steps, o.Classes, o.Channels, o.Input, device, precision, towers,
                concurrentTowers, replicas, o.Json,
        };
        // a mode flag of old gets the sub-command's name, not "unrecognized"
        command.TreatUnmatchedTokensAsErrors = false;
        foreach (Command sub in new[] { Peer(), Onnx(), Prepare(), Loader(), Layers(), Lrn(), Stage(), Update(),
            Rss(), BenchServeCommand.Create() })
        {
            command.Subcommands.Add(sub);
        }
        command.SetAction(r => Cli.Run(() =>
        {
            RefuseMovedFlags(r);
            Precision p = Float(r.GetValue(precision)!);
            BenchResult b = Benchmark.Run(o.Architecture(r), r.GetValue(lrn)!, r.GetValue(o.Batch),
                r.GetValue(o.Threads), 3, r.GetValue(o.Steps), r.GetValue(device)!,
                p, r.GetValue(towers), r.GetValue(concurrentTowers), r.GetValue(replicas));
            double matmul = Benchmark.MatmulGflops(r.GetValue(o.Threads));
            PeakRate peak = PeakProbe.Measure(r.GetValue(o.Threads));
            b = b with { MatmulGflops = matmul, PeakGflops = peak.Gflops };
            Console.WriteLine(
                Text($"{b.Model}{(b.Towers is null ? "" : $" towers={b.Towers}")}{(b.Replicas > 1 ? $" replicas={b.Replicas}" : "")} lrn={b.Lrn} precision={b.Precision.ToString().ToLowerInvariant()} batch={b.Batch} threads={b.Threads}: train {b.TrainImagesPerSecond:F1} img/s ({b.TrainStepMs:F1} ms/step), infer {b.InferImagesPerSecond:F1} img/s, peak RSS {b.PeakRssBytes / 1048576} MiB ({b.HugePageBytes / 1048576} MiB in huge pages after training)"));
            Console.WriteLine(
                Text($"the machine: FMA peak {peak.Gflops:F1} GFLOP/s ({peak.Vectors}, {peak.Threads} threads); libtorch's 2048² matmul {matmul:F1} GFLOP/s; float32 FC layers on {(FullyConnected.Available ? "oneDNN's sgemm" : "libtorch's linear (no libdnnl2 or no AVX-512)")}; training's convolutions on {(OneDnnConv.Enabled ? $"oneDNN's primitives (ALEXNET_TRAIN_CONV=onednn; conv1 to pool5 blocked: {string.Join("; ", OneDnnFeatures.Algorithms)}; per layer: {string.Join(", ", OneDnnConv.Algorithms)})" : "libtorch's")}"));
            Console.WriteLine(
                Text($"{b.MultiplyAddsPerImage / 1e6:F1} M multiply-adds per image forward, {b.TrainMultiplyAddsPerImage / 1e6:F1} M per training image (3× less conv1's input gradient, {b.Conv1MultiplyAdds / 1e6:F1} M, which is not computed)"));
            Console.WriteLine(
                Text($"achieved: train {b.TrainGflops:F1} GFLOP/s = {100 * b.TrainGflops / peak.Gflops:F0}% of the FMA peak ({100 * b.TrainGflops / matmul:F0}% of the matmul rate); infer {b.InferGflops:F1} GFLOP/s = {100 * b.InferGflops / peak.Gflops:F0}% of the peak"));
            if (b.Precision == Precision.Bf16)
            {
                Console.WriteLine(
                    "bf16: the yardstick is still the float32 FMA peak; AVX-512 BF16's dot products do two " +
                    "multiply-adds per float32 lane per instruction, so over 100% is possible.");
            }
            o.Write(r, b);
            return 0;
        }));
        return command;
    }

    /// <summary>A mode flag of old names its sub-command; any other stray token is an error as usual.</summary>
    private static void RefuseMovedFlags(ParseResult r)
    {
        IReadOnlyList<string> stray = r.UnmatchedTokens;
        foreach ((string flag, string now) in Moved)
        {
            if (stray.Contains(flag))
            {
                throw new UserError(
                    $"`bench {flag}` is now the sub-command `{now}` (`alexnet bench --help` lists them).");
            }
        }
        if (stray.Count > 0)
        {
            throw new UserError(
                $"bench does not take {string.Join(" ", stray)}: `alexnet bench --help` lists its flags and " +
                "sub-commands.");
        }
    }

    /// <summary>`bench peer`: ours against PyTorch (bench/peer.py) on the same nets, batch and threads.</summary>
    private static Command Peer()
    {
        var o = new Shared();
        var script = new Option<string>("--script")
        {
            Description = "The peer script.",
            DefaultValueFactory = _ => "bench/peer.py",
        };
        var python = new Option<string>("--python")
        {
            Description = "The interpreter that runs the peer script.",
            DefaultValueFactory = _ => PeerComparison.DefaultPython,
        };
        var channelsLast = new Option<bool>("--channels-last")
        {
            Description = "Run the peer in channels-last (NHWC) layout.",
        };
        var command =
            new Command("peer", "Training and inference throughput, ours and the PyTorch peer's (bench/peer.py, " +
            "Debian's python3-torch) on the same nets, interleaved rounds, and the ratios.")
        {
            o.Model, o.Models, o.Batch, o.Threads, o.Steps, o.Rounds, o.Classes, o.Channels,
                script, python, channelsLast, o.Json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string[] names = o.Nets(r);
            o.CheckRoundsAndSteps(r);
            return PeerComparison.Run(names, r.GetValue(o.Batch), r.GetValue(o.Threads), r.GetValue(o.Steps),
                r.GetValue(o.Rounds), r.GetValue(python)!,
                r.GetValue(script)!, r.GetValue(channelsLast), r.GetValue(o.Classes),
                r.GetValue(o.Channels), r.GetValue(o.Json));
        }));
        return command;
    }

    /// <summary>
    /// `bench onnx`: our inference against ONNX Runtime's on the same exported weights, alternating rounds; under
    /// --precision int8 both run the same QDQ file and our float32 is timed beside them.
    /// </summary>
    private static Command Onnx()
    {
        var o = new Shared();
        Option<string> precision = Cli.PrecisionOption(inference: true);
        Option<string> engine = Cli.EngineOption();
        var command =
            new Command("onnx", "Inference of each net exported to ONNX and run by ONNX Runtime against ours, same " +
            "weights, batch and threads, alternating rounds; the ratio and the fraction of the measured peak.")
        {
            o.Model, o.Models, o.Batch, o.Threads, o.Steps, o.Rounds, o.Classes, o.Channels, precision, engine, o.Json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string[] nets = o.Nets(r);
            o.CheckRoundsAndSteps(r);
            return OnnxPeer(nets, r.GetValue(o.Batch), r.GetValue(o.Threads), r.GetValue(o.Steps),
                r.GetValue(o.Rounds), r.GetValue(o.Classes),
                r.GetValue(o.Channels), LowPrecision.Parse(r.GetValue(precision)!),
                OneDnnNet.ParseEngine(r.GetValue(engine)!), r.GetValue(o.Json));
        }));
        return command;
    }

    /// <summary>`bench prepare TREE`: §2's preparation, ours against the PIL peer.</summary>
    private static Command Prepare()
    {
        var o = new Shared();
        var tree = new Argument<string>("tree")
        {
            Description = "A class-folder tree of images (one folder per class).",
        };
        var script = new Option<string>("--script")
        {
            Description = "The PIL peer script.",
            DefaultValueFactory = _ => "bench/prepare_peer.py",
        };
        var python = new Option<string>("--python")
        {
            Description = "The interpreter that runs the peer script.",
            DefaultValueFactory = _ => PeerComparison.DefaultPython,
        };
        var command =
            new Command("prepare", "Time `alexnet prepare` on a class-folder tree against the PIL peer " +
            "(bench/prepare_peer.py, as many processes as threads), alternating rounds, and print the ratio.")
        {
            tree, o.Threads, o.Rounds, script, python, o.Json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            Cli.Positive(r.GetValue(o.Rounds), "--rounds");
            return PreparePeer.Run(r.GetValue(tree)!, r.GetValue(o.Threads), r.GetValue(o.Rounds), r.GetValue(python)!,
                r.GetValue(script)!, r.GetValue(o.Json));
        }));
        return command;
    }

    /// <summary>`bench loader STORE`: the training loader alone, and a step fed by it against one on a batch in
    /// memory.</summary>
    private static Command Loader()
    {
        var o = new Shared();
        var store = new Argument<string>("store") { Description = "A store `alexnet prepare` wrote." };
        var command =
            new Command("loader", "The training loader (full §4.1 augmentation) on a store with 1 and 2 workers, and " +
            "a step fed by it against one on a batch in memory.")
        {
            store, o.Model, o.Batch, o.Threads, o.Steps, o.Json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string storeDir = r.GetValue(store)!;
            int batch = r.GetValue(o.Batch);
            using var s = AlexNet.Data.ImageStore.Open(storeDir);
            var rates = new List<LoaderRate>();
            foreach (int workers in new[] { 1, 2 })
            {
                rates.Add(new LoaderRate(workers, Benchmark.LoaderImagesPerSecond(s, workers, batch)));
                Console.WriteLine(
                    Text($"loader {storeDir} ({s.Height}×{s.Width}×{s.Channels}), full §4.1 augmentation, {workers} worker(s), batch {batch}: {rates[^1].ImagesPerSecond:F0} images/s"));
            }
            var t = new AlexNet.Training.TrainOptions
            {
                Model = r.GetValue(o.Model)!,
                BatchSize = batch,
                InputScale = AlexNet.Training.Recipes.InputScaleFor(s.Height),
            };
            (double withLoader, double inMemory) = Benchmark.LoaderVersusMemory(s, t,
                new AlexNet.Training.MachineOptions(r.GetValue(o.Threads)), r.GetValue(o.Steps));
            Console.WriteLine(
                Text($"{t.Model} batch {batch}: step {withLoader:F1} ms fed by the loader (full augmentation, 1 worker) vs {inMemory:F1} ms in memory: ratio {withLoader / inMemory:F3}; the step consumes {batch * 1000 / inMemory:F1} images/s"));
            o.Write(r, new LoaderResult(storeDir, s.Height, s.Width, s.Channels, batch, rates.ToArray(), t.Model,
                withLoader, inMemory, withLoader / inMemory));
            return 0;
        }));
        return command;
    }

    /// <summary>`bench layers`: each layer's forward and backward alone.</summary>
    private static Command Layers()
    {
        var o = new Shared();
        Option<string> precision = Cli.PrecisionOption();
        var steps = new Option<int>("--steps")
        {
            Description = "Timed steps of each layer; the median is reported.",
            DefaultValueFactory = _ => 5,
        };
        var command = new Command("layers", "Time each layer's forward and backward alone.")
        {
            o.Model, o.Batch, o.Threads, steps, o.Classes, o.Channels, o.Input, precision, o.Json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            Precision p = Float(r.GetValue(precision)!);
            Cli.Positive(r.GetValue(steps), "--steps");
            LayerTiming[] rows = Benchmark.PerLayer(o.Architecture(r), r.GetValue(o.Batch),
                r.GetValue(o.Threads), p, r.GetValue(steps))
                .Select(x => new LayerTiming(x.Layer, x.ForwardMs, x.BackwardMs)).ToArray();
            var table = new Table().AddColumn("layer").AddColumn(new TableColumn("forward ms").RightAligned())
                .AddColumn(new TableColumn("backward ms").RightAligned());
            foreach (LayerTiming x in rows)
            {
                table.AddRow(Markup.Escape(x.Layer), Text($"{x.ForwardMs:F2}"), Text($"{x.BackwardMs:F2}"));
            }
            var result = new LayersResult(r.GetValue(o.Model)!, r.GetValue(o.Batch), r.GetValue(o.Threads),
                p.ToString().ToLowerInvariant(), rows,
                rows.Sum(x => x.ForwardMs), rows.Sum(x => x.BackwardMs));
            table.AddRow("total", Text($"{result.ForwardMs:F1}"), Text($"{result.BackwardMs:F1}"));
            AnsiConsole.Write(table);
            o.Write(r, result);
            return 0;
        }));
        return command;
    }

    /// <summary>`bench lrn SHAPE`: §3.3's LRN alone, our kernel and libtorch's operations.</summary>
    private static Command Lrn()
    {
        var o = new Shared();
        var shape = ShapeArgument();
        var command =
            new Command("lrn", "Time §3.3's LRN alone on a tensor of this shape: our kernel on 1 and 2 threads, then " +
            "fused against libtorch's operations.")
        {
            shape, o.Threads, o.Steps, o.Json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            long[] s = Shape(r.GetValue(shape)!);
            int steps = r.GetValue(o.Steps);
            Cli.Positive(steps, "--steps");
            var kernel = new List<KernelTiming>();
            foreach (int t in new[] { 1, 2 })
            {
                (double kf, double kb) = Benchmark.LrnKernelOnly(s, t, 2 * steps);
                kernel.Add(new KernelTiming(t, kf, kb));
                Console.WriteLine(Text($"LRN kernel only, {t} thread(s): forward {kf:F2} ms, backward {kb:F2} ms"));
            }
            (Timing fused, Timing torch) = FusedAgainstLibtorch(fused => Benchmark.LrnOnly(s, fused,
                r.GetValue(o.Threads), steps), "LRN", r.GetValue(shape)!);
            o.Write(r, new LrnResult(s, r.GetValue(o.Threads), kernel.ToArray(), fused, torch));
            return 0;
        }));
        return command;
    }

    /// <summary>`bench stage SHAPE`: the fused ReLU→LRN→max-pool stage against libtorch's three operations.</summary>
    private static Command Stage()
    {
        var o = new Shared();
        var shape = ShapeArgument();
        var command =
            new Command("stage", "Time the fused ReLU→LRN→max-pool stage and libtorch's three operations on a conv " +
            "output of this shape.")
        {
            shape, o.Threads, o.Steps, o.Json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            long[] s = Shape(r.GetValue(shape)!);
            Cli.Positive(r.GetValue(o.Steps), "--steps");
            (Timing fused, Timing torch) = FusedAgainstLibtorch(fused => Benchmark.StageOnly(s, fused,
                r.GetValue(o.Threads), r.GetValue(o.Steps)), "ReLU→LRN→pool", r.GetValue(shape)!);
            o.Write(r, new StageResult(s, r.GetValue(o.Threads), fused, torch));
            return 0;
        }));
        return command;
    }

    /// <summary>`bench update`: §5's update alone.</summary>
    private static Command Update()
    {
        var o = new Shared();
        var command =
            new Command("update", "Time §5's update over the net's parameters alone: the fused pass and libtorch's " +
            "operations.")
        {
            o.Model, o.Threads, o.Steps, o.Classes, o.Channels, o.Input, o.Json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            Architecture arch = o.Architecture(r);
            (double fusedMs, double torchMs) = Benchmark.UpdateOnly(arch, r.GetValue(o.Threads), r.GetValue(o.Steps));
            long parameters = ModelSummary.Of(arch).Parameters;
            Console.WriteLine(
                Text($"§5 update of {parameters / 1e6:F1} M parameters, {r.GetValue(o.Threads)} threads: one fused pass {fusedMs:F1} ms, libtorch's operations and zero_ {torchMs:F1} ms ({torchMs / fusedMs:F2}×)"));
            o.Write(r, new UpdateResult(arch.Variant, parameters, r.GetValue(o.Threads), fusedMs, torchMs));
            return 0;
        }));
        return command;
    }

    /// <summary>`bench rss`: resident memory over many training steps (it must stay flat).</summary>
    private static Command Rss()
    {
        var o = new Shared();
        var lrn = LrnMode();
        Option<string> precision = Cli.PrecisionOption();
        var steps = new Option<int>("--steps")
        {
            Description = "Training steps after 50 warm-up steps; resident memory is read every 50.",
            DefaultValueFactory = _ => 500,
        };
        var command =
            new Command("rss", "Train on in-memory batches and report resident memory every 50 steps after 50 warm-up " +
            "steps (it must stay flat).")
        {
            o.Model, o.Batch, o.Threads, lrn, steps, o.Classes, o.Channels, precision, o.Json,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            Cli.Positive(r.GetValue(steps), "--steps");
            var samples = Benchmark.RssOverSteps(Variants.Get(r.GetValue(o.Model)!, r.GetValue(o.Classes),
                r.GetValue(o.Channels)), r.GetValue(lrn)!,
                r.GetValue(o.Batch), r.GetValue(o.Threads), 50, r.GetValue(steps), Float(r.GetValue(precision)!));
            foreach ((int step, long bytes) in samples)
            {
                Console.WriteLine(Text($"step {step}: RSS {bytes / 1048576.0:F1} MiB"));
            }
            long lo = samples.Min(s => s.RssBytes), hi = samples.Max(s => s.RssBytes);
            Console.WriteLine(
                Text($"RSS range over {r.GetValue(steps)} steps: {lo / 1048576.0:F1}–{hi / 1048576.0:F1} MiB ({100.0 * (hi - lo) / lo:F1}% spread)"));
            o.Write(r, new RssResult(r.GetValue(o.Model)!, r.GetValue(o.Batch), r.GetValue(o.Threads),
                samples.Select(s => new RssSample(s.Step, s.RssBytes)).ToArray(), lo, hi));
            return 0;
        }));
        return command;
    }

    private static (Timing Fused, Timing Libtorch) FusedAgainstLibtorch(
        Func<bool, (double ForwardMs, double BackwardMs)> time, string what, string shape)
    {
        var result = new Timing[2];
        foreach (bool fused in new[] { true, false })
        {
            (double f, double b) = time(fused);
            result[fused ? 0 : 1] = new Timing(f, b);
            Console.WriteLine(
                Text($"{what} {(fused ? "fused" : "libtorch")} {shape}: forward {f:F2} ms, backward {b:F2} ms"));
        }
        return (result[0], result[1]);
    }

    private static Option<string> LrnMode()
    {
        var lrn = new Option<string>("--lrn")
        {
            Description = "fused (ours), torch (libtorch's), none.",
            DefaultValueFactory = _ => "fused",
        };
        lrn.AcceptOnlyFromAmong("fused", "torch", "none");
        return lrn;
    }

    private static Argument<string> ShapeArgument() =>
        new("shape") { Description = "N×C×H×W as NxCxHxW, e.g. 64x96x55x55 (conv1's output at batch 64)." };

    /// <summary>"64x96x55x55" → its four sizes; anything else names the argument and an example.</summary>
    private static long[] Shape(string text)
    {
        string[] parts = text.Split('x');
        return parts.Length == 4 && parts.All(p => long.TryParse(p, NumberStyles.None,
            CultureInfo.InvariantCulture, out long v) && v > 0)
            ? Array.ConvertAll(parts, p => long.Parse(p, CultureInfo.InvariantCulture))
            : throw new UserError($"shape {text}: give four positive sizes as NxCxHxW, e.g. 64x96x55x55.");
    }

    /// <summary>A training precision: int8 is inference's alone (`bench onnx --precision int8`).</summary>
    private static Precision Float(string name) => LowPrecision.Parse(name) is var p && p == Precision.Int8
        ? throw new UserError(
        "--precision int8 times inference only: `bench onnx --precision int8` (ours against ONNX Runtime, both int8, " +
        "with our float32 beside them).")
        : p;

    private static string Text(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The options the sub-commands share, made afresh for each (an option belongs to one command); each adds the
    /// ones it takes.
    /// </summary>
    private sealed class Shared
    {
        public readonly Option<string> Model = Cli.ModelOption(Variants.Paper);
        public readonly Option<string?> Models = new("--models")
        {
            Description = "Comma-separated nets to compare (default: --model).",
        };
        public readonly Option<int> Batch = new("--batch-size", "-b")
        {
            Description = "Batch size.",
            DefaultValueFactory = _ => 64,
        };
        public readonly Option<int> Threads = new("--threads")
        {
            Description = "Compute threads.",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        public readonly Option<int> Steps = new("--steps")
        {
            Description = "Timed steps (after 3 warm-up steps); the median is reported.",
            DefaultValueFactory = _ => 10,
        };
        public readonly Option<int> Rounds = new("--rounds")
        {
            Description = "Interleaved rounds, ours and the peer's; medians are reported.",
            DefaultValueFactory = _ => 3,
        };
        public readonly Option<int?> Input = new("--input", "-s")
        {
            Description = "Input side (default: the variant's).",
        };
        public readonly Option<int> Classes = new("--classes")
        {
            Description = "Classes.",
            DefaultValueFactory = _ => 1000,
        };
        public readonly Option<int> Channels = new("--channels")
        {
            Description = "Input channels.",
            DefaultValueFactory = _ => 3,
        };
        public readonly Option<string?> Json = new("--json")
        {
            Description = "Also write the result to this JSON file.",
        };

        public Architecture Architecture(ParseResult r) =>
            Variants.Get(r.GetValue(Model)!, r.GetValue(Classes), r.GetValue(Channels), r.GetValue(Input));

        /// <summary>--models or --model; an unknown name fails here, before anything runs.</summary>
        public string[] Nets(ParseResult r)
        {
            string[] names = (r.GetValue(Models) ?? r.GetValue(Model)!).Split(',',
                StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            foreach (string name in names)
            {
                Variants.Get(name, r.GetValue(Classes), r.GetValue(Channels));
            }
            return names;
        }

        public void CheckRoundsAndSteps(ParseResult r)
        {
            Cli.Positive(r.GetValue(Rounds), "--rounds");
            Cli.Positive(r.GetValue(Steps), "--steps");
        }

        public void Write<T>(ParseResult r, T result)
        {
            if (r.GetValue(Json) is string path)
            {
                AlexNet.Json.Write(path, result);
            }
        }
    }

    private static int OnnxPeer(string[] nets, int batch, int threads, int steps, int rounds, int classes,
        int channels, Precision precision,
        InferenceEngine engine, string? json)
    {
        bool int8 = precision == Precision.Int8;
        // The yardsticks before the rounds and after them, the larger kept: a shared machine's slow moment is not its
        // peak (the fraction of peak is then a lower bound only where the rounds themselves met such a moment).
        PeakRate peak = PeakProbe.Measure(threads);
        Int8PeakRate? int8Peak = int8 ? PeakProbe.MeasureInt8(threads) : null;
        var table = new Table().Title(
            $"inference {precision.ToString().ToLowerInvariant()}, batch {batch}, {threads} threads, {rounds} " +
            $"alternating rounds (medians); oneDNN {OneDnnNet.Isa}")
            .AddColumn("net").AddColumn(new TableColumn("ours img/s").RightAligned())
            .AddColumn(new TableColumn("ONNX Runtime img/s").RightAligned())
            .AddColumn(new TableColumn("ours / ORT").RightAligned()).AddColumn(new TableColumn(int8 ? "int8 / our fp32"
            : "of FMA peak").RightAligned());
        var results = new List<OnnxPeerResult>();
        string temp = System.IO.Directory.CreateTempSubdirectory("alexnet-onnx-peer").FullName;
        try
        {
            foreach (string name in nets)
            {
                Architecture arch = Variants.Get(name, classes, channels);
                var perRound = Benchmark.VersusOnnxRuntime(arch, batch, threads, steps, rounds,
                    System.IO.Path.Combine(temp, name + ".onnx"), precision, engine);
                double ours = Benchmark.Median(perRound.Select(p => p.Ours).ToList()),
                    ort = Benchmark.Median(perRound.Select(p => p.OnnxRuntime).ToList());
                double ratio = Benchmark.Median(perRound.Select(p => p.Ours / p.OnnxRuntime).ToList());
                double? overFp32 = int8
                    ? Benchmark.Median(perRound.Select(p => p.Ours / p.OursFp32!.Value).ToList()) : null;
                double gflops = ours * 2 * ModelSummary.Of(arch).MultiplyAdds / 1e9;
                results.Add(new OnnxPeerResult(name, precision.ToString().ToLowerInvariant(), batch, threads,
                    Compute.CpuDescription(), OneDnnNet.Isa, perRound.ToArray(), ours, ort, ratio,
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
            int8Peak = new Int8PeakRate(Math.Max(again.VnniYmmGops, int8Peak.VnniYmmGops),
                Math.Max(again.OneDnnGemmGops, int8Peak.OneDnnGemmGops), threads);
        }
        for (int i = 0; i < results.Count; i++)
        {
            OnnxPeerResult x = results[i] = results[i] with { FmaPeakGflops = peak.Gflops, Int8Peak = int8Peak };
            table.AddRow(x.Net, Text($"{x.Ours:F1}"), Text($"{x.OnnxRuntime:F1}"),
                (x.Ratio < 1 ? "[red]" : "") + Text($"{x.Ratio:F2}×") + (x.Ratio < 1 ? "[/]" : ""),
                x.Int8OverFp32 is double o ? Text($"{o:F2}×") : (x.OursGflops / peak.Gflops).ToString("P0",
                CultureInfo.InvariantCulture));
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated(
            $"FMA peak {peak.Gflops:F0} GFLOP/s ({peak.Vectors}, {threads} threads); ours runs on {(engine == InferenceEngine.Libtorch ? "libtorch" : "oneDNN where it serves the net")}.");
        if (int8Peak is not null)
        {
            AnsiConsole.MarkupLineInterpolated(
                $"int8 yardsticks: VNNI on 256-bit vectors {int8Peak.VnniYmmGops:F0} GOP/s, oneDNN's 2048³ u8·s8 GEMM {int8Peak.OneDnnGemmGops:F0} GOP/s; ours: {string.Join(", ", results.Select(x => $"{x.Net} {x.OursGflops:F0} GOP/s ({x.OursGflops / int8Peak.OneDnnGemmGops:P0} of the GEMM's)"))}.");
        }
        if (json is not null)
        {
            AlexNet.Json.Write(json, results);
        }
        return 0;
    }
}

/// <summary>
/// `bench onnx`'s result for one net (medians over the rounds), as written to --json. GFLOP/s counts a multiply-add
/// as 2 operations, int8 or float; under int8 the int8 yardsticks (PeakProbe) are recorded too.
/// </summary>
internal sealed record OnnxPeerResult(string Net, string Precision, int Batch, int Threads, string Cpu,
    string OneDnnIsa, Benchmark.InferenceRound[] Rounds,
    double Ours, double OnnxRuntime, double Ratio, double? Int8OverFp32, double OursGflops,
    double FmaPeakGflops, Int8PeakRate? Int8Peak);

/// <summary>A forward and a backward time, in milliseconds.</summary>
internal sealed record Timing(double ForwardMs, double BackwardMs);

internal sealed record KernelTiming(int Threads, double ForwardMs, double BackwardMs);

/// <summary>`bench lrn`'s result: our kernel alone by threads, then the fused layer against libtorch's
/// operations.</summary>
internal sealed record LrnResult(long[] Shape, int Threads, KernelTiming[] Kernel, Timing Fused, Timing Libtorch);

/// <summary>`bench stage`'s result: the fused ReLU→LRN→max-pool stage against libtorch's three operations.</summary>
internal sealed record StageResult(long[] Shape, int Threads, Timing Fused, Timing Libtorch);

/// <summary>`bench update`'s result: §5's update as one fused pass against libtorch's operations.</summary>
internal sealed record UpdateResult(string Model, long Parameters, int Threads, double FusedMs, double LibtorchMs);

internal sealed record LayerTiming(string Layer, double ForwardMs, double BackwardMs);

/// <summary>`bench layers`' result: each layer's forward and backward, and their sums.</summary>
internal sealed record LayersResult(string Model, int Batch, int Threads, string Precision, LayerTiming[] Layers,
    double ForwardMs, double BackwardMs);

internal sealed record LoaderRate(int Workers, double ImagesPerSecond);

/// <summary>`bench loader`'s result: the loader's rate by workers, and a step fed by it against one in
/// memory.</summary>
internal sealed record LoaderResult(string Store, int Height, int Width, int Channels, int Batch, LoaderRate[] Loader,
    string Model, double LoaderStepMs,
    double MemoryStepMs, double Ratio);

internal sealed record RssSample(int Step, long RssBytes);

/// <summary>`bench rss`'s result: resident memory every 50 steps, and its range.</summary>
internal sealed record RssResult(string Model, int Batch, int Threads, RssSample[] Samples,
    long MinBytes, long MaxBytes);
