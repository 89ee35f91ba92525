using System.CommandLine;
using System.Globalization;
using AlexNet.Model;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>`alexnet summary`: the §3.5 layer table with output shapes, parameters and multiply-adds.</summary>
internal static class SummaryCommand
{
    public static Command Create()
    {
        Option<string> model = Cli.ModelOption(Variants.Paper);
        var input = new Option<int?>("--input", "-s")
        {
            Description = "Input side in pixels (default: the variant's, 224 or 28).",
        };
        var classes = new Option<int>("--classes")
        {
            Description = "Number of classes.",
            DefaultValueFactory = _ => 1000,
        };
        var channels = new Option<int>("--channels")
        {
            Description = "Input channels (3 = RGB, 1 = grayscale).",
            DefaultValueFactory = _ => 3,
        };
        var command =
            new Command("summary", "Print the layer table of a network: output shape, parameters and multiply-adds " +
            "per layer.")
        {
            model, input, classes, channels,
        };
        command.SetAction(r => Cli.Run(() =>
        {
            Architecture arch = Variants.Get(r.GetValue(model)!, r.GetValue(classes),
                r.GetValue(channels), r.GetValue(input));
            AnsiConsole.Write(Table(ModelSummary.Of(arch)));
            return 0;
        }));
        return command;
    }

    /// <summary>The §3.5 table of a net: one row per layer, then the totals.</summary>
    internal static Table Table(ModelSummary s)
    {
        var table = new Table().Title(
            $"{s.Architecture.Variant}: {s.Architecture.InputSize}×{s.Architecture.InputSize}×{s.Architecture.InputChannels} → {s.Architecture.Classes} classes");
        table.AddColumn("layer").AddColumn("operation").AddColumn(new TableColumn("output").RightAligned())
            .AddColumn(new TableColumn("parameters").RightAligned())
            .AddColumn(new TableColumn("multiply-adds").RightAligned());
        foreach (SummaryRow row in s.Rows)
        {
            table.AddRow(row.Layer, Markup.Escape(row.Operation), row.Shape, N(row.Parameters), N(row.MultiplyAdds));
        }
        table.AddRow("[bold]total[/]", "", "", $"[bold]{N(s.Parameters)}[/]", $"[bold]{N(s.MultiplyAdds)}[/]");
        return table;
    }

    private static string N(long v) => v == 0 ? "" : v.ToString("N0", CultureInfo.InvariantCulture);
}
