using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace AlexNet.Cli;

/// <summary>
/// #28.1: a scheduler's SIGTERM and the terminal's SIGINT are received by one idle thread of ours, never by a thread
/// that may be inside malloc.
/// </summary>
/// <remarks>
/// The kernel hands a process-directed signal to any thread that does not block it, and the runtime's handler runs on
/// that thread. On a thread the runtime never saw (MPI's progress threads, libtorch's and libdnnl's OpenMP workers) its
/// first touch of the runtime's thread-locals allocates (glibc's <c>__tls_get_addr</c> → malloc) inside the handler; if
/// the thread was itself in malloc or free, the heap is corrupted. A rank that hung after
/// <c>malloc(): invalid size (unsorted)</c> under glibc's malloc checking, attached with gdb, had its main thread in a
/// free inside dnnl_sgemm and its signal-dispatch thread finding the heap already broken at its first thread-local.
/// Threads inherit their creator's signal mask: blocking the signals on the main thread before any such pool exists,
/// and unblocking them on one thread that only sleeps, leaves that thread the only recipient, interrupted in a sleep.
/// </remarks>
internal static unsafe class SignalThread
{
    private const int SigBlock = 0, SigUnblock = 1, SigSetMask = 2;
    private static readonly int[] RoutedSignals = { 1, 2, 15 };   // SIGHUP, SIGINT, SIGTERM

    [StructLayout(LayoutKind.Sequential)]
    private struct SigSet
    {
        public fixed ulong Bits[16];   // glibc's sigset_t: 1,024 bits
    }

    [DllImport("libc", EntryPoint = "pthread_sigmask")]
    private static extern int PthreadSigmask(int how, SigSet* set, SigSet* old);

    private static int s_started;

    /// <summary>Blocks the routed signals on this thread (call it first thing on the main thread) and starts the
    /// receiver.</summary>
    public static void Start()
    {
        if (!OperatingSystem.IsLinux() || Interlocked.Exchange(ref s_started, 1) == 1)
        {
            return;
        }
        SigSet set = Routed();
        if (PthreadSigmask(SigBlock, &set, null) != 0)
        {
            return;   // nothing changed: signals reach every thread, as before
        }
        var receiver = new Thread(() =>
        {
            SigSet mine = Routed();
            PthreadSigmask(SigUnblock, &mine, null);
            Thread.Sleep(Timeout.Infinite);
        })
        { IsBackground = true, Name = "signals" };
        receiver.Start();
    }

    /// <summary>
    /// Runs <paramref name="start"/> (a child process's start) with the signals unblocked on this thread, so that the
    /// child, which inherits the mask, can be stopped by them.
    /// </summary>
    public static T Unblocked<T>(Func<T> start)
    {
        if (s_started == 0)
        {
            return start();
        }
        SigSet set = Routed(), old;
        PthreadSigmask(SigUnblock, &set, &old);
        try
        {
            return start();
        }
        finally
        {
            PthreadSigmask(SigSetMask, &old, null);
        }
    }

    private static SigSet Routed()
    {
        SigSet set = default;
        foreach (int signal in RoutedSignals)
        {
            set.Bits[(signal - 1) / 64] |= 1UL << ((signal - 1) % 64);
        }
        return set;
    }
}
