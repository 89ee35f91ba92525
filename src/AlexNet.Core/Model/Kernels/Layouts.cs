// Moving training's tensors between libtorch's plain N×C×H×W (and K×C×k×k weights) and the layouts oneDNN's
// primitives choose (channel-blocked), for the convolutions on oneDNN (OneDnnConv.cs) and the blocked path from the
// image to pool5 (OneDnnFeatures.cs): each buffer is a float tensor, so libtorch owns and frees it with the step.
using System;
using System.Collections.Generic;
using static TorchSharp.torch;

namespace AlexNet.Model.Kernels;

/// <summary>The reorders between one plan's layouts, each primitive made the first time it is needed and
/// kept.</summary>
internal sealed class Layouts
{
    private readonly List<(MemoryDesc From, MemoryDesc To, nint Primitive)> _reorders = new();

    /// <summary>A fresh buffer for a tensor of layout <paramref name="md"/> (blocked layouts pad their
    /// channels).</summary>
    public static Tensor New(MemoryDesc md) => empty((Dnnl.Size(md) + 3) / 4);

    private readonly Dictionary<long, Stack<Tensor>> _free = new();

    /// <summary>
    /// A buffer of layout <paramref name="md"/>, one a step gave back where there is one (Give). Why: a training
    /// step of the paper's net at batch 128 writes ~1.5 GB of activations and gradients, and fresh memory costs the
    /// kernel's zeroing of every page at first touch (6–12% of a step's samples in clear_page_erms; this VM's faults
    /// make it worse): oneDNN's LRN and pool passes took 3–5× as long on fresh buffers as on reused ones. The
    /// buffers are kept until Drop, so resident memory stays at a step's peak between steps rather than falling and
    /// rising every step. Not in any dispose scope: only Give ends a buffer's use.
    /// </summary>
    public Tensor Take(MemoryDesc md)
    {
        long floats = (Dnnl.Size(md) + 3) / 4;
        lock (_free)
        {
            if (_free.TryGetValue(floats, out Stack<Tensor>? free) && free.Count > 0)
            {
                return free.Pop();
            }
        }
        return empty(floats).DetachFromDisposeScope();
    }

    /// <summary>Frees the buffers given back (those still taken come back as usual).</summary>
    public void Drop()
    {
        lock (_free)
        {
            foreach (Stack<Tensor> free in _free.Values)
            {
                while (free.TryPop(out Tensor? t))
                {
                    t.Dispose();
                }
            }
        }
    }

    /// <summary>A buffer from Take back for the next step (null: nothing).</summary>
    public void Give(Tensor? buffer)
    {
        if (buffer is null)
        {
            return;
        }
        lock (_free)
        {
            if (!_free.TryGetValue(buffer.numel(), out Stack<Tensor>? free))
            {
                _free[buffer.numel()] = free = new Stack<Tensor>();
            }
            free.Push(buffer);
        }
    }


    /// <summary>
    /// <paramref name="t"/> (of layout <paramref name="have"/>) in layout <paramref name="want"/>: itself where the two
    /// agree, else a reordered copy.
    /// </summary>
    public Tensor Into(Memories scope, Tensor t, MemoryDesc have, MemoryDesc want)
    {
        if (Dnnl.Equal(have, want))
        {
            return t.alias();
        }
        Tensor copy = New(want);
        Reorder(scope.Of(t, have), have, scope.Of(copy, want), want);
        return copy;
    }

    /// <summary>A buffer for a result in layout <paramref name="md"/>: the plain target itself where they
    /// agree.</summary>
    public static Tensor Buffer(MemoryDesc md, MemoryDesc plain, Tensor target) =>
        Dnnl.Equal(md, plain) ? target.alias() : New(md);

    /// <summary>A result in layout <paramref name="md"/> into its plain target (nothing where it is already
    /// there).</summary>
    public void Out(Memories scope, Tensor result, MemoryDesc md, Tensor target, MemoryDesc plain)
    {
        if (!Dnnl.Equal(md, plain))
        {
            Reorder(scope.Of(result, md), md, scope.Of(target, plain), plain);
        }
    }

    public void Reorder(nint from, MemoryDesc fromMd, nint to, MemoryDesc toMd)
    {
        nint primitive = 0;
        foreach ((MemoryDesc f, MemoryDesc t, nint made) in _reorders)
        {
            if (Dnnl.Equal(f, fromMd) && Dnnl.Equal(t, toMd))
            {
                primitive = made;
                break;
            }
        }
        if (primitive == 0)
        {
            nint pd = Dnnl.Reorder(fromMd, toMd, 0, "reordering for training");
            primitive = Dnnl.Primitive(pd, "reordering for training");
            Dnnl.DestroyDesc(pd);
            _reorders.Add((fromMd, toMd, primitive));
        }
        Run(primitive, new ExecArg(Dnnl.ArgSrc, from), new ExecArg(Dnnl.ArgDst, to));
    }

    /// <summary>One primitive to its end.</summary>
    public static void Run(nint primitive, params ExecArg[] args)
    {
        Dnnl.Execute(primitive, args);
        Dnnl.Wait();
    }
}

/// <summary>oneDNN memory objects over tensors' buffers for one pass, destroyed with it.</summary>
internal sealed class Memories : IDisposable
{
    private readonly List<nint> _made = new();

    public unsafe nint Of(Tensor t, MemoryDesc md)
    {
        nint m = Dnnl.Memory(md, (nint)Planes.Ptr(t));
        _made.Add(m);
        return m;
    }

    public void Dispose() => _made.ForEach(Dnnl.DestroyMemory);
}
