using System;
using System.IO;
using System.Runtime.CompilerServices;
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
        using Tensor t = empty(64L << 18);   // 64 MiB of float32
        t.fill_(1f);
        // the tensor's own mapping, not the process's total, which tests running beside this one move too
        nint address = Unsafe.ByteOffset(ref Unsafe.NullRef<byte>(), ref MemoryMarshal.GetReference(t.bytes));
        long huge = HugePagesOfMappingAt(address);
        Assert.True(huge >= 2L << 20, $"AnonHugePages {huge >> 10} kB in the mapping of a touched 64 MiB tensor");
    }

    /// <summary>AnonHugePages of the /proc/self/smaps mapping that holds <paramref name="address"/>, in bytes.</summary>
    private static long HugePagesOfMappingAt(long address)
    {
        bool inside = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length > 0 && f[0].Contains('-', StringComparison.Ordinal) && !f[0].EndsWith(':'))
            {
                string[] range = f[0].Split('-');
                inside = address >= Convert.ToInt64(range[0], 16) && address < Convert.ToInt64(range[1], 16);
            }
            else if (inside && f[0] == "AnonHugePages:")
            {
                return long.Parse(f[1]) * 1024;
            }
        }
        return 0;
    }
}
