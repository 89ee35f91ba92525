using System.CommandLine;

namespace AlexNet.Cli;

public static class App
{
    public static RootCommand Build()
    {
        var root = new RootCommand("AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) on TorchSharp: train, evaluate and inspect the paper's network.");
        root.Subcommands.Add(SummaryCommand.Create());
        return root;
    }

    public static int Run(string[] args) => Build().Parse(args).Invoke();
}
