using System.IO;
using System.Linq;
using System.Text.Json;
using AlexNet.Cli;
using AlexNet.Data;
using Xunit;

namespace AlexNet.Tests.Data;

/// <summary>
/// The ImageNet-shaped rehearsal set: real wnid folders, devkit ground truth that maps back, and the prepare
/// benchmark's driver.
/// </summary>
public class RehearsalTests
{
    [SkippableFact]
    public void ARehearsalSetHasWnidFoldersAndDevkitGroundTruthThatMapsBack()
    {
        Skip.If(Rehearsal.Photographs().Count == 0 || !File.Exists(ClassNames.DarknetIds),
            "opencv-doc/darknet are not installed (./setup.sh installs them)");
        using var dir = new TestData.TempDir();
        RehearsalSummary s = Rehearsal.Write(dir["set"], classes: 3, perClass: 2, valImages: 4, seed: 5);
        Assert.Equal((3, 6, 4), (s.Classes, s.TrainImages, s.ValImages));
        // The first three ILSVRC-2012 classes in id order, as class folders.
        Assert.Equal(new[] { "n01440764", "n01443537", "n01484850" },
            Directory.GetDirectories(dir["set/train"]).Select(Path.GetFileName).Order().ToArray());
        ImageFolder train = ImageFolder.FromClassFolders(dir["set/train"]);
        Assert.All(train.Items,
            i => Assert.InRange(ImageDecoder.CentreSquare(i.Path, 32).Length, 3 * 32 * 32, 3 * 32 * 32));
        using (var codec = SkiaSharp.SKCodec.Create(train.Items[0].Path))
        {
            Assert.InRange(codec.Info.Width, 333, 640);   // an ImageNet-sized JPEG
        }
        // The ground truth is in ILSVRC2012_IDs (the devkit's order); read back through --flat it names those classes.
        ImageFolder val = ImageFolder.FromFlat(dir["set/val"], dir["set/ILSVRC2012_validation_ground_truth.txt"]);
        Assert.All(val.Items,
            i => Assert.Contains(val.Classes[i.Label].Id, new[] { "n01440764", "n01443537", "n01484850" }));
        Assert.Throws<IOException>(() => Rehearsal.Write(dir["set"], 3, 1, 0));   // never over an existing folder
    }

    [Fact]
    public void ThePrepareBenchmarkRunsThePeerEachRoundAndWritesItsRatio()
    {
        using var dir = new TestData.TempDir();
        Directory.CreateDirectory(dir["root/a"]);
        Directory.CreateDirectory(dir["root/b"]);
        for (int i = 0; i < 3; i++)
        {
            File.WriteAllBytes(dir[$"root/a/{i}.png"],
                TestData.Encode(40, 30, (x, y) => new SkiaSharp.SKColor(200, 10, 10)));
            File.WriteAllBytes(dir[$"root/b/{i}.png"],
                TestData.Encode(30, 40, (x, y) => new SkiaSharp.SKColor(10, 10, 200)));
        }
        File.WriteAllText(dir["peer.sh"], $$"""
            echo "$*" >> '{{dir["calls.txt"]}}'
            echo '{"images": 6, "seconds": 0.5, "images_per_second": 12.0, "processes": 1}'
            """);
        Assert.Equal(0,
            App.Run(new[] { "bench", "prepare", dir["root"], "--threads", "1", "--rounds", "2", "--python", "/bin/sh",
            "--script", dir["peer.sh"], "--json", dir["out.json"] }));
        string[] calls = File.ReadAllLines(dir["calls.txt"]);
        Assert.Equal(2, calls.Length);
        Assert.Equal($"{dir["root"]} --processes 1", calls[0]);
        using var doc = JsonDocument.Parse(File.ReadAllText(dir["out.json"]));
        Assert.Equal(2, doc.RootElement.GetArrayLength());
        Assert.All(doc.RootElement.EnumerateArray(),
            r => Assert.Equal(12.0, r.GetProperty("peerImagesPerSecond").GetDouble()));
        Assert.All(doc.RootElement.EnumerateArray(),
            r => Assert.True(r.GetProperty("oursImagesPerSecond").GetDouble() > 0));
    }
}
