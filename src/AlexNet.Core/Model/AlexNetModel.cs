// §3 The network as a TorchSharp module, built from an Architecture record: `features` (the five conv
// stages) then `classifier` (fc6, fc7, fc8), as torchvision lays it out, so state_dict keys are
// features.N / classifier.N and torchvision's `alexnet` weights load into the `owt` variant.
using System;
using System.Collections.Generic;
using System.Linq;
using AlexNet.Model.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model;

/// <summary>
/// The code behind §3.3's LRN and the ReLU → LRN → pool tail of conv1 and conv2. Each one's results are tested against
/// the next.
/// </summary>
public enum KernelChoice
{
    /// <summary>
    /// Ours: the tail as one fused operation (FusedStage), our LRN kernel elsewhere, the FC layers on oneDNN
    /// (FullyConnected), our dropout masks (DropoutMask). CPU float32 only; other tensors take libtorch's.
    /// </summary>
    Fused,

    /// <summary>ReLU, LRN and max-pool as separate modules, LRN by our kernel.</summary>
    Separate,

    /// <summary>ReLU, LRN and max-pool as separate modules, all libtorch's.</summary>
    Libtorch,
}

public sealed class AlexNetModel : nn.Module<Tensor, Tensor>
{
    private readonly Sequential _features;
    private readonly nn.Module<Tensor, Tensor> _avgpool;
    private readonly Sequential _classifier;
    private readonly Dictionary<string, (bool InFeatures, int Index)> _layers = new();
    private readonly List<ConvStage> _convs = new();
    private readonly List<FcStage> _fcs = new();

    public Architecture Architecture { get; }

    /// <summary>Which code runs §3.3's LRN and conv1/conv2's ReLU → LRN → pool.</summary>
    public KernelChoice Kernels { get; }

    private Precision _precision = Precision.Fp32;

    /// <summary>
    /// The number format of the conv and FC products (Precision.cs); the weights are float32 either way. Set it once
    /// the net is on its device: bf16 is refused where it would crawl.
    /// </summary>
    public Precision Precision
    {
        get => Engine?.Precision ?? _precision;
        set
        {
            if (value == Precision.Int8)
            {
                throw new ArgumentException(
                    "int8 runs on the oneDNN engine of a quantized checkpoint (`alexnet quantize`): load it with " +
                    "--precision int8.");
            }
            LowPrecision.Check(value, Device);
            _precision = value;
        }
    }

    /// <summary>
    /// Where inference runs: the net compiled to oneDNN's primitives (OneDnnNet.cs, float32 or int8), or null for
    /// these modules. Used by forward in evaluation mode without gradients on the CPU; training never sees it.
    /// </summary>
    public OneDnnNet? Engine { get; private set; }

