using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace AlexNet.Cli;

/// <summary>
/// SIGINT (Ctrl-C) or SIGTERM (a batch scheduler's warning) asks the trainer to stop after the current step; a
/// second SIGINT aborts at once. Exit codes follow the shell's 128 + signal: 130 and 143.
/// </summary>
/// <remarks>
/// The handlers are registered once and never removed (#28.1). Without one, .NET answers SIGTERM by ending the process
/// from its signal thread: exit() runs libtorch's and oneDNN's static destructors while the main thread may still be
/// freeing tensors, and the heap is corrupted (`free(): invalid next size`, `corrupted size vs. prev_size`, exit 134).
/// Such a signal came when the command had already ended: Open MPI's mpirun and MPICH's Hydra signal the other ranks
/// when one exits non-zero (143 included), and the stop signal had been disposed by then. Now a signal after the
/// command is ignored, and the process ends with the command's own code. Which thread the kernel interrupts to run the
/// handler: SignalThread.cs (the corruption itself).
/// </remarks>
internal sealed class StopSignal : IDisposable
{
    private static readonly object Gate = new();
    private static PosixSignalRegistration? s_interrupt, s_terminate;   // for the life of the process: see the remarks
    private static StopSignal? s_current;

    private readonly CancellationTokenSource _cts = new();

    public StopSignal()
    {
        lock (Gate)
        {
            s_interrupt ??= PosixSignalRegistration.Create(PosixSignal.SIGINT, c => Dispatch(c, 130));
            s_terminate ??= PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => Dispatch(c, 143));
            s_current = this;
        }
    }

    public CancellationToken Token => _cts.Token;

    public int? ExitCode { get; private set; }

    private static void Dispatch(PosixSignalContext context, int code)
    {
        lock (Gate)
        {
            if (s_current is null)
            {
                // The command has ended and is returning its code (a launcher signalling the other ranks): let it.
                context.Cancel = true;
                return;
            }
            s_current.Request(context, code);
        }
    }

    private void Request(PosixSignalContext context, int code)
    {
        if (ExitCode is not null && context.Signal == PosixSignal.SIGINT)
        {
            return;   // the second Ctrl-C: let the runtime end the process now
        }
        context.Cancel = true;
        ExitCode ??= code;
        Console.Error.WriteLine(
            $"Stopping after this step and writing last.ckpt " +
            $"({(code == 130 ? "Ctrl-C again aborts at once" : "SIGTERM")}) …");
        _cts.Cancel();
    }

    public void Dispose()
    {
        lock (Gate)
        {
            if (s_current == this)
            {
                s_current = null;   // a handler already on its way sees this, not a disposed token source
            }
            _cts.Dispose();
        }
    }
}
