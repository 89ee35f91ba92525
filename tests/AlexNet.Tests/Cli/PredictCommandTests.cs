using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using AlexNet.Training;
using SkiaSharp;
using Xunit;

namespace AlexNet.Tests.Cli;

/// <summary>
/// `alexnet predict` as a user runs it: torchvision's single centre crop on request, and a bad file among good ones.
/// </summary>
public class PredictCommandTests
{
    private static (int Code, string Out, string Err) Alexnet(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "alexnet.dll"));
        foreach (string a in args)
        {
            start.ArgumentList.Add(a);
        }
        using Process p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(120_000), "predict did not end within 2 minutes");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void ACentreCropIsTheCentreViewAloneAndABadFileDoesNotStopTheOthers()
    {
        using var dir = new TestData.TempDir();
        using var stores = new TestData.Stores(dir, 32, 8);
        Trainer.Fit(new TrainOptions
        {
            Model = Variants.Small,
            Epochs = 1,
            BatchSize = 16,
        }, new MachineOptions(2), stores.Train, stores.Val,
            dir["run"], resume: false, new SilentProgress());
        string ckpt = dir["run/last.ckpt"];
        File.WriteAllBytes(dir["bar.png"], TestData.Encode(40, 36,
            (x, y) => y is > 10 and < 16 ? SKColors.White : new SKColor((byte)(x * 5), 30, 60)));
        byte[] jpeg = TestData.Encode(40, 36, (x, y) => SKColors.Gray, SKEncodedImageFormat.Jpeg);
        File.WriteAllBytes(dir["torn.jpg"], jpeg[..(jpeg.Length / 3)]);

        (int code, string stdout, string stderr) = Alexnet("predict", "-c", ckpt, "--views",
            "centre", "--json", "--top", "4",
            dir["bar.png"], dir["missing.png"], dir["torn.jpg"]);
        Assert.Equal(1, code);   // not every file was classified …
        Prediction[] predictions = JsonSerializer.Deserialize<Prediction[]>(stdout, Json.Options)!;
        Assert.Equal(dir["bar.png"], Assert.Single(predictions).Source);   // … but the good one was
        Assert.Contains(dir["missing.png"], stderr);
        Assert.Contains(dir["torn.jpg"], stderr);
        Assert.Contains("2 of 3 file(s) could not be classified", stderr);
        // libtorch's warning on CPUs NNPACK does not know (Compute.DisableNnpack)
        Assert.DoesNotContain("NNPACK", stderr);

        // The centre crop alone is what the library gives for View.Centre; the default averages §4.1's ten views.
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(ckpt);
        using (model)
        {
            Prediction centre = Predictor.PredictFiles(model, state.ModelCard,
                new[] { dir["bar.png"] }, 4, new[] { View.Centre })[0];
            Prediction ten = Predictor.PredictFiles(model, state.ModelCard, new[] { dir["bar.png"] }, 4)[0];
            Assert.Equal(centre.Top.Select(c => c.Index), predictions[0].Top.Select(c => c.Index));
            Assert.All(centre.Top.Zip(predictions[0].Top),
                p => Assert.Equal(p.First.Probability, p.Second.Probability, 5));
            Assert.NotEqual(centre.Top[0].Probability, ten.Top[0].Probability);
        }
        Assert.Equal(0, Alexnet("predict", "-c", ckpt, dir["bar.png"]).Code);
    }
}
