using System;
using System.IO;
using AlexNet.Data;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>Draws `alexnet prepare --folder/--flat`: a progress bar with images/s and ETA, then the counts.</summary>
internal static class FolderPrepare
{
    public static int Run(ImageFolder folder, string outDir, int size, int threads,
        RecordEncoding encoding = RecordEncoding.Raw, int quality = RecordCodec.DefaultQuality)
    {
        PrepareSummary summary;
        if (AnsiConsole.Profile.Capabilities.Interactive)
        {
            summary = AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
                new TransferSpeedlessRate(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    ProgressTask task = ctx.AddTask($"prepare {folder.Root}", maxValue: folder.Items.Count);
                    return FolderPreparer.Prepare(folder, outDir, size, threads,
                        (done, _) => task.Value = done, default, encoding, quality);
                });
        }
        else
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            int last = 0;
            summary = FolderPreparer.Prepare(folder, outDir, size, threads, (done, total) =>
            {
                if (done - last >= 1000 || done == total)
                {
                    last = done;
                    Console.WriteLine($"{done}/{total} images, {done / clock.Elapsed.TotalSeconds:F0} images/s");
                }
            }, default, encoding, quality);
        }
        AnsiConsole.MarkupLineInterpolated(
            $"{outDir}: {summary.Written} images written, {summary.Rejected} rejected of {summary.Total}.");
        AnsiConsole.MarkupLineInterpolated(
            $"{summary.Encoding.ToString().ToLowerInvariant()} records: {summary.BytesPerImage / 1024:F1} KB per image; ILSVRC-2012's 1.28 M training images would take {summary.ProjectedImageNetBytes / 1e9:F1} GB.");
        if (summary.Rejected > 0)
        {
            AnsiConsole.MarkupLineInterpolated($"[yellow]Rejected inputs and reasons: {summary.RejectsFile}[/]");
            foreach (string line in System.Linq.Enumerable.Take(File.ReadLines(summary.RejectsFile), 20))
            {
                AnsiConsole.MarkupLineInterpolated($"  [yellow]{line.Replace('\t', ':')}[/]");
            }
        }
        return 0;
    }

    /// <summary>Images per second, from the task's own speed estimate.</summary>
    private sealed class TransferSpeedlessRate : ProgressColumn
    {
        public override Spectre.Console.Rendering.IRenderable Render(Spectre.Console.Rendering.RenderOptions options,
            ProgressTask task, TimeSpan deltaTime) =>
            new Text(task.Speed is double s ? $"{s:F0} img/s" : "");
    }
}
