using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Threading;
using AlexNet.Model;
using AlexNet.Training;
using Xunit;
using Xunit.Abstractions;

namespace AlexNet.Tests.Distributed;

/// <summary> A scheduler's SIGTERM, again and again, at steps, validations and checkpoints alike (#28): every time the
/// job ends with 143 and a last.ckpt that loads, and no process dies of a corrupted heap. Bounded to fit CI: a few
/// trials per way of running, each a few seconds.
/// </summary>
public class StopSignalTests(ITestOutputHelper output)
{
    private const string Mpirun = "/usr/bin/mpirun";
    private const string MpichLauncher = "/usr/bin/mpiexec.mpich";
    private const int Sigterm = 15;

    /// <summary>
    /// When each trial's signal comes, after the run's first logged step: inside steps, validations and checkpoints.
    /// </summary>
    private static readonly int[] DelaysMs = { 0, 170, 450, 800, 1300 };

    /// <summary>
    /// Trials per way of running: 5 in CI; ALEXNET_STOP_TRIALS=100 for the long stress run (docs/scale-out.md).
    /// </summary>
    private static int Trials => StressTrials ?? DelaysMs.Length;

    private static int? StressTrials =>
        int.TryParse(Environment.GetEnvironmentVariable("ALEXNET_STOP_TRIALS"), out int n) && n > 0 ? n : null;

    /// <summary>
    /// Signalled stops aborted with a corrupted heap in about 1 of 50–100 trials, two ranks above all (#28.1): the
    /// runtime's signal handler, run on whichever thread the kernel picked, allocated its thread-locals while that
    /// thread
    /// was inside malloc or free. Since the signals go to one idle thread (SignalThread.cs) the trials run in CI again,
    /// 5 per way of running; ALEXNET_STOP_TRIALS=N runs N (the corruption was rare: only many trials show its absence).
    /// </summary>
    private static int Delay(int trial) => DelaysMs[trial % DelaysMs.Length] + 37 * (trial / DelaysMs.Length) % 500;

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    private static string Alexnet => Path.Combine(AppContext.BaseDirectory, "alexnet.dll");

    /// <summary>Tiny epochs (12 steps) and a validation store large enough that a signal often lands in it.</summary>
    private static string TrainArguments(string data, string run, string extra) =>
        $"{Alexnet} train -d {data} -m small --batch-size 8 --epochs 50 --log-every 1 --checkpoint-every 5 " +
        $"--out {run} {extra}";

    private static void WriteData(TestData.TempDir dir)
    {
        TestData.WriteSyntheticStore(dir["data/train"], 96, 4);
        TestData.WriteSyntheticStore(dir["data/val"], 600, 4, seed: 3);
    }

