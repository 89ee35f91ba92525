using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using AlexNet.Model;
using AlexNet.Training;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Distributed;

/// <summary>
/// `mpirun -np 2 alexnet train`: equal to one process with twice the batch; a failing rank ends the job.
/// </summary>
public class DataParallelTests
{
    private const string Mpirun = "/usr/bin/mpirun";
    private const string MpichLauncher = "/usr/bin/mpiexec.mpich";

    private static string Alexnet => Path.Combine(AppContext.BaseDirectory, "alexnet.dll");

    /// <summary>Runs mpirun with the given arguments; its exit code and output, or a failure when it hangs.</summary>
    /// <param name="mpich">Launch with MPICH's Hydra instead of Open MPI's mpirun.</param>
    private static (int Code, string Output) Run(string arguments, int timeoutSeconds = 120, bool mpich = false)
    {
        var start = new ProcessStartInfo(mpich ? MpichLauncher : Mpirun, mpich ? arguments : $"--oversubscribe --mca " +
            $"btl self,vader,tcp {arguments}")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        // Open MPI refuses root unless told (CI runs as root); one compute thread a rank.
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        using Process p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"mpirun {arguments} did not end within {timeoutSeconds} s (a rank waits forever?)");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    private static string Train(string data, string run, int batch, params string[] extra) =>
        $"dotnet {Alexnet} train -d {data} -m small --batch-size {batch} --dropout 0 --lr 0.05 --input-scale 0.0125 " +
        "--max-steps 5 " +
        $"--schedule step --step-epochs 9 --log-every 1 --threads 1 --out {run} {string.Join(" ", extra)}";

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void TwoRanksEqualOneProcessWithTwiceTheBatch(bool mpich)
    {
        Skip.IfNot(File.Exists(Mpirun), "Open MPI (Debian's openmpi-bin) is not installed");
        Skip.If(mpich && !File.Exists(MpichLauncher), "MPICH (Debian's mpich) is not installed");
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 72, 4);   // 72 = 4 global batches of 16 and a short one of 8
        TestData.WriteSyntheticStore(dir["data/val"], 20, 4, seed: 3);
        (int one, string oneOut) = Run($"-np 1 {Train(dir["data"], dir["one"], 16)}");
        Assert.True(one == 0, oneOut);
        (int two, string twoOut) = Run($"-np 2 {Train(dir["data"], dir["two"], 8)}", mpich: mpich);
        Assert.True(two == 0, twoOut);
        Assert.Contains(mpich ? "2 ranks (MPICH)" : "2 ranks (Open MPI)", twoOut);
        Assert.False(File.Exists(Path.Combine(dir["two"], "rank-1")));

        // Five steps with momentum and weight decay, through an epoch end (validation sharded) and the short batch.
        (AlexNetModel a, RunState sa) = Checkpoint.LoadModel(Path.Combine(dir["one"], Trainer.LastCheckpoint));
        (AlexNetModel b, RunState sb) = Checkpoint.LoadModel(Path.Combine(dir["two"], Trainer.LastCheckpoint));
        using (a)
        using (b)
        {
            Assert.Equal(5, sa.Step);
            Assert.Equal(5, sb.Step);
            foreach ((string key, Tensor t) in a.state_dict())
            {
                using Tensor diff = (t - b.state_dict()[key]).abs().max();
                Assert.True(diff.item<float>() <= 1e-6, $"{key} differs by {diff.item<float>()}");
            }
        }
        var va = MetricsLog.Read(dir["one"]).OfType<EpochMetrics>().Single();
        var vb = MetricsLog.Read(dir["two"]).OfType<EpochMetrics>().Single();
        Assert.Equal(va.ValTop1Error, vb.ValTop1Error, 6);
        Assert.Equal(va.TrainLoss, vb.TrainLoss, 5);
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void ARankThatFailsEndsTheJobAndRanksThatDisagreeStop(bool mpich)
    {
        Skip.IfNot(File.Exists(Mpirun), "Open MPI (Debian's openmpi-bin) is not installed");
        Skip.If(mpich && !File.Exists(MpichLauncher), "MPICH (Debian's mpich) is not installed");
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 32, 4);
        TestData.WriteSyntheticStore(dir["data/val"], 8, 4, seed: 3);
        // Rank 1 cannot open its data: it must end rank 0, which would otherwise wait in the first collective.
        (int code, string output) =
            Run($"-np 1 {Train(dir["data"], dir["a"], 8)} : -np 1 {Train(dir["nowhere"], dir["a"], 8)}",
            timeoutSeconds: 90, mpich: mpich);
        Assert.NotEqual(0, code);
        Assert.Contains("no prepared store", output);
        Assert.Contains("rank 1 of 2 failed", output);
        // Different options on the two ranks: a message that says so, and the job ends.
        (code, output) =
            Run($"-np 1 {Train(dir["data"], dir["b"], 8)} : -np " +
            $"1 {Train(dir["data"], dir["b"], 8, "--momentum", "0.8")}", timeoutSeconds: 90, mpich: mpich);
        Assert.NotEqual(0, code);
        Assert.Contains("ranks disagree on the options and data", output);
    }

    [SkippableFact]
    public void ATwoRankRunStoppedAndResumedEqualsOneThatRanThrough()
    {
        Skip.IfNot(File.Exists(Mpirun), "Open MPI (Debian's openmpi-bin) is not installed");
        using var dir = new TestData.TempDir();
        TestData.WriteSyntheticStore(dir["data/train"], 72, 4);
        TestData.WriteSyntheticStore(dir["data/val"], 20, 4, seed: 3);
        Assert.Equal(0, Run($"-np 2 {Train(dir["data"], dir["through"], 8)}").Code);
        // The same run stopped after 2 steps, then resumed to Train's 5.
        Assert.Equal(0,
            Run($"-np 2 {Train(dir["data"], dir["resumed"], 8).Replace("--max-steps 5", "--max-steps 2")}").Code);
        (int code, string output) = Run($"-np 2 {Train(dir["data"], dir["resumed"], 8, "--resume")}");
        Assert.True(code == 0, output);
        (AlexNetModel a, _) = Checkpoint.LoadModel(Path.Combine(dir["through"], Trainer.LastCheckpoint));
        (AlexNetModel b, RunState sb) = Checkpoint.LoadModel(Path.Combine(dir["resumed"], Trainer.LastCheckpoint));
        using (a)
        using (b)
        {
            Assert.Equal(5, sb.Step);
            foreach ((string key, Tensor t) in a.state_dict())
            {
                Assert.True(t.eq(b.state_dict()[key]).all().item<bool>(), $"{key} differs after the resume");
            }
        }
    }
}