    /// <summary>
    /// Runs inference on <paramref name="engine"/> (made from this net's weights; null: on the modules again).
    /// </summary>
    public void UseEngine(OneDnnNet? engine)
    {
        Engine?.Dispose();
        Engine = engine;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            UseEngine(null);
        }
        base.Dispose(disposing);
    }

    /// <param name="seed">Seeds the initialisation; the same seed gives the same weights.</param>
    /// <param name="kernels">Fused (the default) or the references the fused code is tested against.</param>
    public AlexNetModel(Architecture arch, long seed = 0, KernelChoice kernels = KernelChoice.Fused) : base("AlexNet")
    {
        arch.Validate();
        Architecture = arch;
        Kernels = kernels;
        var features = new List<(string, nn.Module<Tensor, Tensor>)>();
        int channels = arch.InputChannels;
        foreach (ConvLayer c in arch.Convs)
        {
            _layers[c.Name] = (true, features.Count);
            var conv = nn.Conv2d(channels, c.Kernels, c.Size, stride: c.Stride, padding: c.Padding, groups: c.Groups);
            nn.Module<Tensor, Tensor> activation = MakeActivation(arch.Activation);
            LocalResponseNorm? lrn = c.Lrn && arch.Lrn is not null ? new LocalResponseNorm(arch.Lrn,
                fused: kernels != KernelChoice.Libtorch) : null;
            MaxPool2d? pool = c.Pool ? nn.MaxPool2d(arch.PoolWindow, arch.PoolStride) : null;   // §3.4: z=3, s=2
            // §3.3's LRN after the ReLU
            foreach (nn.Module<Tensor, Tensor>? m in new nn.Module<Tensor, Tensor>?[] { conv, activation, lrn, pool })
            {
                if (m is not null)
                {
                    features.Add(Next(features, m));
                }
            }
            _convs.Add(new ConvStage(c.Name, conv, activation, lrn, pool));
            channels = c.Kernels;
        }
        _features = nn.Sequential(features);
        _avgpool = arch.TorchvisionLayout ? nn.AdaptiveAvgPool2d(6) : nn.Identity();

        var classifier = new List<(string, nn.Module<Tensor, Tensor>)>();
        long width = arch.FlattenedFeatures;
        foreach (FcLayer f in arch.Hidden)
        {
            // §4.2 dropout on the outputs of fc6 and fc7; torchvision's layout drops their inputs instead.
            var dropout = nn.Dropout(arch.Dropout);
            if (arch.TorchvisionLayout)
            {
                classifier.Add(Next(classifier, dropout));
            }
            _layers[f.Name] = (false, classifier.Count);
            var fc = nn.Linear(width, f.Units);
            nn.Module<Tensor, Tensor> activation = MakeActivation(arch.Activation);
            classifier.Add(Next(classifier, fc));
            classifier.Add(Next(classifier, activation));
            if (!arch.TorchvisionLayout)
            {
                classifier.Add(Next(classifier, dropout));
            }
            _fcs.Add(new FcStage(f.Name, fc, activation, dropout, DropoutFirst: arch.TorchvisionLayout));
            width = f.Units;
        }
        _layers["fc8"] = (false, classifier.Count);
        var fc8 = nn.Linear(width, arch.Classes);   // → softmax in the loss
        classifier.Add(Next(classifier, fc8));
        _fcs.Add(new FcStage("fc8", fc8, Activation: null, Dropout: null, DropoutFirst: false));
        _classifier = nn.Sequential(classifier);

        register_module("features", _features);
        register_module("avgpool", _avgpool);
        register_module("classifier", _classifier);
        Initialize(seed);
    }

    private static (string, nn.Module<Tensor, Tensor>) Next(List<(string, nn.Module<Tensor, Tensor>)> list,
        nn.Module<Tensor, Tensor> m) =>
        (list.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), m);

    private static nn.Module<Tensor, Tensor> MakeActivation(Activation a) => a switch
    {
        Activation.Relu => nn.ReLU(inplace: true),   // §3.1
        Activation.Tanh => nn.Tanh(),
        _ => throw new ArgumentOutOfRangeException(nameof(a)),
    };

    /// <summary>The paper's layer names in order: conv1 … conv5, fc6, fc7, fc8.</summary>
    public IEnumerable<string> LayerNames => Architecture.Convs.Select(c => c.Name)
        .Concat(Architecture.Hidden.Select(h => h.Name)).Append("fc8");

    /// <summary>A learned layer by its paper name (conv1 … fc8).</summary>
    public nn.IModule<Tensor, Tensor> Layer(string name)
    {
        if (!_layers.TryGetValue(name, out var at))
        {
            throw new ArgumentException(
                $"{Architecture.Variant} has no layer '{name}'. Layers: {string.Join(", ", LayerNames)}.");
        }
        return (at.InFeatures ? _features : _classifier)[at.Index];
    }

    /// <summary>
    /// A learned layer's state_dict prefix: conv2 → "features.4", fc8 → "classifier.6" (torchvision's keys).
    /// </summary>
    public string StateKey(string name)
    {
        Layer(name);   // the error for an unknown name
        (bool inFeatures, int index) = _layers[name];
        return $"{(inFeatures ? "features" : "classifier")}.{index}";
    }

    public (Tensor Weight, Tensor Bias) LayerParameters(string name) => Layer(name) switch
    {
        Conv2d c => (c.weight!, c.bias!),
        Linear l => (l.weight!, l.bias!),
        _ => throw new InvalidOperationException($"{name} is not a learned layer."),
    };

    public long ParameterCount => parameters().Sum(p => p.numel());

    /// <summary>Where the weights live (model.to(device) moves them); inputs are moved here by forward.</summary>
    public Device Device => parameters().First().device;

    /// <summary>x on the weights' device: a batch assembled on the CPU runs where the net is.</summary>
    private Tensor OnDevice(Tensor x)
    {
        Device d = Device;
        return x.device_type == d.type && x.device_index == d.index ? x : x.to(d);
    }

    private void Initialize(long seed)
    {
        using var generator = new Generator((ulong)seed);
        foreach (ConvLayer c in Architecture.Convs)
        {
            (Tensor w, Tensor b) = LayerParameters(c.Name);
            Initialization.Apply(w, b, c.BiasOne, Architecture.Init, generator);
        }
        foreach (FcLayer f in Architecture.Hidden)
        {
            (Tensor w, Tensor b) = LayerParameters(f.Name);
            Initialization.Apply(w, b, f.BiasOne, Architecture.Init, generator);
        }
        (Tensor w8, Tensor b8) = LayerParameters("fc8");
        Initialization.Apply(w8, b8, biasOne: false, Architecture.Init, generator, output: true);
    }

    /// <summary>x: N×C×H×W images → N×classes logits (softmax is applied by the loss and at evaluation).</summary>
    public override Tensor forward(Tensor x)
    {
        if (!training)
        {
            OneDnnFeatures.Release();   // evaluating: the training step's kept buffers go back to the system
        }
        if (Engine is not null && !training && !torch.is_grad_enabled()
            && x.device_type == DeviceType.CPU && x.dim() == 4)
        {
            return Engine.Forward(x);
        }
        using var scope = NewDisposeScope();
        // §3.5, the paper's net (Figure 2), N images; the other variants are these stages with other sizes (`summary`):
        //   input  N×3×224×224
        //   conv1  N×96×55×55, ReLU, LRN, pool → N×96×27×27
        //   conv2  N×256×27×27, ReLU, LRN, pool → N×256×13×13
        //   conv3  N×384×13×13, ReLU
        //   conv4  N×384×13×13, ReLU
        //   conv5  N×256×13×13, ReLU, pool → N×256×6×6 → N×9216
        //   fc6    N×4096, ReLU, dropout
        //   fc7    N×4096, ReLU, dropout
        //   fc8    N×1000 (the softmax is the loss's)
        Tensor h = OnDevice(x);
        List<Conv2d> convs = _convs.ConvertAll(c => c.Conv);
        if (Kernels == KernelChoice.Fused && training && Precision == Precision.Fp32
            && OneDnnFeatures.Supports(h, Architecture, convs))
        {
            // opt-in: conv1 to pool5 as one operation on oneDNN's blocked layout (Kernels/OneDnnFeatures.cs)
            h = OneDnnFeatures.Apply(h, Architecture, convs);
        }
        else
        {
            foreach (ConvStage conv in _convs)
            {
                h = Forward(conv, h);
            }
        }
        h = _avgpool.forward(h).flatten(1);   // torchvision's 6×6 average pool (identity on the paper's 6×6), N×9216
        foreach (FcStage fc in _fcs)
        {
            h = Forward(fc, h);
        }
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One of §3.5's convolutional layers: its convolution, ReLU (§3.1), §3.3's LRN where it has one and §3.4's
    /// max-pool where it has one: the modules of `features` (their order is the state_dict's).
    /// </summary>
    private sealed record ConvStage(string Name, Conv2d Conv, nn.Module<Tensor, Tensor> Activation,
        LocalResponseNorm? Lrn, MaxPool2d? Pool);

    /// <summary>fc6, fc7 (ReLU, §4.2's dropout after, or before in torchvision's layout) or fc8 (the logits).</summary>
    private sealed record FcStage(string Name, Linear Fc, nn.Module<Tensor, Tensor>? Activation,
        Dropout? Dropout, bool DropoutFirst);

    /// <summary>
    /// A convolutional layer on h; <paramref name="activationOnly"/> stops after the ReLU (§6.1's features). With our
    /// kernels the ReLU → [LRN →] max-pool tail is one pass (Kernels/FusedStage.cs) where it applies.
    /// </summary>
    private Tensor Forward(ConvStage s, Tensor h, bool activationOnly = false)
    {
        h = Call(s.Conv, h);
        if (activationOnly)
        {
            return Call(s.Activation, h);
        }
        if (Kernels == KernelChoice.Fused && s.Activation is ReLU && s.Pool is not null && FusedStage.Supports(h))
        {
            // no LRN: owt, §3.3's ablation
            return FusedStage.Apply(h, s.Lrn?.Params, Architecture.PoolWindow, Architecture.PoolStride);
        }
        h = Call(s.Activation, h);
        h = s.Lrn is null ? h : Call(s.Lrn, h);
        return s.Pool is null ? h : Call(s.Pool, h);
    }

    /// <summary>A fully connected layer on h; <paramref name="activationOnly"/> leaves out the dropout after
    /// it.</summary>
    private Tensor Forward(FcStage s, Tensor h, bool activationOnly = false)
    {
        h = s.DropoutFirst && s.Dropout is not null ? Call(s.Dropout, h) : h;
        h = Call(s.Fc, h);
        h = s.Activation is null ? h : Call(s.Activation, h);
        return activationOnly || s.DropoutFirst || s.Dropout is null ? h : Call(s.Dropout, h);
    }

    /// <summary>
    /// One module of the net (from <see cref="Pipeline"/>), its conv or FC product in <see cref="Precision"/>.
    /// </summary>
    public Tensor Call(nn.IModule<Tensor, Tensor> module, Tensor h) =>
        Call(module, h, Kernels, Precision, training, Architecture.Dropout);

    /// <summary>
    /// One module on <paramref name="h"/> with the code <paramref name="kernels"/> and <paramref name="precision"/>
    /// pick (also each tower's, Towers.cs).
    /// </summary>
    internal static Tensor Call(nn.IModule<Tensor, Tensor> module, Tensor h, KernelChoice kernels, Precision precision,
        bool training, double dropout) =>
        (precision, module) switch
        {
            (Precision.Bf16, Conv2d conv) => LowPrecision.Conv(h, conv),
            (Precision.Bf16, Linear fc) => LowPrecision.Linear(h, fc),
            (Precision.Fp32, Linear fc) when kernels == KernelChoice.Fused && FullyConnected.Supports(h,
                fc) => FullyConnected.Apply(h, fc),
            (Precision.Fp32, Conv2d conv) when kernels == KernelChoice.Fused && training && OneDnnConv.Supports(h,
                conv) => OneDnnConv.Apply(h, conv),   // opt-in
            (Precision.Fp32, Conv2d conv) when kernels == KernelChoice.Fused && GrayscaleConv1.Supports(h,
                conv) => GrayscaleConv1.Apply(h, conv),
            (_, Dropout) when kernels == KernelChoice.Fused && training && dropout > 0
                && DropoutMask.Supports(h) => DropoutMask.Apply(h, dropout),
            _ => module.call(h),
        };

    /// <summary>
    /// Every module in forward order with a readable name (conv1, relu, lrn, pool, fc6, …), for per-layer timing.
    /// </summary>
    public IEnumerable<(string Name, nn.IModule<Tensor, Tensor> Module, bool Flatten)> Pipeline()
    {
        var names = _layers.ToDictionary(kv => kv.Value, kv => kv.Key);
        for (int i = 0; i < _features.Count; i++)
        {
            yield return (names.TryGetValue((true, i),
                out string? n) ? n : $"  {_features[i].GetType().Name.ToLowerInvariant()}", _features[i], false);
        }
        yield return ("  avgpool+flatten", _avgpool, true);
        for (int i = 0; i < _classifier.Count; i++)
        {
            yield return (names.TryGetValue((false, i),
                out string? n) ? n : $"  {_classifier[i].GetType().Name.ToLowerInvariant()}", _classifier[i], false);
        }
    }

    /// <summary>§6.1: the activations of a layer (fc7 = the 4096-d last hidden layer), in evaluation mode.</summary>
    public Tensor ForwardTo(Tensor x, string layer)
    {
        if (!_layers.ContainsKey(layer))
        {
            throw new ArgumentException($"{Architecture.Variant} has no layer '{layer}'.");
        }
        using var scope = NewDisposeScope();
        // Through the layer and its activation: §6.1's features are post-ReLU.
        Tensor h = OnDevice(x);
        foreach (ConvStage conv in _convs)
        {
            h = Forward(conv, h, activationOnly: conv.Name == layer);
            if (conv.Name == layer)
            {
                return h.MoveToOuterDisposeScope();
            }
        }
        h = _avgpool.forward(h).flatten(1);
        foreach (FcStage fc in _fcs)
        {
            h = Forward(fc, h, activationOnly: fc.Name == layer);
            if (fc.Name == layer)
            {
                break;
            }
        }
        return h.MoveToOuterDisposeScope();
    }
}
