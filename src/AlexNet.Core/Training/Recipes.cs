// Named recipes: the options of runs people repeat.
using AlexNet.Model;

namespace AlexNet.Training;

public static class Recipes
{
    /// <summary>
    /// Inputs of the small-image nets: the centred 0–255 values × 1/80 (≈ 1/σ of the pixels); the fan-in-scaled
    /// init diverges at the raw scale. ImageNet-size nets take §2's raw values.
    /// </summary>
    public const float SmallImageInputScale = 0.0125f;

    public static float InputScaleFor(int storedSide) => storedSide < 64 ? SmallImageInputScale : 1f;

    /// <summary>
    /// The quick start: the `small` net on Fashion-MNIST, fitted to 10 minutes on 2 cores. §5's optimiser as
    /// written for 8 epochs instead of 90, with ε = 0.03 falling linearly to 0 (Caffe's "poly" policy: §5's ÷10
    /// on a plateau has no room in 8 epochs). §4's remedies against overfitting (dropout, crops, reflections,
    /// PCA noise) are off, and so is the padding only random crops need: in this budget each slowed learning
    /// more than it saved. The trials behind each choice: docs/results.md.
    /// </summary>
    public static TrainOptions QuickStart => new()
    {
        Model = Variants.Small,
        Epochs = 8,
        LearningRate = 0.03,
        Schedule = ScheduleKind.Poly,
        Power = 1,
        Pad = 0,
        Dropout = 0,
        RandomCrop = false,
        Flip = false,
        PcaStd = 0,
        InputScale = SmallImageInputScale,
        LogEvery = 100,
    };
}
