// §5 "We trained our models using stochastic gradient descent with a batch size of 128 examples,
// momentum of 0.9, and weight decay of 0.0005. ... The update rule for weight w was
//     v_{i+1} := 0.9·v_i − 0.0005·ε·w_i − ε·⟨∂L/∂w |_{w_i}⟩_{D_i}
//     w_{i+1} := w_i + v_{i+1}"
// Unlike libtorch's SGD, v holds ε inside it, so after ε changes the old velocity still moves the
// weights at the old rate for a while. Weight decay applies to every parameter, biases too, as written.
using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Training;

public sealed class PaperSgd : IDisposable
{
    readonly IReadOnlyList<TorchSharp.Modules.Parameter> _parameters;
    readonly Tensor[] _velocity;
    readonly OptimizerKind _kind;

    public double LearningRate { get; set; }
    public double Momentum { get; }
    public double WeightDecay { get; }

    public PaperSgd(IEnumerable<TorchSharp.Modules.Parameter> parameters, double learningRate, double momentum, double weightDecay,
        OptimizerKind kind = OptimizerKind.Paper)
    {
        _parameters = parameters.ToArray();
        _velocity = _parameters.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
        LearningRate = learningRate;
        Momentum = momentum;
        WeightDecay = weightDecay;
        _kind = kind;
    }

    /// <summary>The momentum buffers v, one per parameter, in parameter order (saved in checkpoints).</summary>
    public IReadOnlyList<Tensor> Velocity => _velocity;

    public void ZeroGrad()
    {
        foreach (var p in _parameters)
        {
            p.grad?.zero_();
        }
    }

    public void Step()
    {
        using var _ = no_grad();
        double eps = LearningRate;
        for (int i = 0; i < _parameters.Count; i++)
        {
            Tensor w = _parameters[i];
            Tensor? g = w.grad;
            if (g is null)
            {
                continue;
            }
            Tensor v = _velocity[i];
            if (_kind == OptimizerKind.Paper)
            {
                v.mul_(Momentum).add_(w, alpha: -WeightDecay * eps).add_(g, alpha: -eps);   // v ← μv − λεw − εg
                w.add_(v);                                                              // w ← w + v
            }
            else
            {
                v.mul_(Momentum).add_(g).add_(w, alpha: WeightDecay);                   // v ← μv + g + λw
                w.add_(v, alpha: -eps);                                                 // w ← w − εv
            }
        }
    }

    public void Dispose()
    {
        foreach (Tensor v in _velocity)
        {
            v.Dispose();
        }
    }
}
