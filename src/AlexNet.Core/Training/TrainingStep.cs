// §5: one step of stochastic gradient descent on a batch — forward, softmax cross-entropy (§3.5's
// "multinomial logistic regression"), backward, the paper's update. The trainer and the benchmark both run
// this function, so what `bench` times is what `train` does.
using System.Linq;
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Training;

public static class TrainingStep
{
    /// <summary> One update of <paramref name="model"/> on (inputs, labels), at the optimiser's current ε. The loss and
    /// the logits come back detached, in the caller's dispose scope; after that scope, call
    /// <see cref="Compute.ReleaseCustomFunctionWrappers"/> (<c>RunOnce</c> does both).
    /// </summary>
    /// <param name="labelSmoothing">Not in the paper: ε of label smoothing (0: §5's cross-entropy).</param>
    /// <param name="clipGradNorm">Not in the paper: the largest global L2 norm of ∂L/∂w (0: no clipping).</param>
    /// <param name="reduceGradients">Data parallel: averages ∂L/∂w over the ranks between the backward pass and the
    /// update.</param>
    /// <param name="mix">Not in the paper: a mixup/CutMix batch's second labels and λ (Mixing.cs), or null.</param>
    public static (Tensor Loss, Tensor Logits) Run(nn.Module<Tensor, Tensor> model,
        PaperSgd sgd, Tensor inputs, Tensor labels,
        double labelSmoothing = 0, double clipGradNorm = 0, System.Action? reduceGradients = null, Mix? mix = null)
    {
        if (!sgd.StepZeroesGradients)
        {
            sgd.ZeroGrad();   // the fused update already left them zero
        }
        (Tensor loss, Tensor logits) = Backward(model, inputs, labels, labelSmoothing, mix);
        Update(sgd, clipGradNorm, reduceGradients);
        return (loss, logits);
    }

    /// <summary>
    /// Forward, loss and backward: ∂L/∂w added into the parameters' gradients, the loss times <paramref name="share"/>
    /// (a part of a batch: its fraction of the images, so that the parts' gradients add up to the batch's).
    /// </summary>
    public static (Tensor Loss, Tensor Logits) Backward(nn.Module<Tensor, Tensor> model, Tensor inputs,
        Tensor labels, double labelSmoothing = 0,
        Mix? mix = null, double share = 1)
    {
        Tensor logits = model.forward(inputs);
        if (labels.device_type != logits.device_type || labels.device_index != logits.device_index)
        {
            labels = labels.to(logits.device);
            mix = mix is null ? null : mix with { OtherLabels = mix.OtherLabels.to(logits.device) };
        }
        Tensor loss = mix is null ? Loss(logits, labels, labelSmoothing)
            : Loss(logits, labels, labelSmoothing) * mix.Lambda + Loss(logits, mix.OtherLabels,
            labelSmoothing) * (1 - mix.Lambda);
        if (share != 1)
        {
            loss = loss * share;
        }
        loss.backward();
        return (loss.detach(), logits.detach());
    }

    /// <summary>
    /// The update from the gradients in place: averaged over the ranks (data parallel), clipped if asked, then §5's
    /// rule.
    /// </summary>
    public static void Update(PaperSgd sgd, double clipGradNorm = 0, System.Action? reduceGradients = null)
    {
        reduceGradients?.Invoke();
        if (clipGradNorm > 0)
        {
            ClipGradients(sgd.Parameters, clipGradNorm);
        }
        sgd.Step();
    }

    /// <summary>
    /// Data parallel: a rank with no images in this step takes part in the reduction with zero gradients, then updates.
    /// </summary>
    public static void RunEmpty(PaperSgd sgd, System.Action reduceGradients, double clipGradNorm = 0)
    {
        sgd.ZeroGrad();
        Update(sgd, clipGradNorm, reduceGradients);
    }

    /// <summary>
    /// Mean softmax cross-entropy, against (1 − ε)·one-hot + ε/K targets when smoothing (ε = 0: the plain loss).
    /// </summary>
    public static Tensor Loss(Tensor logits, Tensor labels, double labelSmoothing = 0) =>
        labelSmoothing > 0 ? nn.functional.cross_entropy(logits, labels,
        label_smoothing: labelSmoothing) : nn.functional.cross_entropy(logits, labels);

    /// <summary>
    /// Scales every gradient by min(1, max/‖g‖) where ‖g‖ is the L2 norm of all of them together; returns ‖g‖ before.
    /// </summary>
    public static double ClipGradients(
        System.Collections.Generic.IEnumerable<TorchSharp.Modules.Parameter> parameters, double maxNorm)
    {
        using Tensor norm = nn.utils.clip_grad_norm_(parameters.Where(p => p.grad is not null), maxNorm, 2);
        return norm.item<double>();
    }

    /// <summary>One step with its own dispose scope, for callers that read nothing back (the benchmark).</summary>
    public static void RunOnce(nn.Module<Tensor, Tensor> model, PaperSgd sgd, Tensor inputs, Tensor labels) =>
        RunOnce(() => Run(model, sgd, inputs, labels));

    /// <summary>
    /// Any step (one net's, or Replicas.Run) in its own dispose scope, the custom functions' wrappers released after
    /// it.
    /// </summary>
    public static void RunOnce(System.Func<(Tensor Loss, Tensor Logits)> step)
    {
        using (NewDisposeScope())
        {
            step();
        }
        Compute.ReleaseCustomFunctionWrappers();
    }
}
