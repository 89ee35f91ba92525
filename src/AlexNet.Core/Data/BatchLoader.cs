// §4.1 "the transformed images are generated in Python code on the CPU while the GPU is training on the
// previous batch of images": batches are assembled on background threads into bounded queues, so the
// training step never waits for them. Batch b of an epoch is built by worker b mod W and read in order;
// its contents depend only on (seed, epoch, b), never on thread timing.
using System;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Data;

/// <summary>A batch of N×C×H×W inputs and N int64 labels; the receiver disposes it.</summary>
public sealed class Batch(Tensor inputs, Tensor labels, int[] indices, int globalCount = -1) : IDisposable
{
    /// <summary>
    /// Images in the whole batch across data-parallel ranks (this rank holds <see cref="Count"/> of them).
    /// </summary>
    public int GlobalCount { get; } = globalCount < 0 ? indices.Length : globalCount;

    public Tensor Inputs { get; } = inputs;
    public Tensor Labels { get; } = labels;

    /// <summary>The store records in this batch, in order.</summary>
    public int[] Indices { get; } = indices;

    public int Count => Indices.Length;

    public void Dispose()
    {
        Inputs.Dispose();
        Labels.Dispose();
    }
}

/// <param name="Limit">Train on the first Limit records only (0 = all): the short versions of the experiments.</param>
/// <param name="Records">The store's records this loader serves, in order (null = all): a held-out split's
/// part.</param>
/// <param name="Rank">Data parallel: this process's share of every batch of <see cref="BatchSize"/> × <paramref
/// name="Ranks"/> images.</param>
public sealed record LoaderOptions(int BatchSize = 128, int Workers = 1, int Prefetch = 3, int Limit = 0,
    int[]? Records = null, int Rank = 0, int Ranks = 1);

public sealed class BatchLoader
{
    private readonly ImageStore _store;
    private readonly Augmentation _augmentation;
    private readonly LoaderOptions _options;

    public BatchLoader(ImageStore store, Augmentation augmentation, LoaderOptions options)
    {
        if (options.BatchSize < 1 || options.Workers < 1 || options.Prefetch < 1)
        {
            throw new ArgumentException("batch size, workers and prefetch must be at least 1.");
        }
        _store = store;
        _augmentation = augmentation;
        _options = options;
    }

    private int Available => _options.Records?.Length ?? _store.Count;

    private int TrainCount => _options.Limit > 0 ? Math.Min(_options.Limit, Available) : Available;

    /// <summary>The store index of the loader's i-th record.</summary>
    private int RecordAt(int i) => _options.Records is int[] r ? r[i] : i;

    /// <summary>Images of one step across all ranks (the batch of one process: BatchSize).</summary>
    private int GlobalBatch => _options.BatchSize * _options.Ranks;

    public int BatchesPerEpoch => (TrainCount + GlobalBatch - 1) / GlobalBatch;

    /// <summary> A held-out split of a store's records, fixed by the seed: <paramref name="heldOut"/> records to
    /// validate on and the rest to train on, each in store order. The same seed and count give the same split on any
    /// machine.
    /// </summary>
    public static (int[] Train, int[] HeldOut) Split(int count, int heldOut, long seed)
    {
        if (heldOut <= 0 || heldOut >= count)
        {
            throw new ArgumentException(
                $"--val-split {heldOut} must leave records on both sides of a store of {count}.");
        }
        int[] order = Rng.For(seed, -7, -7).Permutation(count);
        int[] held = order[..heldOut];
        int[] train = order[heldOut..];
        Array.Sort(held);
        Array.Sort(train);
        return (train, held);
    }

    /// <summary>The order of the records in an epoch: reshuffled every epoch from (seed, epoch).</summary>
    public static int[] Order(int count, long seed, int epoch) => Rng.For(seed, epoch, -1).Permutation(count);

