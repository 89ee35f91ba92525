// Marks one GNU version requirement of an ELF64 shared object weak, so the dynamic loader only warns
// when the system library lacks that version instead of refusing to load the object.
//
// Why: TorchSharp 0.107's libLibTorchSharp.so was linked against GCC 13's libstdc++ and so asks for
// GLIBCXX_3.4.32, which Debian 12 (GCC 12, up to GLIBCXX_3.4.30) does not have. The only symbol under
// that version is the marker `_ZSt21ios_base_library_initv`, which no relocation references, so the
// library runs correctly once the requirement is weak (VER_FLG_WEAK in its Vernaux entry).
//
// This one file is both the MSBuild inline task (Directory.Build.targets compiles it with
// RoslynCodeTaskFactory) and, with ELF_PATCH_TESTS defined, the code under test in the test project.
#nullable enable
using System;
using System.IO;
using System.Text;

#if !ELF_PATCH_TESTS
public sealed class WeakenElfVersionNeed : Microsoft.Build.Utilities.Task
{
    [Microsoft.Build.Framework.Required] public string File { get; set; } = "";
    [Microsoft.Build.Framework.Required] public string Version { get; set; } = "";

    public override bool Execute()
    {
        try
        {
            if (ElfVersionNeeds.SystemLibStdCxxHas(Version))
            {
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Low,
                    $"System libstdc++ provides {Version}; {File} left as shipped.");
                return true;
            }
            int changed = ElfVersionNeeds.MarkWeak(File, Version);
            Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, changed > 0
                ? $"Marked the {Version} requirement of {File} weak (system libstdc++ lacks it)."
                : $"{File}: {Version} requirement already weak or absent.");
            return true;
        }
        catch (Exception e)
        {
            Log.LogError($"Could not patch {File}: {e.Message}");
            return false;
        }
    }
}
#endif

public static class ElfVersionNeeds
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    /// <summary>The libstdc++ the dynamic loader would pick, looked for in the usual places.</summary>
    public static string? FindSystemLibStdCxx()
    {
        string[] candidates =
        {
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
        };
        foreach (string c in candidates)
        {
            if (System.IO.File.Exists(c))
            {
                return c;
            }
        }
        return null;
    }

    /// <summary>True when the system libstdc++ defines the version (its name appears in the library).</summary>
    public static bool SystemLibStdCxxHas(string version)
    {
        string? lib = FindSystemLibStdCxx();
        if (lib is null)
        {
            return false;
        }
        byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
        return IndexOf(System.IO.File.ReadAllBytes(lib), needle) >= 0;
    }

    /// <summary>The vna_flags of every requirement of <paramref name="version"/> in the ELF file, with their offsets.</summary>
    public static (long Offset, ushort Flags)[] FindRequirements(byte[] elf, string version)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
        {
            throw new InvalidDataException("not an ELF file");
        }
        if (elf[4] != 2 || elf[5] != 1)
        {
            throw new InvalidDataException("only 64-bit little-endian ELF is supported");
        }
        long shoff = (long)BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A);
        int shnum = BitConverter.ToUInt16(elf, 0x3C);
        var found = new System.Collections.Generic.List<(long, ushort)>();
        for (int i = 0; i < shnum; i++)
        {
            long sh = shoff + (long)i * shentsize;
            if (BitConverter.ToUInt32(elf, (int)sh + 4) != ShtGnuVerneed)
            {
                continue;
            }
            long offset = (long)BitConverter.ToUInt64(elf, (int)sh + 0x18);
            uint link = BitConverter.ToUInt32(elf, (int)sh + 0x28);
            uint count = BitConverter.ToUInt32(elf, (int)sh + 0x2C);
            long strtab = (long)BitConverter.ToUInt64(elf, (int)(shoff + link * shentsize) + 0x18);

            long vn = offset;
            for (uint n = 0; n < count; n++)
            {
                int auxCount = BitConverter.ToUInt16(elf, (int)vn + 2);
                long aux = vn + BitConverter.ToUInt32(elf, (int)vn + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    uint name = BitConverter.ToUInt32(elf, (int)aux + 8);
                    if (ReadCString(elf, strtab + name) == version)
                    {
                        found.Add((aux + 4, BitConverter.ToUInt16(elf, (int)aux + 4)));
                    }
                    aux += BitConverter.ToUInt32(elf, (int)aux + 12);
                }
                vn += BitConverter.ToUInt32(elf, (int)vn + 12);
            }
        }
        return found.ToArray();
    }

    /// <summary>
    /// Sets VER_FLG_WEAK on each requirement of <paramref name="version"/>; returns how many changed (0 when
    /// already weak, so running twice is harmless). The file is replaced by rename, never written in place,
    /// so a hard link into the NuGet cache is left untouched and a crash leaves the old or the new file whole.
    /// </summary>
    public static int MarkWeak(string path, string version)
    {
        byte[] elf = System.IO.File.ReadAllBytes(path);
        int changed = 0;
        foreach ((long offset, ushort flags) in FindRequirements(elf, version))
        {
            if ((flags & VerFlgWeak) == 0)
            {
                BitConverter.GetBytes((ushort)(flags | VerFlgWeak)).CopyTo(elf, offset);
                changed++;
            }
        }
        if (changed > 0)
        {
            string temp = path + ".weaken.tmp";
            System.IO.File.WriteAllBytes(temp, elf);
            // Atomic rename (netstandard2.0, which inline tasks compile against, has no Move with overwrite).
            System.IO.File.Replace(temp, path, null);
        }
        return changed;
    }

    private static string ReadCString(byte[] data, long start)
    {
        long end = start;
        while (end < data.Length && data[end] != 0)
        {
            end++;
        }
        return Encoding.ASCII.GetString(data, (int)start, (int)(end - start));
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j])
            {
                j++;
            }
            if (j == needle.Length)
            {
                return i;
            }
        }
        return -1;
    }
}
