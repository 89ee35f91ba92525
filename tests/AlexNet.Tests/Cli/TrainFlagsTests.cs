using System;
using System.Linq;
using AlexNet.Cli;
using AlexNet.Training;
using Xunit;

namespace AlexNet.Tests.Cli;

/// <summary> Every flag of `alexnet train` reaches the run's options (a flag that parses but changes nothing is a
/// silent lie): the test walks TrainCommand's flag table, and every option of the command is in the table or among the
/// machine's flags.
/// </summary>
public class TrainFlagsTests
{
    private static TrainOptions Parse(params string[] flags)
    {
        var args = new[] { "train", "-d", "unused" };
        System.CommandLine.ParseResult r = App.Build().Parse([.. args, .. flags]);
        Assert.True(r.Errors.Count == 0,
            $"{string.Join(" ", flags)}: {string.Join("; ", r.Errors.Select(e => e.Message))}");
        return TrainCommand.Options(r, runOptions: null);
    }

    [Fact]
    public void EveryFlagInTheTableSetsItsOption()
    {
        using var dir = new TestData.TempDir();
        foreach (TrainCommand.Flag flag in TrainCommand.Flags)
        {
            string[] example = flag.Option.Name == "--init-from" ? new[] { "--init-from",
                Checkpoint(dir) } : flag.Example;
            if (flag.Option.Name is "--freeze" or "--pretrained-lr-factor")
            {
                // fine-tuning's flags need a checkpoint to start from
                example = [.. example, "--init-from", Checkpoint(dir)];
            }
            Assert.False(flag.Took(new TrainOptions()),
                $"{flag.Option.Name}: the default must differ from the example for the test to mean anything");
            Assert.True(flag.Took(Parse(example)), $"{string.Join(" ", example)} did not reach its option");
        }
    }

    [Fact]
    public void EveryOptionOfTheCommandIsInTheTableOrAMachineFlag()
    {
        var train = App.Build().Subcommands.Single(c => c.Name == "train");
        var known = TrainCommand.Flags.Select(f => f.Option).Concat(TrainCommand.MachineFlags).ToHashSet();
        string[] missing = train.Options.Where(o => !known.Contains(o)
            && o.Name is not ("--help" or "-h" or "-?")).Select(o => o.Name).ToArray();
        Assert.True(missing.Length == 0, $"flags of train in neither table: {string.Join(", ", missing)}");
        Assert.Equal(TrainCommand.Flags.Length, TrainCommand.Flags.Select(f => f.Option).Distinct().Count());
    }

    /// <summary>A given flag beats the preset; a flag not given leaves the preset's value.</summary>
    [Fact]
    public void AFlagOverridesAPresetAndAnAbsentOneKeepsIt()
    {
        using var dir = new TestData.TempDir();
        System.IO.File.WriteAllText(dir["preset.json"], Json.Serialize(new TrainOptions
        {
            LearningRate = 0.02,
            Epochs = 7,
        }));
        TrainOptions o = Parse("--preset", dir["preset.json"], "--epochs", "3");
        Assert.Equal((0.02, 3), (o.LearningRate, o.Epochs));
    }

    private static string Checkpoint(TestData.TempDir dir)
    {
        AlexNet.Model.Architecture arch = AlexNet.Model.Variants.Get(AlexNet.Model.Variants.Small, classes: 4,
            inputChannels: 1, inputSize: 24);
        using var model = new AlexNet.Model.AlexNetModel(arch, seed: 1);
        string path = dir["init.ckpt"];
        AlexNet.Training.Checkpoint.Save(path, AlexNet.Training.Checkpoint.WeightsOnly(new TrainOptions
        {
            Model = arch.Variant,
        }, arch,
            new[] { "a", "b", "c", "d" }, new float[28 * 28], 28), model, velocity: null);
        return path;
    }
}

/// <summary>
/// --device: cpu runs; a device this build cannot use is a clear error before anything is read or written.
/// </summary>
public class DeviceOptionTests
{
    [SkippableFact]
    public void CpuTrainsAndCudaWithoutACudaBuildIsRefused()
    {
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 16, 2);
        TestData.WriteSyntheticStore(dir["data/val"], 8, 2);
        Assert.Equal(0, App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--max-steps", "2", "--input-scale",
            "0.0125", "--device", "cpu", "--out", dir["cpu"] }));
        Assert.Equal(0, App.Run(new[] { "eval", "-c", System.IO.Path.Combine(dir["cpu"], "last.ckpt"), "-d",
            dir["data/val"], "--views", "centre", "--device", "cpu" }));
        Skip.If(TorchSharp.torch.cuda.is_available(), "this build has CUDA: the refusal cannot be shown");
        Assert.Equal(2,
            App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--device", "cuda", "--out", dir["cuda"] }));
        Assert.Equal(2,
            App.Run(new[] { "train", "-d", dir["data"], "-m", "small", "--device", "tpu", "--out", dir["tpu"] }));
        Assert.Equal(2, App.Run(new[] { "bench", "-m", "small", "--device", "cuda:0" }));
        Assert.False(System.IO.Directory.Exists(dir["cuda"]) || System.IO.Directory.Exists(dir["tpu"]));
    }
}
