// A thin binding of libmpi's C API: the seven calls data-parallel training needs, on the MPI library the
// process was started with (`mpirun -np N alexnet train …`). MPI.NET from NuGet cannot be used: it is built
// for MS-MPI's integer handles, while Open MPI's handles are the addresses of exported globals
// (ompi_mpi_comm_world, ompi_mpi_float, ompi_mpi_op_sum) and its MPI_IN_PLACE is 1; MPICH's handles are
// integer constants and its MPI_IN_PLACE is −1. Both are passed here as one pointer-sized argument (an int
// handle in a 64-bit register reads the same), so the one set of function pointers serves both.
using System;
using System.IO;
using System.Runtime.InteropServices;

namespace AlexNet.Distributed;

public sealed unsafe class Mpi : IDisposable
{
    private readonly nint _lib;
    private readonly nint _world, _float, _double, _sum, _max, _inPlace;
    private readonly delegate* unmanaged<void*, void*, int, nint, nint, nint, int> _allreduce;
    private readonly delegate* unmanaged<void*, int, nint, int, nint, int> _bcast;
    private readonly delegate* unmanaged<nint, int, int> _abort;
    private readonly delegate* unmanaged<int> _finalize;
    private bool _finalized;

    /// <summary>This process's rank and the number of processes (MPI_COMM_WORLD).</summary>
    public int Rank { get; }
    public int Size { get; }

    /// <summary>"Open MPI" or "MPICH": whose handles are in use.</summary>
    public string Flavour { get; }

    /// <summary>
    /// True when a launcher started this process as one of several (Open MPI's or MPICH's variables).
    /// </summary>
    public static bool Launched => Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is string o && o != "1"
        || Environment.GetEnvironmentVariable("PMI_SIZE") is string p && p != "1";

    /// <summary>Loads libmpi, calls MPI_Init and reads the rank and size.</summary>
    public Mpi()
    {
        _lib = Load();
        bool openMpi = NativeLibrary.TryGetExport(_lib, "ompi_mpi_comm_world", out nint world);
        Flavour = openMpi ? "Open MPI" : "MPICH";
        if (openMpi)
        {
            _world = world;
            _float = Export("ompi_mpi_float");
            _double = Export("ompi_mpi_double");
            _sum = Export("ompi_mpi_op_sum");
            _max = Export("ompi_mpi_op_max");
            _inPlace = 1;
        }
        else
        {
            // mpi.h of MPICH (and its ABI-compatible derivatives).
            _world = 0x44000000;
            _float = 0x4c00040a;
            _double = 0x4c00080b;
            _sum = 0x58000003;
            _max = 0x58000001;
            _inPlace = -1;
        }
        var init = (delegate* unmanaged<int*, byte***, int>)Export("MPI_Init");
        var rank = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_rank");
        var size = (delegate* unmanaged<nint, int*, int>)Export("MPI_Comm_size");
        _allreduce = (delegate* unmanaged<void*, void*, int, nint, nint, nint, int>)Export("MPI_Allreduce");
        _bcast = (delegate* unmanaged<void*, int, nint, int, nint, int>)Export("MPI_Bcast");
        _abort = (delegate* unmanaged<nint, int, int>)Export("MPI_Abort");
        _finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        Check(init(null, null), "MPI_Init");
        int r, s;
        Check(rank(_world, &r), "MPI_Comm_rank");
        Check(size(_world, &s), "MPI_Comm_size");
        Rank = r;
        Size = s;
    }

    /// <summary>
    /// The library of the launcher that started us: MPICH's Hydra sets PMI_*, Open MPI's mpirun OMPI_* (both may be
    /// installed).
    /// </summary>
    private static nint Load()
    {
        bool mpich = Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is null
            && Environment.GetEnvironmentVariable("PMI_SIZE") is not null;
        string[] names = mpich
            ? new[] { "libmpich.so.12", "libmpi.so.12", "libmpi.so.40", "libmpi.so" }
            : new[] { "libmpi.so.40", "libmpich.so.12", "libmpi.so.12", "libmpi.so" };
        foreach (string name in names)
        {
            if (NativeLibrary.TryLoad(name, out nint lib))
            {
                return lib;
            }
        }
        throw new FileNotFoundException(
            "no MPI library (libmpi.so.40 of Open MPI, libmpich.so.12 of MPICH) could be loaded: install Debian's " +
            "openmpi-bin (or mpich) to train with mpirun.");
    }

    private nint Export(string name) => NativeLibrary.TryGetExport(_lib, name, out nint p) ? p
        : throw new EntryPointNotFoundException($"the MPI library lacks {name}.");

    private static void Check(int code, string call)
    {
        if (code != 0)
        {
            throw new InvalidOperationException($"{call} failed with MPI error {code}.");
        }
    }

    /// <summary>data ← Σ over ranks of data, in place (MPI_IN_PLACE), in chunks an int count can address.</summary>
    public void SumInPlace(float* data, long count)
    {
        for (long at = 0; at < count; at += int.MaxValue / 2)
        {
            int n = (int)Math.Min(int.MaxValue / 2, count - at);
            Check(_allreduce((void*)_inPlace, data + at, n, _float, _sum, _world), "MPI_Allreduce");
        }
    }

    public void SumInPlace(Span<double> data)
    {
        fixed (double* p = data)
        {
            Check(_allreduce((void*)_inPlace, p, data.Length, _double, _sum, _world), "MPI_Allreduce");
        }
    }

    public void MaxInPlace(Span<double> data)
    {
        fixed (double* p = data)
        {
            Check(_allreduce((void*)_inPlace, p, data.Length, _double, _max, _world), "MPI_Allreduce");
        }
    }

    /// <summary>Rank <paramref name="root"/>'s values to every rank.</summary>
    public void Broadcast(float* data, long count, int root = 0)
    {
        for (long at = 0; at < count; at += int.MaxValue / 2)
        {
            int n = (int)Math.Min(int.MaxValue / 2, count - at);
            Check(_bcast(data + at, n, _float, root, _world), "MPI_Bcast");
        }
    }

    /// <summary>
    /// Ends every rank of the job with <paramref name="code"/> (a failed rank must not leave the others waiting).
    /// </summary>
    public void Abort(int code) => _abort(_world, code);

    public void Dispose()
    {
        if (!_finalized)
        {
            _finalized = true;
            _finalize();
        }
    }
}
