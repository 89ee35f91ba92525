using System.CommandLine;
using AlexNet.Analysis;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>
/// `alexnet report RUN_DIR`: a self-contained markdown report of a run, with its PNG plots (<see cref="RunReport"/>).
/// </summary>
internal static class ReportCommand
{
    public static Command Create()
    {
        var run = new Argument<string>("run")
        {
            Description = "Run folder written by `alexnet train` or `alexnet quickstart`.",
        };
        var data = new Option<string?>("--data", "-d")
        {
            Description = "A store to draw sample predictions from (e.g. data/fashion-mnist/val).",
        };
        var command =
            new Command("report", "Write RUN/report.md: options, per-epoch metrics, loss/error/ε curves, the conv1 " +
            "kernel grid, sample predictions.")
        {
            run,
            data,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            string path = RunReport.Write(r.GetValue(run)!, r.GetValue(data));
            AnsiConsole.MarkupLineInterpolated($"Wrote {path}");
            return 0;
        }));
        return command;
    }
}
