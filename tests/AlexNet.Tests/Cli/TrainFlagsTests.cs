using System;
using AlexNet.Cli;
using AlexNet.Training;
using Xunit;

namespace AlexNet.Tests.Cli;

/// <summary>Every flag of `alexnet train` reaches the run's options (a flag that parses but changes nothing is a silent lie).</summary>
public class TrainFlagsTests
{
    static TrainOptions Parse(params string[] flags)
    {
        var args = new[] { "train", "-d", "unused" };
        return TrainCommand.Options(App.Build().Parse([.. args, .. flags]), runOptions: null);
    }

    public static TheoryData<string[], Func<TrainOptions, bool>> Flags => new()
    {
        { new[] { "--label-smoothing", "0.1" }, o => o.LabelSmoothing == 0.1 },
        { new[] { "--warmup-epochs", "2" }, o => o.WarmupEpochs == 2 },
        { new[] { "--nesterov" }, o => o.Nesterov },
        { new[] { "--clip-grad-norm", "5" }, o => o.ClipGradNorm == 5 },
        { new[] { "--ema", "0.999" }, o => o.Ema == 0.999 },
        { new[] { "--val-split", "100" }, o => o.ValSplit == 100 },
        { new[] { "--val-views", "flip" }, o => o.ValViews == AlexNet.Evaluation.ViewSet.Flip },
        { new[] { "--checkpoint-minutes", "5" }, o => o.CheckpointMinutes == 5 },
        { new[] { "--checkpoint-every", "7" }, o => o.CheckpointEvery == 7 },
        { new[] { "--mixup-alpha", "0.2" }, o => o.MixupAlpha == 0.2 },
        { new[] { "--cutmix-alpha", "1" }, o => o.CutmixAlpha == 1 },
        { new[] { "--normalize", "imagenet" }, o => o.Normalization == AlexNet.Data.InputNormalization.Imagenet },
        { new[] { "--precision", "bf16" }, o => o.Precision == AlexNet.Model.Precision.Bf16 },
        { new[] { "--lr", "0.05", "--epochs", "3", "--seed", "9" }, o => o.LearningRate == 0.05 && o.Epochs == 3 && o.Seed == 9 },
        { new[] { "--no-flip", "--no-crop", "--pca-std", "0" }, o => !o.Flip && !o.RandomCrop && o.PcaStd == 0 },
        { new[] { "--lrn-convention", "code" }, o => o.LrnConvention == AlexNet.Model.LrnConvention.Code },
        { new[] { "--input-scale", "0.5" }, o => o.InputScale == 0.5f },
    };

    [Theory]
    [MemberData(nameof(Flags))]
    public void AFlagChangesItsOption(string[] flags, Func<TrainOptions, bool> took)
    {
        Assert.True(took(Parse(flags)), string.Join(" ", flags));
        Assert.False(took(new TrainOptions()), "the default must differ for the test to mean anything");
    }
}

/// <summary>--device: cpu runs; a device this build cannot use is a clear error before anything is read or written.</summary>
public class DeviceOptionTests
{
    [SkippableFact]
    public void CpuTrainsAndCudaWithoutACudaBuildIsRefused()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 16, 2);
        TestData.WriteSyntheticStore(dir["data/val"], 8, 2);
        Assert.Equal(0, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--max-steps", "2", "--input-scale", "0.0125", "--device", "cpu", "--out", dir["cpu"] }));
        Assert.Equal(0, App.Run(new[] { "eval", "-c", System.IO.Path.Combine(dir["cpu"], "last.ckpt"), "-d", dir["data/val"], "--views", "centre", "--device", "cpu" }));
        Skip.If(TorchSharp.torch.cuda.is_available(), "this build has CUDA: the refusal cannot be shown");
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--device", "cuda", "--out", dir["cuda"] }));
        Assert.Equal(2, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--device", "tpu", "--out", dir["tpu"] }));
        Assert.Equal(2, App.Run(new[] { "bench", "-m", "small", "--device", "cuda:0" }));
        Assert.False(System.IO.Directory.Exists(dir["cuda"]) || System.IO.Directory.Exists(dir["tpu"]));
    }
}
