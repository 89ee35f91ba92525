// Not in the paper: data parallelism inside one process, as Krizhevsky's "One weird trick" (arXiv 1404.5997)
// runs the convolutional layers: R copies of the net each take 1/R of every batch on their own thread, and
// their gradients are added, in a fixed order, into the net's before §5's update. Why: on a few cores libtorch
// splits each operation of one step across its threads, and the small layers (`small`'s 5×5 maps, the FC
// layers at batch 128) leave the threads waiting on each other; R parts side by side keep each core on its own
// work (docs/performance.md, "Replicas"). Each part's loss is weighted by its share of the images, so the sum is
// the batch's gradient and the step is §5's; only the float32 summation order and the dropout masks' draws
// differ from the step on one thread. Replica 0 is the net itself; the copies take its weights before every step.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using AlexNet.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Training;

public sealed class Replicas : IDisposable
{
    private readonly AlexNetModel _net;
    private readonly AlexNetModel[] _copies;        // replicas 1 … R − 1
    private readonly Tensor[] _netState;            // the net's state_dict values, and each copy's in the same order
    private readonly Tensor[][] _copyState;
    private readonly Parameter[] _netParameters;
    private readonly Parameter[][] _copyParameters;
    private readonly Lanes _lanes;

    /// <summary>R, the number of parts each batch is split into.</summary>
    public int Count { get; }

    /// <summary>libtorch threads each replica's operations use (the machine's threads ÷ R, at least 1).</summary>
    public int ThreadsEach { get; }

    /// <summary>The net itself: replica 0, whose weights the optimiser updates.</summary>
    public AlexNetModel Net => _net;

    public Replicas(AlexNetModel net, int count, int threads)
    {
        if (count < 2)
        {
            throw new ArgumentException($"--replicas must be at least 2 to split a batch, got {count}.");
        }
        _net = net;
        Count = count;
        ThreadsEach = Math.Max(1, threads / count);
        Device device = net.parameters().First().device;
        _copies = Enumerable.Range(1, count - 1).Select(_ =>
        {
            var copy = new AlexNetModel(net.Architecture, 0, net.Kernels);
            copy.to(device);
            copy.Precision = net.Precision;
            return copy;
        }).ToArray();
        _netState = net.state_dict().Values.ToArray();
        _copyState = _copies.Select(c => c.state_dict().Values.ToArray()).ToArray();
        _netParameters = net.parameters().ToArray();
        _copyParameters = _copies.Select(c => c.parameters().ToArray()).ToArray();
        _lanes = new Lanes(count, ThreadsEach);
    }

    /// <summary>
    /// TrainingStep.Run with the batch split R ways: each replica's forward and backward on its own thread, the
    /// gradients added into the net's (replica 0's, then 1's, …), then the update of the net.
    /// </summary>
    public (Tensor Loss, Tensor Logits) Run(PaperSgd sgd, Tensor inputs, Tensor labels,
        double labelSmoothing = 0, double clipGradNorm = 0,
        Action? reduceGradients = null, Mix? mix = null)
    {
        return AtThreadsEach(() => Step(sgd, inputs, labels, labelSmoothing, clipGradNorm, reduceGradients, mix));
    }

    /// <summary>
    /// <paramref name="work"/> with this thread at ThreadsEach too: an operation here on more threads would wake this
    /// thread's OpenMP team, whose threads then spin for a while on the cores the replicas are using.
    /// </summary>
    private T AtThreadsEach<T>(Func<T> work)
    {
        int mine = torch.get_num_threads();
        torch.set_num_threads(ThreadsEach);
        try
        {
            return work();
        }
        finally
        {
            torch.set_num_threads(mine);
        }
    }

    private (Tensor Loss, Tensor Logits) Step(PaperSgd sgd, Tensor inputs, Tensor labels, double labelSmoothing,
        double clipGradNorm, Action? reduceGradients, Mix? mix)
    {
        Sync();
        if (!sgd.StepZeroesGradients)
        {
            sgd.ZeroGrad();
        }
        long n = inputs.shape[0];
        long[] sizes = Parts(n, Count);
        Tensor[] x = inputs.split(sizes), y = labels.split(sizes);
        Tensor[]? other = mix?.OtherLabels.split(sizes);
        ulong? dropoutSeed = _net.training && _net.Architecture.Dropout > 0 ? DropoutMask.Draw() : null;
        var losses = new Tensor[sizes.Length];
        var logits = new Tensor[sizes.Length];
        _lanes.Run(sizes.Length, r =>
        {
            DropoutMask.UseStream(dropoutSeed is ulong s ? s + (ulong)r : null);
            try
            {
                using var scope = NewDisposeScope();
                AlexNetModel model = r == 0 ? _net : _copies[r - 1];
                model.train(_net.training);
                Mix? part = mix is null ? null : mix with { OtherLabels = other![r] };
                (Tensor loss, Tensor z) = TrainingStep.Backward(model, x[r], y[r], labelSmoothing,
                    part, share: (double)sizes[r] / n);
                losses[r] = loss.DetachFromDisposeScope();
                logits[r] = z.DetachFromDisposeScope();
            }
            finally
            {
                DropoutMask.UseStream(null);
            }
        });
        torch.CurrentDisposeScope?.Attach(losses);   // made on other threads: into this thread's scope, freed with it
        torch.CurrentDisposeScope?.Attach(logits);
        AddGradients(sizes.Length);
        TrainingStep.Update(sgd, clipGradNorm, reduceGradients);
        Tensor total = losses[0];
        for (int r = 1; r < losses.Length; r++)
        {
            total = total + losses[r];
        }
        return (total, cat(logits));
    }

