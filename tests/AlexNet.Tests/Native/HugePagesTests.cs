using System;
using System.IO;
using System.Runtime.InteropServices;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Native;

/// <summary>
/// Compute's request that libtorch back large tensors with transparent huge pages (fewer page faults per step).
/// </summary>
public partial class HugePagesTests
{
    [LibraryImport("libc", EntryPoint = "getenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr GetEnv(string name);

    [SkippableFact]
    public void TheNativeEnvironmentAsksLibtorchForHugePages()
    {
        // .NET's copy of the environment is the one the process started with: a user's own value wins (Compute.cs).
        string? users = Environment.GetEnvironmentVariable("THP_MEM_ALLOC_ENABLE");
        Skip.If(users is not null && users != "1",
            $"THP_MEM_ALLOC_ENABLE={users} is set in this environment, and a user's value wins");
        IntPtr value = GetEnv("THP_MEM_ALLOC_ENABLE");
        Assert.NotEqual(IntPtr.Zero, value);
        Assert.Equal("1", Marshal.PtrToStringUTF8(value));
    }

    [SkippableFact]
    public void ALargeTensorLiesInHugePagesWhereTheKernelOffersThem()
    {
        const string setting = "/sys/kernel/mm/transparent_hugepage/enabled";
        Skip.If(!File.Exists(setting) || File.ReadAllText(setting).Contains("[never]", StringComparison.Ordinal),
            "this kernel offers no transparent huge pages, so libtorch's request is a no-op");
        long before = Compute.HugePageBytes();
        using Tensor t = empty(64L << 18);   // 64 MiB of float32
        t.fill_(1f);
        long after = Compute.HugePageBytes();
        Assert.True(after - before >= 2L << 20,
            $"AnonHugePages {before >> 20} → {after >> 20} MiB after touching a 64 MiB tensor");
    }
}
