// §3.2 The net split across two devices as the paper ran it on two GTX 580s: each tower holds half of every
// layer's kernels (conv) or neurons (FC) on its own device, and the towers exchange maps only where Figure 2
// connects them: conv3 reads both towers' conv2 maps, and each half of fc6, fc7 and fc8 reads the whole of the
// layer below. conv2, conv4 and conv5 read only their own tower's maps, and each tower normalises (§3.3) only its
// own. That is what the grouped `paper` net computes on one device (groups = 2, LrnParams.Towers = 2), so a
// TowerNet is made from a grouped net's weights and writes them back: checkpoints stay the grouped net's.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading.Tasks;
using AlexNet.Model.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model;

public sealed class TowerNet : nn.Module<Tensor, Tensor>
{
    private const int Count = 2;   // §3.2: two GPUs

    private readonly Device[] _devices;
    private readonly Conv2d[][] _convs;     // [tower][layer]
    private readonly Linear[][] _fcs;       // [tower][fc6, fc7, fc8]
    // [layer][tower]: the first row (kernel, neuron) of each tower in the grouped layer, and the end
    private readonly int[][] _rows;
    private readonly LrnParams? _lrn;       // one tower's LRN: its own maps only
    // §4.2 on fc6's and fc7's halves, as the grouped net's (AlexNetModel.Call picks the code)
    private readonly Dropout _dropout;

    public Architecture Architecture { get; }

    public KernelChoice Kernels { get; }

    public Precision Precision { get; }

    /// <summary>
    /// Run the two towers' work between exchanges at the same time, one thread each (cuda-convnet runs its two GPUs
    /// so). The backward pass runs as libtorch's CPU autograd runs it, on the calling thread.
    /// </summary>
    public bool Concurrent { get; set; }

    /// <summary>Threads each tower's operations use when <see cref="Concurrent"/>.</summary>
    public int ThreadsPerTower { get; set; } = 1;

    /// <summary>
    /// The towers of <paramref name="grouped"/> (a `paper` or `small` net, or an ablation of one), tower t's weights
    /// copied to devices[t].
    /// </summary>
    public TowerNet(AlexNetModel grouped, IReadOnlyList<Device> devices) : base("TowerNet")
    {
        Architecture a = grouped.Architecture;
        Check(a, devices.Count);
        Architecture = a;
        Kernels = grouped.Kernels;
        Precision = grouped.Precision;
        _devices = devices.ToArray();
        _lrn = a.Lrn is null ? null : a.Lrn with { Towers = 1 };
        _dropout = nn.Dropout(a.Dropout);
        register_module("dropout", _dropout);
        string[] layers = grouped.LayerNames.ToArray();
        _rows = layers.Select(name => Halves((int)grouped.LayerParameters(name).Weight.shape[0])).ToArray();
        _convs = new Conv2d[Count][];
        _fcs = new Linear[Count][];
        int convCount = a.Convs.Length;
        for (int t = 0; t < Count; t++)
        {
            var convs = new List<Conv2d>();
            int inputs = a.InputChannels;
            for (int i = 0; i < convCount; i++)
            {
                ConvLayer c = a.Convs[i];
                // A grouped layer reads its own tower's maps; an ungrouped one (conv1, conv3) reads all of them.
                int reads = c.Groups == Count ? inputs / Count : inputs;
                convs.Add(nn.Conv2d(reads, Size(i, t), c.Size, stride: c.Stride, padding: c.Padding));
                inputs = c.Kernels;
            }
            var fcs = new List<Linear>();
            long width = a.FlattenedFeatures;
            for (int i = convCount; i < layers.Length; i++)
            {
                fcs.Add(nn.Linear(width, Size(i, t)));
                width = _rows[i][Count];
            }
            _convs[t] = convs.ToArray();
            _fcs[t] = fcs.ToArray();
            register_module($"tower{t}", nn.ModuleList(convs.Cast<nn.Module>().Concat(fcs).ToArray()));
        }
        for (int t = 0; t < Count; t++)
        {
            foreach (nn.Module m in _convs[t].Cast<nn.Module>().Concat(_fcs[t]))
            {
                m.to(_devices[t]);
            }
        }
        ReadFrom(grouped);
    }

    /// <summary>
    /// `--towers DEV_A,DEV_B`: the towers of <paramref name="grouped"/> on those devices, <paramref name="threads"/>
    /// split between them when concurrent.
    /// </summary>
    public static TowerNet Place(AlexNetModel grouped, string devices, int threads, bool concurrent) =>
        new(grouped, Resolve(devices))
        {
            Concurrent = concurrent,
            ThreadsPerTower = Math.Max(1, threads / 2),
        };

    /// <summary>
    /// Refuses a net without §3.2's towers or a device list that is not two usable devices, before anything is built or
    /// written.
    /// </summary>
    public static void Check(Architecture a, string devices) => Check(a, Resolve(devices).Length);

