// Named recipes: the options of runs people repeat.
using AlexNet.Model;

namespace AlexNet.Training;

public static class Recipes
{
    /// <summary>
    /// The quick start: the `small` net on Fashion-MNIST, fitted to 10 minutes on 2 cores. §5's optimiser as
    /// written (batch 128, momentum 0.9, weight decay 0.0005, the paper's update rule, ε divided by 10), with a
    /// budget of 6 epochs instead of 90: ε = 0.02 for 5 epochs, then 0.002. §4's remedies against overfitting
    /// (dropout, crops, reflections, PCA noise) are off, and so is the padding that only random crops need
    /// (28-px inputs run 1.5× the images/s of padded 32-px ones): in 6 epochs this net underfits (its training error
    /// stays at the validation error) and each remedy measurably slowed learning per epoch (docs/results.md);
    /// `alexnet experiment dropout|pca` measures them. Inputs are the centred 0–255 values × 1/80 (≈ 1/σ of
    /// the pixels): the fan-in-scaled init diverges at the raw scale.
    /// </summary>
    public static TrainOptions QuickStart => new()
    {
        Model = Variants.Small,
        Epochs = 6,
        LearningRate = 0.02,
        Schedule = ScheduleKind.Step,
        StepEpochs = new[] { 5 },
        Pad = 0,
        Dropout = 0,
        RandomCrop = false,
        Flip = false,
        PcaStd = 0,
        InputScale = 0.0125f,
        LogEvery = 100,
    };
}
