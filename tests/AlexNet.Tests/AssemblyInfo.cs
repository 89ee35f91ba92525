// Tests share libtorch's process-wide state (thread count, random generator); run them one at a time so
// determinism tests (resume equality, seeds) never see another test's settings. On 2 cores this costs little.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]
