using System;
using AlexNet.Model;
using TorchSharp;

namespace AlexNet;

/// <summary>Process-wide compute settings.</summary>
public static class Compute
{
    /// <summary>Threads for libtorch's kernels and for the fused LRN kernel alike.</summary>
    public static void UseThreads(int threads)
    {
        if (threads < 1)
        {
            throw new ArgumentException("--threads must be at least 1.");
        }
        torch.set_num_threads(threads);
        LrnKernel.Threads = threads;
    }
}
