using System.IO;
using AlexNet.Cli;
using AlexNet.Model;
using Spectre.Console;
using Xunit;

namespace AlexNet.Tests.Cli;

/// <summary>
/// `alexnet summary`'s table for every variant: its layers, shapes and totals, not only the exit code.
/// </summary>
public class SummaryContentTests
{
    private static string Render(Architecture arch)
    {
        var writer = new StringWriter();
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
        });
        console.Profile.Width = 200;
        console.Write(SummaryCommand.Table(ModelSummary.Of(arch)));
        return writer.ToString();
    }

    [Theory]
    // Figure 2's conv1 output, §3.2's groups
    [InlineData(Variants.Paper, 1000, 3, "60,965,224", "55×55×96", "2 towers")]
    [InlineData(Variants.Paper1Gpu, 1000, 3, "59,798,312", "55×55×48", "conv 11×11/4")]  // half the conv1 kernels
    [InlineData(Variants.Owt, 1000, 3, "61,100,840", "55×55×64", "27×27×64")]      // single tower 64 kernels, pool1
    [InlineData(Variants.Small, 10, 1, "550,538", "24×24×", "LRN")]                     // unpadded conv1 at 28 px
    [InlineData(Variants.Small1Gpu, 10, 1, "474,986", "24×24×", "LRN")]
    [InlineData(Variants.Figure1, 10, 1, "83,498", "32×32×32", "max-pool 3/2")]
    public void EveryVariantsTableShowsItsLayersAndTotal(string variant, int classes, int channels, string parameters,
        string shape, string operation)
    {
        string text = Render(Variants.Get(variant, classes, channels));
        Assert.Contains(parameters, text);
        Assert.Contains(shape, text);
        Assert.Contains(operation, text);
        Assert.Contains("fc8", text);
        Assert.Contains("total", text);
        Assert.Contains(variant + ":", text);
    }
}
