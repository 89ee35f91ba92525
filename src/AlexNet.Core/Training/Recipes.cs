// Named recipes: the options of runs people repeat.
using AlexNet.Model;

namespace AlexNet.Training;

public static class Recipes
{
    /// <summary>
    /// The quick start: the `small` net on Fashion-MNIST with §5's recipe scaled to a 10-minute budget on 2 cores:
    /// batch 128, momentum 0.9, weight decay 0.0005, ε = 0.01 divided by 10 at fixed epochs (too few epochs for
    /// §5's plateau rule to act), §4.1's augmentation (random 28² crops of the image padded by 2, reflections,
    /// PCA noise), dropout 0.5. Inputs are the centred 0–255 values × 1/80 (≈ 1/σ of the pixels): at the raw
    /// scale the fan-in-scaled init diverges.
    /// </summary>
    public static TrainOptions QuickStart => new()
    {
        Model = Variants.Small,
        Epochs = 6,
        Schedule = ScheduleKind.Step,
        StepEpochs = new[] { 4, 6 },
        InputScale = 0.0125f,
        LogEvery = 100,
    };
}
