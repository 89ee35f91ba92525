// Decoding (§2: the central square rescaled) runs on one thread per core, not on the thread pool's: at most as
// many images are decoded at once as there are cores (a burst of 32 large JPEGs does not hold 32 bitmaps), and
// their native buffers come from a fixed set of glibc arenas, which this process never trims (Compute.KeepTheHeap),
// however many threads the pool adds under load (Batcher.cs keeps the net's allocations on one thread likewise).
using System;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;

namespace AlexNet.Serving;

public sealed class DecodePool : IDisposable
{
    private readonly Channel<(Func<byte[]> Work, TaskCompletionSource<byte[]> Done)> _queue =
        Channel.CreateUnbounded<(Func<byte[]>, TaskCompletionSource<byte[]>)>();
    private readonly Thread[] _threads;

    public DecodePool(int threads)
    {
        _threads = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            _threads[i] = new Thread(Loop) { IsBackground = true, Name = $"alexnet decode {i}" };
            _threads[i].Start();
        }
    }

    public Task<byte[]> Run(Func<byte[]> work)
    {
        var done = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_queue.Writer.TryWrite((work, done)))
        {
            throw new ObjectDisposedException(nameof(DecodePool), "the server is stopping");
        }
        return done.Task;
    }

    private void Loop()
    {
        ChannelReader<(Func<byte[]> Work, TaskCompletionSource<byte[]> Done)> reader = _queue.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            while (reader.TryRead(out var item))
            {
                try
                {
                    item.Done.SetResult(item.Work());
                }
                catch (Exception e)
                {
                    item.Done.SetException(e);
                }
            }
        }
    }

    public void Dispose()
    {
        _queue.Writer.TryComplete();
        foreach (Thread t in _threads)
        {
            t.Join();
        }
    }
}
