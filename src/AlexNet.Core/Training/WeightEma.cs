// Not in the paper: an exponential moving average of the weights (Polyak averaging, as torchvision's
// reference trainer offers with --model-ema), e ← d·e + (1 − d)·w after every update. It is evaluated
// each epoch beside the weights themselves, checkpointed with them ("ema/NAME"), and `eval --weights ema`
// picks it.
using System;
using System.Collections.Generic;
using System.Linq;
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Training;

public sealed class WeightEma : IDisposable
{
    private readonly (string Name, Tensor Weight, Tensor Average)[] _entries;

    public double Decay { get; }

    /// <summary>Starts the average at the model's current weights.</summary>
    public WeightEma(AlexNetModel model, double decay)
    {
        if (decay is <= 0 or >= 1)
        {
            throw new ArgumentException($"--ema must be in (0, 1), got {decay}.");
        }
        Decay = decay;
        _entries = model.state_dict().Select(kv => (kv.Key, kv.Value,
            kv.Value.detach().clone().DetachFromDisposeScope())).ToArray();
    }

    /// <summary>The averages by state_dict key (saved in checkpoints as ema/KEY).</summary>
    public IEnumerable<(string Name, Tensor Average)> Averages => _entries.Select(e => (e.Name, e.Average));

    /// <summary>e ← d·e + (1 − d)·w for every weight, after an update.</summary>
    public void Update()
    {
        using var noGrad = no_grad();
        foreach ((string _, Tensor w, Tensor e) in _entries)
        {
            e.mul_(Decay).add_(w, alpha: 1 - Decay);
        }
    }

    /// <summary>
    /// Copies the averages into <paramref name="target"/> (a net of the same architecture), for evaluating them.
    /// </summary>
    public void CopyTo(AlexNetModel target)
    {
        using var noGrad = no_grad();
        Dictionary<string, Tensor> dict = target.state_dict();
        foreach ((string name, Tensor _, Tensor e) in _entries)
        {
            dict[name].copy_(e);
        }
    }

    public void Dispose()
    {
        foreach ((string _, Tensor _, Tensor e) in _entries)
        {
            e.Dispose();
        }
    }
}
