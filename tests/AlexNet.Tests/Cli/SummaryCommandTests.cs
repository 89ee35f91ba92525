using AlexNet.Cli;
using Xunit;

namespace AlexNet.Tests.Cli;

public class SummaryCommandTests
{
    [Fact]
    public void SummaryOfEachVariantSucceeds()
    {
        // Every named net: its table, with the total the library counts for it.
        foreach ((string name, _) in AlexNet.Model.Variants.All)
        {
            (int code, string text) = CliCapture.Run("summary", "--model", name);
            Assert.True(code == 0, $"summary -m {name}: exit {code}\n{text}");
            long parameters = AlexNet.Model.ModelSummary.Of(AlexNet.Model.Variants.Get(name)).Parameters;
            Assert.Contains(name, text);
            Assert.Contains(parameters.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), text);
        }
        (int small, string smallText) = CliCapture.Run("summary", "-m", "small", "--classes", "10", "--channels", "1");
        Assert.Equal(0, small);
        Assert.Contains("28×28×1 → 10 classes", smallText);
    }

    [Fact]
    public void UnknownModelOrTooSmallInputIsAUsageError()
    {
        CliCapture.Refuses(2, new[] { "summary", "--model", "alexnet2" }, "Unknown model 'alexnet2'");
        CliCapture.Refuses(2, new[] { "summary", "--model", "paper", "--input", "31" }, "too small for paper");
    }

    [Fact]
    public void UnknownFlagIsRejected()
    {
        Assert.NotEqual(0, App.Run(new[] { "summary", "--no-such-flag" }));
    }
}
