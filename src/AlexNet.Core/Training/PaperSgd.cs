// §5 "We trained our models using stochastic gradient descent with a batch size of 128 examples,
// momentum of 0.9, and weight decay of 0.0005. ... The update rule for weight w was
//     v_{i+1} := 0.9·v_i − 0.0005·ε·w_i − ε·⟨∂L/∂w |_{w_i}⟩_{D_i}
//     w_{i+1} := w_i + v_{i+1}"
// Unlike libtorch's SGD, v holds ε inside it, so after ε changes the old velocity still moves the
// weights at the old rate for a while. Weight decay applies to every parameter, biases too, as written.
// On the CPU the rule runs as one vectorised pass over w, v and ∂L/∂w per parameter, which also zeroes
// ∂L/∂w for the next step (libtorch's ops take four passes and a fifth to zero): the same arithmetic in the
// same order, each product added with a fused multiply-add as libtorch's add_(…, alpha) does.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.Intrinsics;
using AlexNet.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Training;

public sealed class PaperSgd : IDisposable
{
    private readonly IReadOnlyList<TorchSharp.Modules.Parameter> _parameters;
    private readonly Tensor[] _velocity;
    private readonly OptimizerKind _kind;
    private readonly bool _fused;
    private readonly double[] _rateFactors;

    public double LearningRate { get; set; }
    public double Momentum { get; }
    public double WeightDecay { get; }

    /// <summary>Not in the paper: Nesterov's momentum in §5's form, v ← μv − ελw − εg; w ← w + μv − ελw − εg.</summary>
    public bool Nesterov { get; }

    public IReadOnlyList<TorchSharp.Modules.Parameter> Parameters => _parameters;

    /// <param name="fused">false: §5's rule as libtorch's operations even where the fused pass applies (the reference
    /// it is timed against).</param>
    /// <param name="rateFactors">Per parameter, ε as a fraction of <see cref="LearningRate"/> (fine-tuning's lower rate
    /// for pretrained layers); null: 1 for all.</param>
    public PaperSgd(IEnumerable<TorchSharp.Modules.Parameter> parameters, double learningRate,
        double momentum, double weightDecay,
        OptimizerKind kind = OptimizerKind.Paper, bool nesterov = false, bool fused = true,
        IReadOnlyList<double>? rateFactors = null)
    {
        Nesterov = nesterov;
        _fused = fused;
        _parameters = parameters.ToArray();
        _rateFactors = rateFactors?.ToArray() ?? Enumerable.Repeat(1.0, _parameters.Count).ToArray();
        if (_rateFactors.Length != _parameters.Count)
        {
            throw new ArgumentException($"{_rateFactors.Length} rate factors for {_parameters.Count} parameters.");
        }
        _velocity = _parameters.Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
        LearningRate = learningRate;
        Momentum = momentum;
        WeightDecay = weightDecay;
        _kind = kind;
    }

    /// <summary>The momentum buffers v, one per parameter, in parameter order (saved in checkpoints).</summary>
    public IReadOnlyList<Tensor> Velocity => _velocity;

    /// <summary>
    /// True when <see cref="Step"/> leaves every gradient zero (§5's rule does, fused or not), so no ZeroGrad is needed
    /// before the next backward.
    /// </summary>
    public bool StepZeroesGradients => _kind == OptimizerKind.Paper;

    private static bool Fusable(Tensor w) =>
        w.device_type == DeviceType.CPU && w.dtype == ScalarType.Float32 && w.is_contiguous();

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
        for (int i = 0; i < _parameters.Count; i++)
        {
            double eps = LearningRate * _rateFactors[i];
            Tensor w = _parameters[i];
            Tensor? g = w.grad;
            if (g is null)
            {
                continue;
            }
            Tensor v = _velocity[i];
            if (_kind == OptimizerKind.Paper && _fused && Fusable(w) && Fusable(g) && v.is_contiguous())
            {
                FusedUpdate(w, v, g, (float)Momentum, (float)(-WeightDecay * eps), (float)-eps, Nesterov);
            }
            else if (_kind == OptimizerKind.Paper)
            {
                if (Nesterov)
                {
                    using Tensor step = (w * (-WeightDecay * eps)).add_(g, alpha: -eps);   // −λεw − εg
                    v.mul_(Momentum).add_(step);
                    w.add_(v, alpha: Momentum).add_(step);                                  // w ← w + μv − λεw − εg
                }
                else
                {
                    v.mul_(Momentum).add_(w, alpha: -WeightDecay * eps).add_(g, alpha: -eps);   // v ← μv − λεw − εg
                    w.add_(v);                                                              // w ← w + v
                }
                g.zero_();   // as the fused pass does: the next backward starts from zero
            }
            else
            {
                using Tensor d = g.add(w, alpha: WeightDecay);                          // g + λw
                v.mul_(Momentum).add_(d);                                               // v ← μv + g + λw
                if (Nesterov)
                {
                    w.add_(d.add_(v, alpha: Momentum), alpha: -eps);                    // w ← w − ε(d + μv)
                }
                else
                {
                    w.add_(v, alpha: -eps);                                             // w ← w − εv
                }
            }
        }
    }

    /// <summary>
    /// v ← μv + a·w + b·g (a = −λε, b = −ε), w ← w + v, g ← 0: one pass, in libtorch's rounding order.
    /// </summary>
    private static unsafe void FusedUpdate(Tensor w, Tensor v, Tensor g, float momentum,
        float a, float b, bool nesterov)
    {
        long n = w.numel();
        float* pw = Planes.Ptr(w), pv = Planes.Ptr(v), pg = Planes.Ptr(g);
        const long chunk = 1 << 16;
        System.Threading.Tasks.Parallel.For(0, (n + chunk - 1) / chunk,
            new System.Threading.Tasks.ParallelOptions
            {
                MaxDegreeOfParallelism = Math.Max(1, torch.get_num_threads()),
            }, c =>
            {
                long start = c * chunk, end = Math.Min(n, start + chunk);
                var mu = Vector256.Create(momentum);
                var va = Vector256.Create(a);
                var vb = Vector256.Create(b);
                long i = start;
                for (; i + 8 <= end; i += 8)
                {
                    Vector256<float> wv = Vector256.Load(pw + i), gv = Vector256.Load(pg + i);
                    Vector256<float> vel = Vector256.FusedMultiplyAdd(gv, vb,
                        Vector256.FusedMultiplyAdd(wv, va, Vector256.Load(pv + i) * mu));
                    vel.Store(pv + i);
                    (nesterov ? wv + Vector256.FusedMultiplyAdd(gv, vb,
                        Vector256.FusedMultiplyAdd(wv, va, vel * mu)) : wv + vel).Store(pw + i);
                    Vector256<float>.Zero.Store(pg + i);
                }
                for (; i < end; i++)
                {
                    float vel = MathF.FusedMultiplyAdd(pg[i], b, MathF.FusedMultiplyAdd(pw[i], a, pv[i] * momentum));
                    pv[i] = vel;
                    pw[i] += nesterov ? MathF.FusedMultiplyAdd(pg[i], b,
                        MathF.FusedMultiplyAdd(pw[i], a, vel * momentum)) : vel;
                    pg[i] = 0;
                }
            });
    }

    public void Dispose()
    {
        foreach (Tensor v in _velocity)
        {
            v.Dispose();
        }
    }
}
