using System;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AlexNet.Model;
using TorchSharp;

namespace AlexNet;

/// <summary>Process-wide compute settings.</summary>
public static partial class Compute
{
    const string HugePagesVariable = "THP_MEM_ALLOC_ENABLE";

    /// <summary>
    /// Native memory, set as this assembly loads, before anything here touches libtorch: huge pages for libtorch's
    /// large tensors, and glibc's heap kept (<see cref="KeepTheHeap"/>).
    /// libtorch's CPU allocator (c10 alloc_cpu) backs each allocation of 2 MB or more with transparent huge pages
    /// when THP_MEM_ALLOC_ENABLE=1, read once at its first allocation. A training step allocates its activations and
    /// gradients afresh, and each large one came back from the kernel 4 KB page by page: `paper` at batch 64 took
    /// 2.3–2.6 M minor page faults in a 45 s bench run, 0.16 M with huge pages, and trained 4–15% faster
    /// (docs/performance.md). A value the user set (0 turns it off) is kept.
    /// </summary>
#pragma warning disable CA2255   // a library's module initializer on purpose: it must run before any libtorch allocation
    [ModuleInitializer]
    internal static void ConfigureNativeMemory()
    {
        if (OperatingSystem.IsLinux())
        {
            // The native environment, which libtorch reads; Environment.SetEnvironmentVariable changes only .NET's copy.
            _ = SetEnv(HugePagesVariable, "1", overwrite: 0);
            KeepTheHeap();
        }
    }
#pragma warning restore CA2255

    /// <summary>
    /// glibc's malloc: blocks up to 32 MB from the heap, which is never trimmed; larger ones mapped (and so in huge
    /// pages, faulted in 2 MB at a time). By default glibc moves its mmap threshold as blocks are freed and gives the
    /// heap's top back to the kernel, so the same training step's blocks were sometimes reused and sometimes
    /// faulted in again: RSS over 500 steps of `small` wandered by 7–21% (bumps and slow climbs, no leak); with
    /// these two settings it stayed within 0.9–5.5% (docs/performance.md, "Memory"). A user's MALLOC_* settings win.
    /// </summary>
    static void KeepTheHeap()
    {
        const int trimThreshold = -1, mmapThreshold = -3;   // M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
        if (Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is not null || Environment.GetEnvironmentVariable("MALLOC_TRIM_THRESHOLD_") is not null)
        {
            return;
        }
        try
        {
            _ = MallOpt(mmapThreshold, 32 << 20);        // glibc's largest allowed value on 64-bit
            _ = MallOpt(trimThreshold, int.MaxValue);
        }
        catch (EntryPointNotFoundException)
        {
            // not glibc (e.g. musl): its allocator has no such knobs
        }
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int MallOpt(int parameter, int value);

    /// <summary>Resident memory in transparent huge pages (AnonHugePages of /proc/self/smaps_rollup); 0 where unknown.</summary>
    public static long HugePageBytes()
    {
        try
        {
            string? line = File.ReadLines("/proc/self/smaps_rollup").FirstOrDefault(l => l.StartsWith("AnonHugePages:", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException)
        {
            return 0;
        }
    }

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

    /// <summary>
    /// Call after each training step, outside its dispose scope. TorchSharp's custom autograd functions (our fused LRN
    /// and ReLU→LRN→pool stage, §3.3) leave about eight finalizable wrappers per call whose native memory is released
    /// only by their finalizers; a step allocates so little managed memory (~30 KB) that no collection may come for
    /// hundreds of steps, and RSS climbed ~1.3 MB per step meanwhile. A generation-0 collection per step returns it
    /// (measured on the `small` net, 500 steps: RSS flat at 251 MiB instead of 234 → 706 MiB; step time unchanged).
    /// </summary>
    public static void ReleaseStepGarbage() => GC.Collect(0, GCCollectionMode.Forced, blocking: true);
}