    private static Device[] Resolve(string devices) =>
        devices.Split(',').Select(d => Compute.ResolveDevice(d.Trim())).ToArray();

    private int Size(int layer, int tower) => _rows[layer][tower + 1] - _rows[layer][tower];

    /// <summary>
    /// [0, ⌈n/2⌉, n]: tower 0 takes the first half of a layer's rows (rounded up for an odd fc8), tower 1 the rest.
    /// </summary>
    private static int[] Halves(int n) => new[] { 0, (n + 1) / 2, n };

    private static void Check(Architecture a, int devices)
    {
        if (devices != Count)
        {
            throw new ArgumentException(
                $"--towers takes {Count} devices (§3.2's two GPUs), e.g. cpu,cpu or cuda:0,cuda:1; got {devices}.");
        }
        if (a.TorchvisionLayout || !a.Convs.Any(c => c.Groups == Count)
            || a.Convs.Any(c => c.Groups is not (1 or Count))
            || (a.Lrn is not null && a.Lrn.Towers != Count))
        {
            throw new ArgumentException(
                $"{a.Variant} has no two towers to place: --towers takes paper or small (the nets of §3.2's Figure " +
                "2).");
        }
    }

    /// <summary>
    /// Pairs of (the grouped layer's tensor, this layer's tensor in tower t) for every weight and bias: tower t holds
    /// rows [_rows[t], _rows[t+1]).
    /// </summary>
    private IEnumerable<(Tensor Grouped, Tensor Tower, int From, int To)> Pairs(AlexNetModel grouped)
    {
        string[] layers = grouped.LayerNames.ToArray();
        for (int i = 0; i < layers.Length; i++)
        {
            (Tensor w, Tensor b) = grouped.LayerParameters(layers[i]);
            for (int t = 0; t < Count; t++)
            {
                (Tensor tw, Tensor tb) = i < _convs[t].Length ? (_convs[t][i].weight!,
                    _convs[t][i].bias!) : (_fcs[t][i - _convs[t].Length].weight!, _fcs[t][i - _convs[t].Length].bias!);
                yield return (w, tw, _rows[i][t], _rows[i][t + 1]);
                yield return (b, tb, _rows[i][t], _rows[i][t + 1]);
            }
        }
    }

    /// <summary>Copies the grouped net's weights into the towers.</summary>
    public void ReadFrom(AlexNetModel grouped)
    {
        using var _ = no_grad();
        foreach ((Tensor g, Tensor t, int from, int to) in Pairs(grouped))
        {
            using Tensor rows = g[TensorIndex.Slice(from, to)];
            t.copy_(rows);
        }
    }

    /// <summary>Copies the towers' weights into the grouped net (before a checkpoint or a validation pass).</summary>
    public void WriteInto(AlexNetModel grouped)
    {
        using var _ = no_grad();
        foreach ((Tensor g, Tensor t, int from, int to) in Pairs(grouped))
        {
            using Tensor rows = g[TensorIndex.Slice(from, to)];
            rows.copy_(t);
        }
    }

    /// <summary>
    /// Per grouped tensor in <paramref name="grouped"/>'s parameters() order, the two tower tensors its rows come from,
    /// in this net's parameters() order: how a tensor kept per parameter (momentum) maps between the two layouts.
    /// </summary>
    public (int Grouped, int[] Towers)[] ParameterMap(AlexNetModel grouped)
    {
        var groupedIndex = grouped.parameters().Select((p, i) => (p.Handle, i)).ToDictionary(x => x.Handle, x => x.i);
        var towerIndex = parameters().Select((p, i) => (p.Handle, i)).ToDictionary(x => x.Handle, x => x.i);
        return Pairs(grouped).GroupBy(p => groupedIndex[p.Grouped.Handle])
            .Select(g => (g.Key, g.OrderBy(p => p.From).Select(p => towerIndex[p.Tower.Handle]).ToArray()))
            .OrderBy(x => x.Key).ToArray();
    }

    /// <summary>
    /// Per-parameter tensors of this net (momentum buffers, in parameters() order) joined into the grouped net's
    /// layout (its parameters() order), on the CPU: what a checkpoint holds.
    /// </summary>
    public Tensor[] Join(AlexNetModel grouped, IReadOnlyList<Tensor> mine) =>
        ParameterMap(grouped).Select(m => cat(m.Towers.Select(i => mine[i].cpu()).ToArray(),
        0).DetachFromDisposeScope()).ToArray();

    /// <summary>
    /// The inverse of <see cref="Join"/>: each tower's rows of the grouped tensors copied into its own.
    /// </summary>
    public void SplitInto(AlexNetModel grouped, IReadOnlyList<Tensor> joined, IReadOnlyList<Tensor> mine)
    {
        using var _ = no_grad();
        foreach ((int g, int[] towers) in ParameterMap(grouped))
        {
            int[] rows = Halves((int)joined[g].shape[0]);
            for (int t = 0; t < towers.Length; t++)
            {
                using Tensor part = joined[g][TensorIndex.Slice(rows[t], rows[t + 1])];
                mine[towers[t]].copy_(part);
            }
        }
    }

