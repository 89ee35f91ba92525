// Named recipes: the options of runs people repeat.
using AlexNet.Model;

namespace AlexNet.Training;

public static class Recipes
{
    /// <summary>
    /// The quick start: the `small` net on Fashion-MNIST, fitted to 10 minutes on 2 cores. §5's optimiser as
    /// written (momentum 0.9, weight decay 0.0005, ε divided by 10, the paper's update rule), with a budget of
    /// 7 epochs instead of 90: batch 256 at ε = 0.04 (twice the images per step at twice the rate; on this
    /// 28-px net a 256 batch runs 1.4× the images/s of 128), ε ÷ 10 after epoch 5. §4's remedies against
    /// overfitting (dropout, crops, reflections, PCA noise) are off: in 7 epochs this net underfits (its
    /// training error stays at the validation error), and each of them measurably slowed learning per
    /// epoch (docs/results.md); `alexnet experiment dropout|pca` measures them. Inputs are the centred
    /// 0–255 values × 1/80 (≈ 1/σ of the pixels): the fan-in-scaled init diverges at the raw scale.
    /// </summary>
    public static TrainOptions QuickStart => new()
    {
        Model = Variants.Small,
        Epochs = 7,
        BatchSize = 256,
        LearningRate = 0.04,
        Schedule = ScheduleKind.Step,
        StepEpochs = new[] { 5 },
        Dropout = 0,
        RandomCrop = false,
        Flip = false,
        PcaStd = 0,
        Pad = 0,
        InputScale = 0.0125f,
        LogEvery = 50,
    };
}
