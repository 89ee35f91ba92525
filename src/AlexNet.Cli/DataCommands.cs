using System;
using System.CommandLine;
using System.IO;
using AlexNet.Data;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>`alexnet prepare`: decode once into the fast store (§2), with the mean image and PCA (§4.1).</summary>
internal static class PrepareCommand
{
    public static Command Create()
    {
        var fashion = new Option<string?>("--fashion-mnist")
        {
            Description = $"Fashion-MNIST IDX folder (the Debian package's: {FashionMnist.DefaultDirectory}).",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var cifar = new Option<string?>("--cifar10")
        {
            Description = "Folder of CIFAR-10's binary version (data_batch_1.bin … test_batch.bin).",
        };
        var folder = new Option<string?>("--folder")
        {
            Description = "ImageNet-style folder: ROOT/<class>/<image> (one store; run once per split).",
        };
        var flat = new Option<string?>("--flat")
        {
            Description = "ILSVRC validation layout: one flat folder of images; needs --labels.",
        };
        var labels = new Option<string?>("--labels")
        {
            Description =
                "With --flat: ground truth: the devkit's ILSVRC2012_validation_ground_truth.txt (ILSVRC2012_IDs, the " +
                "devkit's synset order), one wnid per line in sorted file-name order, or LOC_val_solution.csv.",
        };
        var classes = new Option<string?>("--classes")
        {
            Description =
                "With --flat/--folder: class list file (ids [names]); default: the class folders, or ILSVRC-2012's " +
                "1000.",
        };
        var size = new Option<int>("--size")
        {
            Description = "§2: rescale the shorter side to this and keep the central square.",
            DefaultValueFactory = _ => 256,
        };
        var threads = new Option<int>("--threads")
        {
            Description = "Decoding threads.",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        var output = new Option<string>("--out", "-o")
        {
            Description = "Output folder (stores are written under it).",
            Required = true,
        };
        var format = new Option<RecordEncoding>("--format")
        {
            Description =
                "With --folder/--flat: raw (C×H×W bytes per image, memory-mapped; ImageNet ≈ 252 GB) or jpeg (each §2 " +
                "record encoded once, decoded by the loader; 5–10× smaller).",
            DefaultValueFactory = _ => RecordEncoding.Raw,
        };
        var quality = new Option<int>("--quality")
        {
            Description = "With --format jpeg: JPEG quality.",
            DefaultValueFactory = _ => RecordCodec.DefaultQuality,
        };
        var command =
            new Command("prepare", "Prepare a data set once into a fast store: decoded, §2-rescaled, with its mean " +
            "image and RGB PCA.")
        {
            fashion, cifar, folder, flat, labels, classes, size, threads, output, format, quality,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string outDir = r.GetValue(output)!;
            if (r.GetResult(fashion) is not null)
            {
                string dir = r.GetValue(fashion) ?? FashionMnist.DefaultDirectory;
                PrepareSplits(outDir, (train, store) => FashionMnist.Prepare(dir, train, store));
                return 0;
            }
            if (r.GetValue(cifar) is string cifarDir)
            {
                PrepareSplits(outDir, (train, store) => Cifar10.Prepare(cifarDir, train, store));
                return 0;
            }
            if (r.GetValue(folder) is string root)
            {
                return FolderPrepare.Run(ImageFolder.FromClassFolders(root, r.GetValue(classes)), outDir,
                    r.GetValue(size), r.GetValue(threads), r.GetValue(format), r.GetValue(quality));
            }
            if (r.GetValue(flat) is string flatDir)
            {
                string labelFile = r.GetValue(labels)
                    ?? throw new UserError("--flat needs --labels FILE (the ground truth, one line per image).");
                return FolderPrepare.Run(ImageFolder.FromFlat(flatDir, labelFile, r.GetValue(classes)), outDir,
                    r.GetValue(size), r.GetValue(threads), r.GetValue(format), r.GetValue(quality));
            }
            throw new UserError(
                "say what to prepare: --fashion-mnist [DIR], --cifar10 DIR, --folder ROOT or --flat DIR --labels " +
                "FILE.");
        }));
        return command;
    }

    /// <summary>
    /// The train/ and val/ stores of a data set that ships both splits; a complete store is kept as it is.
    /// </summary>
    public static void PrepareSplits(string outDir, Func<bool, string, StoreManifest> prepare)
    {
        foreach (bool train in new[] { true, false })
        {
            string store = Path.Combine(outDir, train ? "train" : "val");
            if (ImageStore.IsComplete(store))
            {
                AnsiConsole.MarkupLineInterpolated($"{store}: already prepared.");
                continue;
            }
            StoreManifest m = prepare(train, store);
            AnsiConsole.MarkupLineInterpolated(
                $"{store}: {m.Count} images {m.Height}×{m.Width}×{m.Channels}, {m.Classes.Length} classes.");
        }
    }
}

/// <summary>
/// `alexnet rehearsal`: an ImageNet-shaped folder from the real photographs in Debian packages (<see
/// cref="Rehearsal"/>).
/// </summary>
internal static class RehearsalCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out", "-o")
        {
            Description = "Folder to create: train/<wnid>/*.JPEG, val/*.JPEG and the devkit's ground truth.",
            Required = true,
        };
        var classes = new Option<int>("--classes")
        {
            Description = "How many of ILSVRC-2012's classes (the first in id order).",
            DefaultValueFactory = _ => 1000,
        };
        var perClass = new Option<int>("--per-class")
        {
            Description = "Training images per class.",
            DefaultValueFactory = _ => 2,
        };
        var val = new Option<int>("--val")
        {
            Description = "Validation images (flat folder, devkit-style labels).",
            DefaultValueFactory = _ => 1000,
        };
        var seed = new Option<long>("--seed") { Description = "Seed of the crops.", DefaultValueFactory = _ => 1 };
        var command =
            new Command("rehearsal", "Make an ImageNet-shaped data set (1000 class folders of real-size JPEGs) from " +
            "the photographs in Debian packages, to rehearse prepare → train → eval.")
        {
            output, classes, perClass, val, seed,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            RehearsalSummary s = Rehearsal.Write(r.GetValue(output)!, r.GetValue(classes), r.GetValue(perClass),
                r.GetValue(val), r.GetValue(seed));
            AnsiConsole.MarkupLineInterpolated(
                $"{s.Root}: {s.TrainImages} training images in {s.Classes} class folders, {s.ValImages} validation images, {s.Bytes / 1e6:F1} MB, cut from {s.Photographs} photographs in {clock.Elapsed.TotalSeconds:F1} s.");
            return 0;
        }));
        return command;
    }
}