    /// <summary>x: N×C×H×W images (any device) → N×classes logits on the first tower's device.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        Architecture a = Architecture;
        Tensor[] h = { x.to(_devices[0]), x.to(_devices[1]) };
        // Segments between exchanges: an ungrouped layer (conv1 on the image, conv3 on both towers' conv2 maps) starts
        // one, and the grouped layers after it (conv2; conv4, conv5) continue it on their own tower's maps.
        for (int end = 0; end < a.Convs.Length;)
        {
            int start = end++;
            while (end < a.Convs.Length && a.Convs[end].Groups == Count)
            {
                end++;
            }
            Tensor[] inputs = start > 0 ? Exchange(h) : h;
            int from = start, to = end;
            h = Both(t =>
            {
                Tensor y = inputs[t];
                for (int layer = from; layer < to; layer++)
                {
                    y = Stage(t, layer, y);
                }
                return y;
            });
        }
        h = new[] { h[0].flatten(1), h[1].flatten(1) };
        int hidden = a.Hidden.Length;
        for (int i = 0; i <= hidden; i++)
        {
            Tensor[] inputs = Exchange(h);   // each half of an FC layer reads the whole layer below
            // One after the other even when concurrent: each dropout mask takes its seed from libtorch's generator in
            // turn.
            h = new[] { Hidden(0, i, inputs[0]), Hidden(1, i, inputs[1]) };
        }
        return cat(new[] { h[0], h[1].to(_devices[0]) }, 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// conv → activation → (LRN of this tower's maps) → (max-pool), fused as the grouped net runs it where it can.
    /// </summary>
    private Tensor Stage(int t, int layer, Tensor input)
    {
        Architecture a = Architecture;
        ConvLayer c = a.Convs[layer];
        Tensor h = AlexNetModel.Call(_convs[t][layer], input, Kernels, Precision, training, a.Dropout);
        LrnParams? lrn = c.Lrn ? _lrn : null;
        bool fused = Kernels == KernelChoice.Fused && a.Activation == Activation.Relu
            && c.Pool && FusedStage.Supports(h);
        if (fused)
        {
            return FusedStage.Apply(h, lrn, a.PoolWindow, a.PoolStride);   // ReLU → LRN → pool, or ReLU → pool
        }
        h = Activate(h);
        if (lrn is not null)
        {
            h = LocalResponseNorm.Apply(h, lrn, fused: Kernels != KernelChoice.Libtorch);
        }
        return c.Pool ? nn.functional.max_pool2d(h, new long[] { a.PoolWindow, a.PoolWindow },
            new long[] { a.PoolStride, a.PoolStride }) : h;
    }

    /// <summary>One tower's half of fc6 or fc7 (→ activation → §4.2 dropout), or of fc8.</summary>
    private Tensor Hidden(int t, int layer, Tensor input)
    {
        Architecture a = Architecture;
        Tensor h = AlexNetModel.Call(_fcs[t][layer], input, Kernels, Precision, training, a.Dropout);
        if (layer == a.Hidden.Length)
        {
            return h;   // fc8's logits
        }
        return AlexNetModel.Call(_dropout, Activate(h), Kernels, Precision, training, a.Dropout);
    }

    /// <summary>§3.1's ReLU, or tanh.</summary>
    private Tensor Activate(Tensor h) => Architecture.Activation == Activation.Relu ? nn.functional.relu(h) : h.tanh();

    /// <summary>
    /// Both towers' maps, concatenated along the channels on each tower's device: the only traffic between devices.
    /// </summary>
    private Tensor[] Exchange(Tensor[] h) =>
        Enumerable.Range(0, Count).Select(t => cat(new[] { h[0].to(_devices[t]), h[1].to(_devices[t]) }, 1)).ToArray();

    /// <summary>
    /// f for each tower (a segment of conv layers): one after the other, or at the same time on two threads.
    /// </summary>
    private Tensor[] Both(Func<int, Tensor> f)
    {
        if (!Concurrent)
        {
            return new[] { f(0), f(1) };
        }
        bool grad = is_grad_enabled();
        int threads = ThreadsPerTower, mine = torch.get_num_threads();
        Task<Tensor>[] work = Enumerable.Range(0, Count).Select(t => Task.Factory.StartNew(() =>
        {
            torch.set_num_threads(threads);   // this thread's OpenMP team
            using var mode = grad ? enable_grad() : no_grad();
            using var scope = NewDisposeScope();
            return f(t).DetachFromDisposeScope();
        }, TaskCreationOptions.LongRunning)).ToArray();
        Task.WaitAll(work);
        torch.set_num_threads(mine);
        Tensor[] results = work.Select(w => w.Result).ToArray();
        torch.CurrentDisposeScope?.Attach(results);   // made on other threads: into this thread's scope, freed with it
        return results;
    }
}
