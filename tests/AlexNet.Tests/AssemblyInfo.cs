// Tests share libtorch's process-wide state (thread count, random generator); run them one at a time so
// determinism tests (resume equality, seeds) never see another test's settings. On 2 cores this costs little.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]

namespace AlexNet.Tests
{
    internal static class TestProcess
    {
        /// <summary>As in the `alexnet` process, AlexNet.Core (and its request for huge pages) loads before libtorch allocates.</summary>
        [System.Runtime.CompilerServices.ModuleInitializer]
        internal static void LoadCoreFirst() =>
            System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(typeof(AlexNet.Compute).Module.ModuleHandle);
    }
}
