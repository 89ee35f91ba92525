using System;
using System.Diagnostics;
using System.IO;
using AlexNet.Inference;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Training;

/// <summary>
/// `alexnet train` under ALEXNET_TRAIN_CONV=onednn (Model/Kernels/OneDnnFeatures.cs): it says so, trains, and lands
/// where the default run with the same seed does: the same steps in other summation orders, so the weights differ in
/// their last bits (bit for bit the same would mean the variable changed nothing) and by no more than 1e-5.
/// </summary>
public class BlockedTrainingTests
{
    [SkippableFact]
    public void TrainOnTheBlockedPathSaysSoAndLandsWhereTheDefaultDoes()
    {
        Skip.If(OneDnnNet.Unavailable is not null, $"oneDNN is not used here: {OneDnnNet.Unavailable}");
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, train: 96, val: 32);
        (string blocked, string blockedText) = Train(dir, "blocked", "onednn");
        (string plain, string plainText) = Train(dir, "default", null);
        Assert.Contains("conv1 → pool5 trains on oneDNN's blocked layout", blockedText.Replace("\n", " "));
        Assert.DoesNotContain("ALEXNET_TRAIN_CONV", plainText);

        (AlexNetModel a, _) = ModelFile.Load(blocked);
        (AlexNetModel b, _) = ModelFile.Load(plain);
        using (a)
        using (b)
        {
            double largest = 0;
            foreach (string layer in a.LayerNames)
            {
                (Tensor wa, Tensor ba) = a.LayerParameters(layer);
                (Tensor wb, Tensor bb) = b.LayerParameters(layer);
                largest = Math.Max(largest, Close(wa, wb, $"{layer}'s weights"));
                largest = Math.Max(largest, Close(ba, bb, $"{layer}'s biases"));
            }
            Assert.True(largest > 0, "the two runs' weights are bit for bit the same: the blocked path did not run");
        }
    }

    private static (string Checkpoint, string Output) Train(TestData.TempDir dir, string name, string? kernels)
    {
        var start = new ProcessStartInfo("dotnet", $"\"{Path.Combine(AppContext.BaseDirectory, "alexnet.dll")}\" " +
            $"train --train \"{dir["train"]}\" --val \"{dir["val"]}\" -m small --epochs 2 -b 16 --seed 3 " +
            $"--input-scale 0.0125 -o \"{dir[name]}\"")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["ALEXNET_TRAIN_CONV"] = kernels;
        using Process p = Process.Start(start)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        Assert.True(p.WaitForExit(180_000) && p.ExitCode == 0, output);
        return (Path.Combine(dir[name], "last.ckpt"), output);
    }

    /// <summary>How far <paramref name="got"/> is from <paramref name="expected"/>, relative to its largest value
    /// (at most 1e-5).</summary>
    private static double Close(Tensor got, Tensor expected, string what)
    {
        double scale = expected.abs().max().item<float>();
        double err = (got - expected).abs().max().item<float>();
        Assert.True(err <= 1e-5 * scale, $"{what}: off by {err:E2} of {scale:E2}");
        return err / scale;
    }
}
