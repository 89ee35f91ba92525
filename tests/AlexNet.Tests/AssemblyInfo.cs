// Tests share libtorch's process-wide state (thread count, random generator); run them one at a time so
// determinism tests (resume equality, seeds) never see another test's settings. On 2 cores this costs little.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]

namespace AlexNet.Tests;

internal static class TestProcess
{
    /// <summary>
    /// As the `alexnet` tool does at start-up, before libtorch's first allocation: huge pages and glibc's heap
    /// (Compute.cs).
    /// </summary>
    [System.Runtime.CompilerServices.ModuleInitializer]
    internal static void ConfigureLikeTheTool() => AlexNet.Compute.ConfigureNativeMemory();
}
