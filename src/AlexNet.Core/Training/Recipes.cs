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
    /// written (batch 128, momentum 0.9, weight decay 0.0005, the paper's update rule) for 8 epochs instead of
    /// 90. §5's "divide by 10 when the validation error stops improving" has no room to act in 8 epochs, so
    /// ε = 0.03 falls linearly to 0 over the run (Caffe's "poly" policy, power 1): over 6 epochs it ended 0.14
    /// points below one ÷10 step, and 0.05 did worse than 0.03. §4's remedies against overfitting (dropout,
    /// crops, reflections, PCA noise) are off, and so is the padding that only random crops need: in this
    /// budget each slows learning more than it saves (dropout 0.5 over 9 epochs: 9.33% error against 8.6–8.7%
    /// without); `alexnet experiment dropout|pca` measures them. Trials: docs/results.md.
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
