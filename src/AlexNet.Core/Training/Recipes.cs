// Named recipes: the options of runs people repeat.
using AlexNet.Model;

namespace AlexNet.Training;

public static class Recipes
{
    /// <summary>
    /// The quick start: the `small` net on Fashion-MNIST, fitted to 10 minutes on 2 cores. §5's optimiser as
    /// written (batch 128, momentum 0.9, weight decay 0.0005, the paper's update rule, ε divided by 10), with a
    /// budget of 5 epochs instead of 90: ε = 0.02 for 4 epochs, then 0.002. §4's remedies against overfitting
    /// (dropout, crops, reflections, PCA noise) are off: in 5 epochs this net underfits (its training error
    /// stays at the validation error) and each remedy measurably slowed learning per epoch (docs/results.md);
    /// `alexnet experiment dropout|pca` measures them. Inputs are the centred 0–255 values × 1/80 (≈ 1/σ of
    /// the pixels): the fan-in-scaled init diverges at the raw scale.
    /// </summary>
    public static TrainOptions QuickStart => new()
    {
        Model = Variants.Small,
        Epochs = 5,
        LearningRate = 0.02,
        Schedule = ScheduleKind.Step,
        StepEpochs = new[] { 4 },
        Dropout = 0,
        RandomCrop = false,
        Flip = false,
        PcaStd = 0,
        InputScale = 0.0125f,
        LogEvery = 100,
    };
}
