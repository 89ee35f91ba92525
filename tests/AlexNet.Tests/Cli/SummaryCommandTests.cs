using AlexNet.Cli;
using Xunit;

namespace AlexNet.Tests.Cli;

public class SummaryCommandTests
{
    [Fact]
    public void SummaryOfEachVariantSucceeds()
    {
        Assert.Equal(0, App.Run(new[] { "summary", "--model", "paper" }));
        Assert.Equal(0, App.Run(new[] { "summary", "-m", "small", "--classes", "10", "--channels", "1" }));
    }

    [Fact]
    public void UnknownModelOrTooSmallInputIsAUsageError()
    {
        Assert.Equal(2, App.Run(new[] { "summary", "--model", "alexnet2" }));
        Assert.Equal(2, App.Run(new[] { "summary", "--model", "paper", "--input", "31" }));
    }

    [Fact]
    public void UnknownFlagIsRejected()
    {
        Assert.NotEqual(0, App.Run(new[] { "summary", "--no-such-flag" }));
    }
}
