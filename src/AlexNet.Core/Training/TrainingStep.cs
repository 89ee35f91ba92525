// §5: one step of stochastic gradient descent on a batch — forward, softmax cross-entropy (§3.5's
// "multinomial logistic regression"), backward, the paper's update. The trainer and the benchmark both run
// this function, so what `bench` times is what `train` does.
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Training;

public static class TrainingStep
{
    /// <summary>
    /// One update of <paramref name="model"/> on (inputs, labels), at the optimiser's current ε. The loss and the logits
    /// come back detached, in the caller's dispose scope; after that scope, call
    /// <see cref="Compute.ReleaseCustomFunctionWrappers"/> (<see cref="RunOnce"/> does both).
    /// </summary>
    public static (Tensor Loss, Tensor Logits) Run(AlexNetModel model, PaperSgd sgd, Tensor inputs, Tensor labels)
    {
        Tensor logits = model.forward(inputs);
        Tensor loss = nn.functional.cross_entropy(logits, labels);
        if (!sgd.StepZeroesGradients)
        {
            sgd.ZeroGrad();   // the fused update already left them zero
        }
        loss.backward();
        sgd.Step();
        return (loss.detach(), logits.detach());
    }

    /// <summary>One step with its own dispose scope, for callers that read nothing back (the benchmark).</summary>
    public static void RunOnce(AlexNetModel model, PaperSgd sgd, Tensor inputs, Tensor labels)
    {
        using (NewDisposeScope())
        {
            Run(model, sgd, inputs, labels);
        }
        Compute.ReleaseCustomFunctionWrappers();
    }
}
