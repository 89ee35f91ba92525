// The job's process group around one command, as torch.distributed's init_process_group and
// destroy_process_group: under mpirun the command gets the group; when every rank ends alike (done, or stopped by
// the same signal) MPI is finalised, and a rank that fails aborts the job, so that no rank waits forever in a
// collective for one that is gone.
using System;
using System.IO;
using System.Threading;

namespace AlexNet.Distributed;

/// <summary>
/// MPI could not be started for a job mpirun launched (no library, or a refusal): the message says which.
/// </summary>
public sealed class JobStartException(string message, Exception inner) : Exception(message, inner);

public static class Job
{
    /// <summary>
    /// Runs <paramref name="body"/> with the job's group (null in one process) and returns its exit code.
    /// </summary>
    /// <param name="log">Where a rank says that it failed or was stopped (each rank's own line: a launcher may lose
    /// codes).</param>
    public static int Run(Func<DataParallel?, int> body, TextWriter log)
    {
        DataParallel? parallel;
        try
        {
            parallel = DataParallel.FromEnvironment();
        }
        catch (Exception e) when (e is FileNotFoundException or EntryPointNotFoundException or InvalidOperationException)
        {
            throw new JobStartException(e.Message, e);
        }
        if (parallel is null)
        {
            return body(null);
        }
        int code = 1;
        try
        {
            code = body(parallel);
        }
        finally
        {
            if (code is 0 or 130 or 143)
            {
                parallel.Dispose();
            }
            else
            {
                log.WriteLine($"rank {parallel.Rank} of {parallel.Ranks} failed (exit {code}): ending the job.");
                // MPICH's launcher tears the job down at MPI_Abort and may drop what this rank wrote just before
                // (seen in 3 of 5 runs of the failing-rank test): give it a moment to forward the lines.
                log.Flush();
                Thread.Sleep(500);
                parallel.Abort(code);
            }
        }
        if (code is 130 or 143)
        {
            log.WriteLine($"rank {parallel.Rank} of {parallel.Ranks} stopped by a signal: exit {code}.");
        }
        return code;
    }
}
