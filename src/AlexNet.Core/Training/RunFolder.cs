// One folder per run (STYLE §7): options.json, metrics.jsonl, last.ckpt, best.ckpt, plots. This file keeps a
// second process out of it (an advisory lock that dies with its process, as a batch scheduler's job expects),
// and decides what a new run or a resumed one may find there.
using System;
using System.IO;
using System.Security.Cryptography;
using AlexNet.Data;

namespace AlexNet.Training;

/// <summary>The run folder is held by another process (a `train` or `--resume` still running).</summary>
public sealed class RunFolderInUseException(string message) : IOException(message);

public sealed class RunFolder : IDisposable
{
    public const string LockFile = ".lock";

    private readonly FileStream _lock;

    private RunFolder(string directory, FileStream held)
    {
        Directory = directory;
        _lock = held;
    }

    public string Directory { get; }

    /// <summary> Takes the folder's lock (flock through FileShare.None, released by the kernel when this process ends,
    /// however it ends), making the folder if <paramref name="create"/>; a second process gets a clear refusal, never a
    /// shared folder.
    /// </summary>
    public static RunFolder Lock(string directory, bool create)
    {
        if (create)
        {
            System.IO.Directory.CreateDirectory(directory);
        }
        string path = Path.Combine(directory, LockFile);
        try
        {
            var held = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            held.SetLength(0);
            using (var w = new StreamWriter(held, leaveOpen: true))
            {
                w.Write($"{Environment.ProcessId} {Environment.MachineName} {DateTime.Now:O}\n");
            }
            held.Flush();
            return new RunFolder(directory, held);
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw new RunFolderInUseException(
                $"{directory} is in use by another process (its {LockFile} is locked: a `train` or " +
                "`--resume` of this run is still running). Wait for it to end or stop it, or choose another --out.");
        }
    }

    /// <summary>
    /// A new run may start here: refused where a checkpoint exists. A run that stopped before its first checkpoint
    /// (a divergence, a crash) left only its log: that is kept aside under a dated name and the folder is reused.
    /// </summary>
    /// <returns>Where the earlier log was moved, or null.</returns>
    public string? PrepareForNewRun()
    {
        if (File.Exists(Path.Combine(Directory, Trainer.LastCheckpoint)))
        {
            throw new IOException(
                $"{Directory} already holds a run; pass --resume to continue it, or choose another --out (nothing " +
                "was overwritten).");
        }
        string log = Path.Combine(Directory, MetricsLog.FileName);
        if (!File.Exists(log) || new FileInfo(log).Length == 0)
        {
            File.Delete(log);   // nothing logged: nothing to keep
            return null;
        }
        string aside = Path.Combine(Directory, $"metrics-before-{DateTime.Now:yyyyMMdd-HHmmss}.jsonl");
        File.Move(log, aside);
        return aside;
    }

    /// <summary>The checkpoint a resumed run continues from; a clear refusal when the run never wrote one.</summary>
    public string CheckpointToResume()
    {
        string last = Path.Combine(Directory, Trainer.LastCheckpoint);
        if (!File.Exists(last))
        {
            throw new FileNotFoundException(
                $"{Directory} has no {Trainer.LastCheckpoint} to resume from (the run stopped before its first " +
                "checkpoint, or this is not a run folder): run the same command without --resume to start it again.",
                last);
        }
        return last;
    }

    public void Dispose() => _lock.Dispose();

    /// <summary>
    /// What a checkpoint records of the training store, to refuse a resume on other data: its shape and a hash of its
    /// labels and mean image (a store moved to another folder is the same store).
    /// </summary>
    public static string Fingerprint(ImageStore store)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(store.Labels.AsSpan()));
        hash.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(store.Mean.AsSpan()));
        string digest = Convert.ToHexString(hash.GetHashAndReset())[..16].ToLowerInvariant();
        return $"{store.Count} images {store.Channels}×{store.Height}×{store.Width}, {store.ClassCount} " +
            $"classes, {digest}";
    }

    /// <summary>Refuses to resume on a training store other than the one the run trained on.</summary>
    public static void CheckSameData(RunState saved, ImageStore train, string runDir)
    {
        if (saved.TrainData is { } was && was != Fingerprint(train))
        {
            throw new ArgumentException(
                $"{runDir} trained on other data ({was}); {train.Directory} holds {Fingerprint(train)}. " +
                $"Resume with the run's own data (--data or --train as when it started), or start a new run.");
        }
    }

    /// <summary>
    /// Refuses to resume with another number of processes: the global batch, and so every later step, would change.
    /// </summary>
    public static void CheckSameRanks(RunState saved, int ranks, string runDir)
    {
        if (saved.Ranks != ranks)
        {
            string how = saved.Ranks == 1 ? "in one process (without mpirun)" : $"under `mpirun -np {saved.Ranks}`";
            throw new ArgumentException(
                $"{runDir} trained with {saved.Ranks} process(es), a step of {saved.Ranks} " +
                $"× {saved.Options.BatchSize} images; " +
                $"this is {ranks}. Resume it {how}, or start a new run: another count changes the batch and the data " +
                "each step sees.");
        }
    }
}