    /// <summary>
    /// Starts the command, signals it (or its ranks) once it trains, and returns its exit code and output.
    /// </summary>
    /// <param name="whileTraining">Looks at the process once it trains, before the signal.</param>
    private (int Code, string Output) StopOnce(string file, string arguments, string run, int delayMs,
        Func<Process, IEnumerable<int>> targets,
        Action<Process>? whileTraining = null)
    {
        var start = new ProcessStartInfo(file, arguments)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        using Process p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        string log = Path.Combine(run, Trainer.MetricsFile);
        var clock = Stopwatch.StartNew();
        while (!(File.Exists(log) && new FileInfo(log).Length > 0) && !p.HasExited && clock.Elapsed.TotalSeconds < 60)
        {
            Thread.Sleep(20);
        }
        whileTraining?.Invoke(p);
        Thread.Sleep(delayMs);
        foreach (int pid in targets(p))
        {
            kill(pid, Sigterm);
        }
        if (!p.WaitForExit(60_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {arguments} did not end within 60 s of SIGTERM");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    /// <param name="launcherCodes">The codes the launcher may report, where it is not the process itself.</param>
    private void AssertStoppedWithACheckpoint(int code, string text, string run, string how,
        int[]? launcherCodes = null, int ranks = 1)
    {
        output.WriteLine($"{how}: exit {code}");
        Assert.False(text.Contains("corrupt",
            StringComparison.Ordinal) || text.Contains("double free", StringComparison.Ordinal),
            $"{how}: a process died of a corrupted heap (exit {code})\n{text}");
        Assert.True((launcherCodes ?? new[] { 143 }).Contains(code), $"{how}: exit {code}, not 143\n{text}");
        for (int rank = 0; rank < ranks && ranks > 1; rank++)
        {
            Assert.Contains($"rank {rank} of {ranks} stopped by a signal: exit 143.", text);
        }
        Assert.Contains("Stopped at step", text);
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(Path.Combine(run, Trainer.LastCheckpoint));
        model.Dispose();
        Assert.True(state.Step > 0);
        // the log reads back, none past the checkpoint
        Assert.All(MetricsLog.Read(run).OfType<StepMetrics>(), s => Assert.True(s.Step <= state.Step));
    }

    /// <summary>
    /// #28.1: a running `train` receives SIGHUP, SIGINT and SIGTERM on one idle thread only. Every thread made after
    /// start-up (the main thread, the thread pool, libtorch's and libdnnl's OpenMP workers, MPI's) blocks them, so no
    /// signal handler can interrupt one of them inside malloc; the `signals` thread does not; and SIGTERM still stops
    /// the run with 143 and a checkpoint.
    /// </summary>
    [Fact]
    public void SignalsReachOnlyTheIdleSignalThreadAndStillStopTheRun()
    {
        using var dir = new TestData.TempDir();
        WriteData(dir);
        string run = dir["run"];
        (int code, string text) = StopOnce("dotnet", TrainArguments(dir["data"], run, "--threads 2"),
            run, 0, p => new[] { p.Id }, p =>
        {
            const ulong routed = (1UL << 0) | (1UL << 1) | (1UL << 14);   // SIGHUP, SIGINT, SIGTERM (bit = signal − 1)
            var threads = Directory.GetDirectories($"/proc/{p.Id}/task").Select(t =>
            {
                string[] status = File.ReadAllLines(Path.Combine(t, "status"));
                string name = status.First(l => l.StartsWith("Name:", StringComparison.Ordinal))[5..].Trim();
                ulong blocked = Convert.ToUInt64(status.First(l => l.StartsWith("SigBlk:",
                    StringComparison.Ordinal))[7..].Trim(), 16);
                return (Tid: int.Parse(Path.GetFileName(t), System.Globalization.CultureInfo.InvariantCulture),
                    Name: name, Blocked: (blocked & routed) == routed);
            }).ToList();
            Assert.Single(threads, t => t.Name == "signals" && !t.Blocked);
            Assert.Contains(threads, t => t.Tid == p.Id && t.Blocked);   // the main thread
            Assert.All(threads.Where(t => !t.Name.StartsWith(".NET", StringComparison.Ordinal) && t.Name != "signals"),
                t => Assert.True(t.Blocked, $"thread {t.Tid} ({t.Name}) can receive the stop signals"));
        });
        AssertStoppedWithACheckpoint(code, text, run, "SIGTERM");
    }

    /// <summary>The direct children of a process (the ranks of a local mpirun).</summary>
    private static IEnumerable<int> Children(Process p)
    {
        string path = $"/proc/{p.Id}/task/{p.Id}/children";
        return File.Exists(path) ? File.ReadAllText(path).Split(' ',
            StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray() : Array.Empty<int>();
    }

    /// <summary>
    /// CI met the corruption here too once (exit 134 at a signal 170 ms in; 0 of 65 before), before SignalThread.
    /// </summary>
    [Fact]
    public void OneProcessWithReplicasStopsWith143AndACheckpointEveryTime()
    {
        using var dir = new TestData.TempDir();
        WriteData(dir);
        for (int trial = 0; trial < Trials; trial++)
        {
            string run = dir[$"run{trial}"];
            (int code, string text) = StopOnce("dotnet", TrainArguments(dir["data"], run, "--replicas 2 --threads 2"),
                run, Delay(trial), p => new[] { p.Id });
            AssertStoppedWithACheckpoint(code, text, run, $"replicas, signal {Delay(trial)} ms in");
        }
    }

    [SkippableFact]
    public void TwoRanksUnderMpichStopWith143AndACheckpointEveryTime()
    {
        Skip.IfNot(File.Exists(MpichLauncher), "MPICH (Debian's mpich) is not installed");
        using var dir = new TestData.TempDir();
        WriteData(dir);
        for (int trial = 0; trial < Trials; trial++)
        {
            string run = dir[$"run{trial}"];
            // The launcher is signalled, as a scheduler signals the job's script: Hydra forwards it to every rank.
            (int code, string text) = StopOnce(MpichLauncher,
                $"-np 2 dotnet {TrainArguments(dir["data"], run, "--threads 1")}", run, Delay(trial),
                p => new[] { p.Id });
            // Hydra itself reports 0 in some runs where every rank exited 143 (a bash rank that traps TERM and exits
            // 143 shows it too): each rank's own code is asserted, and the launcher's is 143 or that 0.
            AssertStoppedWithACheckpoint(code, text, run, $"MPICH, signal {Delay(trial)} ms in",
                launcherCodes: new[] { 143, 0 }, ranks: 2);
            Assert.Contains("mpiexec.mpich -np 2 alexnet train", text);   // the resume command names the launcher
        }
    }

    [SkippableFact]
    public void TwoRanksUnderOpenMpiSignalledAsASchedulerDoesStopWith143AndACheckpoint()
    {
        Skip.IfNot(File.Exists(Mpirun), "Open MPI (Debian's openmpi-bin) is not installed");
        using var dir = new TestData.TempDir();
        WriteData(dir);
        for (int trial = 0; trial < Trials; trial++)
        {
            string run = dir[$"run{trial}"];
            // A scheduler signals the job's processes, the ranks among them (Open MPI's mpirun, signalled itself, kills
            // them after odls_base_sigkill_timeout and exits 1 whatever they do: docs/scale-out.md).
            (int code, string text) = StopOnce(Mpirun,
                $"--oversubscribe --mca btl self,vader,tcp -np 2 " +
                $"dotnet {TrainArguments(dir["data"], run, "--threads 1")}",
                run, Delay(trial), Children);
            AssertStoppedWithACheckpoint(code, text, run, $"Open MPI, signal {Delay(trial)} ms in", ranks: 2);
            Assert.Contains("mpirun -np 2 alexnet train", text);
            Assert.Contains("OMPI_MCA_odls_base_sigkill_timeout", text);   // the advice for signalling mpirun itself
        }
    }
}
