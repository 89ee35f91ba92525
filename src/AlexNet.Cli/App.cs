using System.CommandLine;

namespace AlexNet.Cli;

public static class App
{
    public static RootCommand Build()
    {
        var root = new RootCommand(
            "AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) on TorchSharp: train, evaluate and inspect the " +
            "paper's network.");
        root.Subcommands.Add(SummaryCommand.Create());
        root.Subcommands.Add(PrepareCommand.Create());
        root.Subcommands.Add(RehearsalCommand.Create());
        root.Subcommands.Add(TrainCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(PredictCommand.Create());
        root.Subcommands.Add(ImportCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(QuantizeCommand.Create());
        root.Subcommands.Add(QuickstartCommand.Create());
        root.Subcommands.Add(ExperimentCommand.Create());
        root.Subcommands.Add(ReportCommand.Create());
        root.Subcommands.Add(AnalysisCommands.Kernels());
        root.Subcommands.Add(AnalysisCommands.Features());
        root.Subcommands.Add(AnalysisCommands.Neighbors());
        root.Subcommands.Add(CodesCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        return root;
    }

    public static int Run(string[] args)
    {
        // before any tensor: huge pages for libtorch and glibc's heap kept (Compute.cs)
        Compute.ConfigureNativeMemory();
        return Build().Parse(args).Invoke();
    }
}
