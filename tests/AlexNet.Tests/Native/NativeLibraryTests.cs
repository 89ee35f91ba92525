using System;
using System.IO;
using System.Linq;
using System.Reflection;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Native;

/// <summary>The build's fix for libLibTorchSharp.so on Debian 12 (README: "Why the build patches …").</summary>
public class NativeLibraryTests
{
    private const string Version = "GLIBCXX_3.4.32";

    private static string OutputCopy => Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");

    private static string ShippedCopy
    {
        get
        {
            string root = typeof(NativeLibraryTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                .Single(a => a.Key == "NuGetPackageRoot").Value!;
            return Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64",
                "native", "libLibTorchSharp.so");
        }
    }

    [Fact]
    public void LibTorchLoadsAndComputes()
    {
        using Tensor a = arange(6, dtype: ScalarType.Float32).reshape(2, 3);
        using Tensor b = a.matmul(a.t());
        Assert.Equal(new float[] { 5, 14, 14, 50 }, b.data<float>().ToArray());
    }

    [Fact]
    public void OutputCopyIsWeakExactlyWhenTheSystemLacksTheVersion()
    {
        var requirements = ElfVersionNeeds.FindRequirements(File.ReadAllBytes(OutputCopy), Version);
        Assert.Single(requirements);
        bool weak = (requirements[0].Flags & 2) != 0;
        Assert.Equal(!ElfVersionNeeds.SystemLibStdCxxHas(Version), weak);
    }

    [Fact]
    public void ShippedLibraryAsksForTheVersionStrongly()
    {
        var requirements = ElfVersionNeeds.FindRequirements(File.ReadAllBytes(ShippedCopy), Version);
        Assert.Single(requirements);
        Assert.Equal(0, requirements[0].Flags & 2);
    }

    [Fact]
    public void PatchChangesOnlyTheFlagAndIsIdempotent()
    {
        string dir = Directory.CreateTempSubdirectory("elfpatch").FullName;
        try
        {
            string copy = Path.Combine(dir, "libLibTorchSharp.so");
            File.Copy(ShippedCopy, copy);
            byte[] before = File.ReadAllBytes(copy);

            Assert.Equal(1, ElfVersionNeeds.MarkWeak(copy, Version));
            byte[] after = File.ReadAllBytes(copy);
            int[] changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToArray();
            long flagOffset = ElfVersionNeeds.FindRequirements(before, Version)[0].Offset;
            Assert.Equal(before.Length, after.Length);
            Assert.All(changed, i => Assert.InRange(i, flagOffset, flagOffset + 1));
            Assert.NotEmpty(changed);

            Assert.Equal(0, ElfVersionNeeds.MarkWeak(copy, Version));
            Assert.Equal(after, File.ReadAllBytes(copy));
            Assert.Empty(ElfVersionNeeds.FindRequirements(before, "GLIBCXX_9.9.99"));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void NonElfInputIsRejectedClearly()
    {
        var e = Assert.Throws<InvalidDataException>(() => ElfVersionNeeds.FindRequirements(new byte[100], Version));
        Assert.Contains("not an ELF file", e.Message);
    }
}