    /// <summary>
    /// The net's outputs in evaluation mode, the batch split R ways as in training, each part on its own lane (the
    /// validation of each epoch: `small` infers 1.3× faster on 2 threads than on 1, so two parts side by side gain).
    /// Each image's output is the net's own; only the float32 rounding of a smaller batch may differ.
    /// </summary>
    public Tensor Infer(Tensor inputs) => AtThreadsEach(() =>
    {
        bool training = _net.training;
        try
        {
            Sync();
            long[] sizes = Parts(inputs.shape[0], Count);
            Tensor[] x = inputs.split(sizes);
            var outputs = new Tensor[sizes.Length];
            _lanes.Run(sizes.Length, r =>
            {
                using var scope = NewDisposeScope();
                using var noGrad = no_grad();   // autograd's mode is per thread
                AlexNetModel model = r == 0 ? _net : _copies[r - 1];
                model.eval();
                outputs[r] = model.forward(x[r]).DetachFromDisposeScope();
            });
            torch.CurrentDisposeScope?.Attach(outputs);
            return cat(outputs);
        }
        finally
        {
            _net.train(training);
        }
    });

    /// <summary>
    /// n images in R parts as even as can be (the first ones one larger); parts with no image are left out.
    /// </summary>
    public static long[] Parts(long n, int count) =>
        Enumerable.Range(0, count).Select(r => n / count + (r < n % count ? 1 : 0)).Where(s => s > 0).ToArray();

    /// <summary>
    /// The copies take the net's weights (a checkpoint loaded, an update made): one copy pass per step.
    /// </summary>
    private void Sync()
    {
        using var _ = no_grad();
        foreach (Tensor[] state in _copyState)
        {
            for (int i = 0; i < state.Length; i++)
            {
                state[i].copy_(_netState[i]);
            }
        }
        foreach (Parameter[] copy in _copyParameters)
        {
            for (int i = 0; i < copy.Length; i++)
            {
                if (copy[i].requires_grad != _netParameters[i].requires_grad)
                {
                    // frozen layers (fine-tuning) stay frozen
                    copy[i].requires_grad_(_netParameters[i].requires_grad);
                }
            }
        }
    }

    /// <summary>
    /// ∂L/∂w of the net += each working copy's, in replica order; the copies' are zeroed for the next step.
    /// </summary>
    private void AddGradients(int working)
    {
        using var _ = no_grad();
        for (int i = 0; i < _netParameters.Length; i++)
        {
            Tensor? total = _netParameters[i].grad;
            for (int r = 1; r < working; r++)
            {
                Tensor? g = _copyParameters[r - 1][i].grad;
                if (g is null)
                {
                    continue;
                }
                if (total is null)
                {
                    _netParameters[i].grad = g.clone();
                    total = _netParameters[i].grad;
                }
                else
                {
                    total.add_(g);
                }
                g.zero_();
            }
        }
    }

    public void Dispose()
    {
        _lanes.Dispose();
        foreach (AlexNetModel copy in _copies)
        {
            copy.Dispose();
        }
    }

    /// <summary> R − 1 threads kept for the whole run (one started per step would also start a fresh OpenMP team per
    /// step); part 0 runs on the calling thread, which Run holds at ThreadsEach. An exception in any part is rethrown
    /// on the calling thread.
    /// </summary>
    private sealed class Lanes : IDisposable
    {
        private readonly Thread[] _threads;
        private readonly SemaphoreSlim[] _go;
        private readonly CountdownEvent _done = new(0);
        private readonly Exception?[] _errors;
        private Action<int>? _work;
        private volatile bool _stopping;

        /// <param name="threads">libtorch threads of each lane's OpenMP team, set once on each lane's own
        /// thread.</param>
        public Lanes(int count, int threads)
        {
            _errors = new Exception?[count];
            _go = Enumerable.Range(0, count).Select(_ => new SemaphoreSlim(0)).ToArray();
            _threads = Enumerable.Range(1, count - 1).Select(lane =>
            {
                var t = new Thread(() =>
                {
                    torch.set_num_threads(threads);
                    Loop(lane);
                })
                { IsBackground = true, Name = $"replica {lane}" };
                t.Start();
                return t;
            }).ToArray();
        }

        private void Loop(int lane)
        {
            while (true)
            {
                _go[lane].Wait();
                if (_stopping)
                {
                    return;
                }
                try
                {
                    _work!(lane);
                }
                catch (Exception e)
                {
                    _errors[lane] = e;
                }
                finally
                {
                    _done.Signal();
                }
            }
        }

        /// <summary>work(0) … work(parts − 1) at the same time; returns when all are done.</summary>
        public void Run(int parts, Action<int> work)
        {
            _work = work;
            Array.Clear(_errors);
            _done.Reset(parts - 1);
            for (int lane = 1; lane < parts; lane++)
            {
                _go[lane].Release();
            }
            try
            {
                work(0);
            }
            catch (Exception e)
            {
                _errors[0] = e;
            }
            _done.Wait();
            _work = null;
            Exception[] failed = _errors.OfType<Exception>().ToArray();
            if (failed.Length == 1)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failed[0]).Throw();
            }
            if (failed.Length > 1)
            {
                throw new AggregateException(failed);
            }
        }

        public void Dispose()
        {
            _stopping = true;
            for (int lane = 1; lane < _go.Length; lane++)
            {
                _go[lane].Release();
            }
            foreach (Thread t in _threads)
            {
                t.Join();
            }
            _done.Dispose();
            foreach (SemaphoreSlim s in _go)
            {
                s.Dispose();
            }
        }
    }
}
