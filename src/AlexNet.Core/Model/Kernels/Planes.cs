// Raw float32 planes for the hand-written CPU kernels (LrnKernel, MaxPoolKernel, FusedStage): pointers into
// contiguous tensors, vector loads and stores that stop at a plane's end, and scratch planes per image.
//
// Shapes: a plane is one channel of one image, H×W floats; scratch planes carry Pad extra floats so that
// whole-vector loops may run past the end.
using System;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Model.Kernels;

internal static unsafe class Planes
{
    /// <summary>
    /// Floats past a scratch plane's end: the vector loops read up to a vector beyond a plane's last element.
    /// </summary>
    public static int Pad => 2 * Vector<float>.Count;

    /// <summary>
    /// The kernels run on contiguous 4-d float32 CPU tensors; anything else takes libtorch's operations.
    /// </summary>
    public static bool Supports(Tensor t) => IsCpuFloat32(t) && t.dim() == 4;

    /// <summary>
    /// A float32 tensor in CPU memory: what every hand-written or directly called CPU kernel here reads.
    /// </summary>
    public static bool IsCpuFloat32(Tensor t) => t.device_type == DeviceType.CPU && t.dtype == ScalarType.Float32;

    /// <summary>
    /// Images processed in parallel: libtorch's own thread count (Compute.UseThreads sets both at once).
    /// </summary>
    public static int Threads => Math.Max(1, torch.get_num_threads());

    /// <summary>
    /// The first float of a contiguous CPU tensor; libtorch keeps the storage alive while the tensor lives.
    /// </summary>
    public static float* Ptr(Tensor t) => (float*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(t.bytes));

    public static int* IntPtr(Tensor t) => (int*)Ptr(t);

    /// <summary>A vector at p[i]; past the plane's end the lanes are 0 (tensor memory may end there).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Load(float* p, int i, int plane) =>
        i + Vector<float>.Count <= plane ? Vector.LoadUnsafe(ref p[i]) : LoadTail(p, i, plane);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Vector<float> LoadTail(float* p, int i, int plane)
    {
        Span<float> lanes = stackalloc float[Vector<float>.Count];
        lanes.Clear();
        new ReadOnlySpan<float>(p + i, plane - i).CopyTo(lanes);
        return new Vector<float>(lanes);
    }

    /// <summary>Stores v at p[i], only the lanes before the plane's end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float* p, int i, int plane, Vector<float> v)
    {
        if (i + Vector<float>.Count <= plane)
        {
            v.StoreUnsafe(ref p[i]);
            return;
        }
        StoreTail(p, i, plane, v);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void StoreTail(float* p, int i, int plane, Vector<float> v)
    {
        Span<float> lanes = stackalloc float[Vector<float>.Count];
        v.CopyTo(lanes);
        lanes[..(plane - i)].CopyTo(new Span<float>(p + i, plane - i));
    }

    /// <summary>acc += v over one plane (whole vectors: both are padded scratch).</summary>
    public static void Add(float* acc, float* v, int plane)
    {
        int vw = Vector<float>.Count;
        for (int i = 0; i < plane; i += vw)
        {
            (Vector.LoadUnsafe(ref acc[i]) + Vector.LoadUnsafe(ref v[i])).StoreUnsafe(ref acc[i]);
        }
    }
}

/// <summary>
/// Zeroed, 64-byte aligned scratch for one image: <c>count</c> planes of <c>plane + Pad</c> floats each, freed on
/// dispose. One block per image and call keeps the working set of a kernel in L2.
/// </summary>
internal unsafe readonly struct Scratch : IDisposable
{
    private readonly float* _base;

    public int Slot { get; }

    public Scratch(int plane, int count)
    {
        Slot = plane + Planes.Pad;
        nuint bytes = (nuint)((long)Slot * count * sizeof(float));
        _base = (float*)NativeMemory.AlignedAlloc(bytes, 64);
        NativeMemory.Clear(_base, bytes);
    }

    /// <summary>Scratch plane <paramref name="i"/>.</summary>
    public float* this[int i] => _base + (long)i * Slot;

    public void Dispose() => NativeMemory.AlignedFree(_base);
}

/// <summary>
/// The non-linearity a kernel applies to its input first: none (the §3.3 layer alone), or §3.1's ReLU (the fused
/// stage).
/// </summary>
internal interface IActivation
{
    /// <summary>a = f(x).</summary>
    static abstract Vector<float> Forward(Vector<float> x);

    /// <summary>∂x from ∂a.</summary>
    static abstract Vector<float> Backward(Vector<float> x, Vector<float> gradA);
}

internal readonly struct Identity : IActivation
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Forward(Vector<float> x) => x;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Backward(Vector<float> x, Vector<float> gradA) => gradA;
}

internal readonly struct Relu : IActivation
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Forward(Vector<float> x) => Vector.Max(x, Vector<float>.Zero);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector<float> Backward(Vector<float> x, Vector<float> gradA) =>
        Vector.ConditionalSelect(Vector.GreaterThan(x, Vector<float>.Zero), gradA, Vector<float>.Zero);
}