    /// <summary>
    /// Training batches of one epoch (shuffled, augmented), from batch <paramref name="skip"/> on (for resuming).
    /// </summary>
    public IEnumerable<Batch> TrainEpoch(long seed, int epoch, int skip = 0, CancellationToken cancel = default)
    {
        int[] order = Order(TrainCount, seed, epoch);
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = RecordAt(order[i]);
        }
        return Run(order, skip, (record, output, index) =>
        {
            Rng rng = Rng.For(seed, epoch, index);
            _augmentation.Train(record, output, ref rng);
        }, cancel);
    }

    /// <summary>Test batches in store order, all cut as <paramref name="view"/>.</summary>
    public IEnumerable<Batch> TestPass(View view = View.Centre, CancellationToken cancel = default)
    {
        var order = new int[Available];
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = RecordAt(i);
        }
        return Run(order, 0, (record, output, _) => _augmentation.Test(record, output, view), cancel);
    }

    private delegate void Fill(ReadOnlySpan<byte> record, Span<float> output, int index);

    private IEnumerable<Batch> Run(int[] order, int skip, Fill fill, CancellationToken outer)
    {
        int batches = (order.Length + GlobalBatch - 1) / GlobalBatch;
        int workers = Math.Min(_options.Workers, Math.Max(1, batches - skip));
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(outer);
        var queues = new Channel<Batch>[workers];
        var tasks = new Task[workers];
        for (int w = 0; w < workers; w++)
        {
            var queue = Channel.CreateBounded<Batch>(new BoundedChannelOptions(_options.Prefetch)
            {
                SingleReader = true,
                SingleWriter = true,
            });
            queues[w] = queue;
            int first = skip + w;
            tasks[w] = Task.Factory.StartNew(() =>
            {
                try
                {
                    for (int b = first; b < batches && !cts.IsCancellationRequested; b += workers)
                    {
                        Batch batch = Build(order, b, fill);
                        if (!queue.Writer.TryWrite(batch))
                        {
                            try
                            {
                                queue.Writer.WriteAsync(batch, cts.Token).AsTask().GetAwaiter().GetResult();
                            }
                            catch (OperationCanceledException)
                            {
                                batch.Dispose();
                                break;
                            }
                        }
                    }
                    queue.Writer.TryComplete();
                }
                catch (Exception e)
                {
                    queue.Writer.TryComplete(e);
                }
            }, cts.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
        try
        {
            for (int b = skip; b < batches; b++)
            {
                ChannelReader<Batch> reader = queues[(b - skip) % workers].Reader;
                Batch batch;
                try
                {
                    batch = reader.ReadAsync(cts.Token).AsTask().GetAwaiter().GetResult();
                }
                catch (ChannelClosedException e) when (e.InnerException is not null)
                {
                    throw e.InnerException;
                }
                yield return batch;
            }
        }
        finally
        {
            // The consumer stopped early or finished: stop the workers and free what they made ahead.
            cts.Cancel();
            try
            {
                Task.WaitAll(tasks);
            }
            catch (AggregateException)
            {
            }
            foreach (Channel<Batch> q in queues)
            {
                while (q.Reader.TryRead(out Batch? left))
                {
                    left.Dispose();
                }
            }
        }
    }

    private unsafe Batch Build(int[] order, int b, Fill fill)
    {
        // Data parallel: every rank reads the same seeded order and takes its slice of each global batch, split evenly.
        int globalStart = b * GlobalBatch;
        int m = Math.Min(GlobalBatch, order.Length - globalStart);
        (int from, int to) = AlexNet.Distributed.DataParallel.Share(m, _options.Rank, _options.Ranks);
        int start = globalStart + from;
        int n = to - from;
        int crop = _augmentation.Crop;
        int length = _augmentation.OutputLength;
        // Written in place into the tensor's memory: no intermediate array, no copy.
        Tensor inputs = empty(new long[] { n, _augmentation.Channels, crop, crop }, ScalarType.Float32);
        float* data = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(inputs.bytes));
        var labels = new long[n];
        var indices = new int[n];
        for (int i = 0; i < n; i++)
        {
            int index = order[start + i];
            indices[i] = index;
            labels[i] = _store.Labels[index];
            fill(_store.Record(index), new Span<float>(data + (long)i * length, length), index);
        }
        return new Batch(inputs, tensor(labels), indices, m);
    }
}
