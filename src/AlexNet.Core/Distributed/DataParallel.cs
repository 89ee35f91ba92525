// Data-parallel training over MPI, as PyTorch's DDP and Horovod do it: rank 0 broadcasts the initial weights;
// every rank reads the same seeded order of the epoch and takes its slice of each global batch (BatchLoader);
// after the backward pass the gradients are averaged by allreduce in ~25 MB buckets, in parameter order, each
// rank's gradient weighted by its share of the batch, so the sum is the gradient of the whole batch's mean loss;
// then §5's update runs identically everywhere. Rank 0 alone writes logs, checkpoints and plots; validation is
// sharded and its sums added. The allreduce is not overlapped with the backward pass (docs/scale-out.md).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Distributed;

public sealed unsafe class DataParallel : IProcessGroup, IDisposable
{
    /// <summary>Gradients are summed in buckets of about this many bytes (DDP's default bucket).</summary>
    public const long BucketBytes = 25L << 20;

    private readonly Mpi _mpi;
    private readonly float* _bucket;
    private readonly long _bucketFloats = BucketBytes / sizeof(float);

    public int Rank => _mpi.Rank;
    public int Ranks => _mpi.Size;
    public bool IsLeader => _mpi.Rank == 0;
    public string Flavour => _mpi.Flavour;

    /// <summary>Seconds spent in the gradients' allreduce (for the scale-out measurements).</summary>
    public double ReduceSeconds { get; private set; }

    public DataParallel(Mpi mpi)
    {
        _mpi = mpi;
        _bucket = (float*)NativeMemory.AlignedAlloc((nuint)BucketBytes, 64);
    }

    /// <summary>
    /// Rank <paramref name="rank"/>'s slice [From, To) of <paramref name="count"/> items split evenly over <paramref
    /// name="ranks"/>.
    /// </summary>
    public static (int From, int To) Share(int count, int rank, int ranks) =>
        ((int)((long)rank * count / ranks), (int)((long)(rank + 1) * count / ranks));

    /// <summary>
    /// Started by mpirun with more than one rank: the job's group; otherwise null (one process, nothing to do).
    /// </summary>
    public static DataParallel? FromEnvironment() => Mpi.Launched ? new DataParallel(new Mpi()) : null;

    /// <summary>Stops every rank with a message naming <paramref name="what"/> when the ranks' texts differ.</summary>
    public void Agree(string what, string text)
    {
        byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(text));
        double h = BitConverter.ToUInt64(hash) >> 12;   // 52 bits: exact in a double
        Span<double> v = stackalloc double[] { h, -h };
        _mpi.MaxInPlace(v);
        if (v[0] != -v[1])
        {
            throw new ArgumentException(
                $"the {Ranks} ranks disagree on {what}: start every rank with the same command line and data.");
        }
    }

    /// <summary>Rank 0's parameters (and buffers) on every rank.</summary>
    public void Broadcast(AlexNetModel model)
    {
        using var _ = no_grad();
        foreach ((string _, Tensor t) in model.state_dict())
        {
            if (!t.is_contiguous() || t.dtype != ScalarType.Float32 || t.device_type != TorchSharp.DeviceType.CPU)
            {
                throw new NotSupportedException("data-parallel training runs on contiguous float32 CPU tensors.");
            }
            _mpi.Broadcast(Planes.Ptr(t), t.numel());
        }
    }

    /// <summary> ∂L/∂w ← Σ over ranks of (share · ∂L/∂w): with share = this rank's images / the whole batch's, the
    /// gradient of the batch's mean loss. A parameter without a gradient (an empty share) takes part with zeros.
    /// </summary>
    public void AverageGradients(IReadOnlyList<Parameter> parameters, double share)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var _ = no_grad();
        var grads = parameters.Select(p => p.grad ?? (p.grad = zeros_like(p))).ToArray();
        int i = 0;
        while (i < grads.Length)
        {
            // A bucket: consecutive gradients up to BucketBytes; one larger than that is reduced in place on its own.
            if (grads[i].numel() >= _bucketFloats)
            {
                grads[i].mul_(share);
                _mpi.SumInPlace(Planes.Ptr(grads[i]), grads[i].numel());
                i++;
                continue;
            }
            int first = i;
            long used = 0;
            while (i < grads.Length && used + grads[i].numel() <= _bucketFloats)
            {
                Copy(grads[i], used, toBucket: true, (float)share);
                used += grads[i].numel();
                i++;
            }
            _mpi.SumInPlace(_bucket, used);
            used = 0;
            for (int k = first; k < i; k++)
            {
                Copy(grads[k], used, toBucket: false, 1f);
                used += grads[k].numel();
            }
        }
        ReduceSeconds += clock.Elapsed.TotalSeconds;
    }

    private void Copy(Tensor g, long offset, bool toBucket, float scale)
    {
        var grad = new Span<float>(Planes.Ptr(g), checked((int)g.numel()));
        var slot = new Span<float>(_bucket + offset, grad.Length);
        if (!toBucket)
        {
            slot.CopyTo(grad);
            return;
        }
        System.Numerics.Tensors.TensorPrimitives.Multiply(grad, scale, slot);
    }

    /// <summary>Σ over ranks, in place (metrics sums, validation counts).</summary>
    public void Sum(Span<double> values) => _mpi.SumInPlace(values);

    /// <summary>True on every rank when it is true on any (a stop signal, a time-based checkpoint).</summary>
    public bool Any(bool flag) => Max(flag ? 1 : 0) > 0;

    /// <summary>
    /// The largest of every rank's <paramref name="value"/> (an exit code: a stop seen by one rank is the job's).
    /// </summary>
    public int Max(int value)
    {
        Span<double> v = stackalloc double[] { value };
        _mpi.MaxInPlace(v);
        return (int)v[0];
    }

    /// <summary>
    /// Open MPI's mpirun, signalled itself (a scheduler's SIGTERM, Ctrl-C), signals the ranks and kills them
    /// odls_base_sigkill_timeout seconds later: 1 by default, too short to finish a step and write last.ckpt. The
    /// advice to give when the job's environment leaves it at that, or null (MPICH's launcher waits for the ranks).
    /// </summary>
    public string? StopAdvice()
    {
        if (Flavour != "Open MPI")
        {
            return null;
        }
        string? set = Environment.GetEnvironmentVariable("OMPI_MCA_odls_base_sigkill_timeout");
        if (int.TryParse(set, out int seconds) && seconds >= MinimumStopSeconds)
        {
            return null;
        }
        return $"Open MPI's mpirun kills the ranks {(set is null ? "1 s (its default)" : $"{set} s")} after it is " +
            "signalled, which may be too soon to write " +
            $"last.ckpt: export OMPI_MCA_odls_base_sigkill_timeout={MinimumStopSeconds} before mpirun (or signal the " +
            "ranks themselves, as a scheduler does).";
    }

    /// <summary>
    /// The grace a stop needs: the current step, a checkpoint of the paper net (~0.7 GB) and the exit.
    /// </summary>
    public const int MinimumStopSeconds = 60;

    /// <summary>Ends the whole job: a rank that failed must not leave the others waiting in a collective.</summary>
    public void Abort(int code) => _mpi.Abort(code);

    public void Dispose()
    {
        NativeMemory.AlignedFree(_bucket);
        _mpi.Dispose();
    }
}
