using System;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using TorchSharp;

namespace AlexNet;

/// <summary>Process-wide compute settings.</summary>
public static partial class Compute
{
    private const string HugePagesVariable = "THP_MEM_ALLOC_ENABLE";

    private static bool _configured;

    /// <summary>
    /// Native memory settings for training: huge pages for libtorch's large tensors, and glibc's heap kept
    /// (<see cref="KeepTheHeap"/>). Call once at start-up, before the first tensor is made (libtorch reads the
    /// huge-page switch at its first allocation); the `alexnet` tool does, and a library user may. Nothing here
    /// runs on its own when the library loads. A value the user set in the environment wins (0 turns huge pages off).
    /// Why: libtorch's CPU allocator backs each allocation of 2 MB or more with transparent huge pages when
    /// THP_MEM_ALLOC_ENABLE=1. A training step allocates its activations and gradients afresh, and without huge pages
    /// each large one comes back from the kernel 4 KB at a time (measurements in docs/performance.md, "Huge pages").
    /// </summary>
    public static void ConfigureNativeMemory()
    {
        if (_configured || !OperatingSystem.IsLinux())
        {
            return;
        }
        _configured = true;
        // The native environment, which libtorch reads; Environment.SetEnvironmentVariable changes only .NET's copy.
        _ = SetEnv(HugePagesVariable, "1", overwrite: 0);
        KeepTheHeap();
    }

    /// <summary>
    /// glibc's malloc: blocks up to 32 MB from the heap, which is never trimmed; larger ones mapped (and so in huge
    /// pages). By default glibc moves its mmap threshold as blocks are freed and gives the heap's top back to the
    /// kernel, so the same step's blocks were sometimes reused and sometimes faulted in again and RSS wandered
    /// (no leak; docs/performance.md, "Memory"). A user's MALLOC_* settings win.
    /// </summary>
    private static void KeepTheHeap()
    {
        const int trimThreshold = -1, mmapThreshold = -3;   // M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
        if (Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is not null
            || Environment.GetEnvironmentVariable("MALLOC_TRIM_THRESHOLD_") is not null)
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

    /// <summary>
    /// Resident memory in transparent huge pages (AnonHugePages of /proc/self/smaps_rollup); 0 where unknown.
    /// </summary>
    public static long HugePageBytes()
    {
        try
        {
            string? line = File.ReadLines("/proc/self/smaps_rollup").FirstOrDefault(l =>
                l.StartsWith("AnonHugePages:", StringComparison.Ordinal));
            return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        catch (IOException)
        {
            return 0;
        }
    }

    /// <summary>
    /// The CPU every number is measured on: /proc/cpuinfo's model name and the vector flags that decide speed.
    /// </summary>
    public static string CpuDescription()
    {
        const string info = "/proc/cpuinfo";
        if (!System.IO.File.Exists(info))
        {
            return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
        }
        string[] lines = System.IO.File.ReadAllLines(info);
        string Field(string name) => lines.FirstOrDefault(l => l.StartsWith(name,
            StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "";
        string[] wanted = { "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
            "avx512_vpopcntdq", "avx_vnni" };
        var flags = Field("flags").Split(' ').ToHashSet();
        return $"{Field("model name")}, {Environment.ProcessorCount} cores " +
            $"({string.Join(' ', wanted.Where(flags.Contains))})";
    }

    /// <summary>
    /// A device name (cpu, cuda, cuda:N) as libtorch's device, checked: this build links the CPU libtorch unless it was
    /// built with -p:TorchBackend=cuda, and then only the GPUs that are there can be named.
    /// </summary>
    public static torch.Device ResolveDevice(string name)
    {
        string n = name.Trim().ToLowerInvariant();
        if (n == "cpu")
        {
            return torch.CPU;
        }
        if (n != "cuda" && !n.StartsWith("cuda:", StringComparison.Ordinal))
        {
            throw new ArgumentException($"--device {name}: use cpu, cuda or cuda:N.");
        }
        if (!torch.cuda.is_available())
        {
            throw new ArgumentException(
                $"--device {name}: no CUDA device is usable here. This build's libtorch is the CPU one " +
                "(libtorch-cpu-linux-x64); " +
                "on a machine with an NVIDIA GPU, build with `dotnet build -c Release -p:TorchBackend=cuda` (README, " +
                "\"The CUDA build\").");
        }
        int index = n == "cuda" ? 0 : int.TryParse(n[5..], out int i) ? i : -1;
        if (index < 0 || index >= torch.cuda.device_count())
        {
            throw new ArgumentException(
                $"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0 … " +
                $"cuda:{torch.cuda.device_count() - 1}.");
        }
        return new torch.Device(DeviceType.CUDA, index);
    }

    /// <summary>Threads for libtorch's kernels; our own kernels (LRN, the fused stage) read the same setting.</summary>
    public static void UseThreads(int threads)
    {
        if (threads < 1)
        {
            throw new ArgumentException("--threads must be at least 1.");
        }
        torch.set_num_threads(threads);
        DisableNnpack();
    }

    /// <summary>
    /// libtorch tries NNPACK for some inference convolutions and, on CPUs NNPACK does not know (Zen 5), prints "Could
    /// not initialize NNPACK! Reason: Unsupported hardware." at each try, then runs its usual kernel. Our convolutions
    /// run on oneDNN, so NNPACK is switched off (at::globalContext().setUserEnabledNNPACK(false)): the same kernels, no
    /// warnings. Where the symbols are missing (another libtorch build) nothing changes.
    /// </summary>
    internal static void DisableNnpack()
    {
        try
        {
            SetUserEnabledNnpack(GlobalContext(), enabled: false);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
        }
    }

    [LibraryImport("libtorch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    private static partial IntPtr GlobalContext();

    [LibraryImport("libtorch_cpu", EntryPoint = "_ZN2at7Context20setUserEnabledNNPACKEb")]
    private static partial void SetUserEnabledNnpack(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    /// <summary>
    /// A workaround, called once after each training step outside its dispose scope: a generation-0 collection.
    /// What it works around: TorchSharp's custom autograd functions (our LRN and fused ReLU→LRN→pool, §3.3) leave
    /// about eight finalizable wrappers per call whose native memory only their finalizers release. A step
    /// allocates so little managed memory (~30 KB) that no collection comes for hundreds of steps, and RSS climbs
    /// ~1.3 MB per step meanwhile; with this it stays flat at no measurable cost (docs/performance.md, "Memory").
    /// This is not the leak-hiding `GC.Collect()` STYLE §5 forbids: every tensor of a step is still disposed by its
    /// scope; only memory that is already garbage, and can be freed by nothing but a finalizer, is returned sooner.
    /// </summary>
    public static void ReleaseCustomFunctionWrappers() => GC.Collect(0, GCCollectionMode.Forced, blocking: true);
}
