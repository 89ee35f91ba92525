// §4.2 dropout: "setting to zero the output of each hidden neuron with probability 0.5"; the neurons kept are
// scaled by 1/(1 − p) in training (libtorch's inverted dropout), so that at test time, when every neuron is used,
// nothing needs to be multiplied by 0.5. libtorch draws its mask with bernoulli_ at ~17 ns a value (fc6's
// 128×4096 outputs took 9 ms); here each value's keep-or-drop comes from a counter-based hash of (seed, position),
// written in parallel, and the seed is one draw from libtorch's generator, so torch.random.manual_seed and the
// checkpointed generator state fix every mask as they fixed libtorch's. y = x·mask then runs as libtorch's mul,
// whose autograd gives ∂x = ∂y·mask.
using System;
using System.Threading.Tasks;
using AlexNet.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Model;

public static unsafe class DropoutMask
{
    /// <summary>
    /// The net's dropout on a CPU float32 tensor in training: x times a fresh mask of 0 and 1/(1 − p).
    /// </summary>
    public static bool Supports(Tensor x) => Planes.IsCpuFloat32(x);

    public static Tensor Apply(Tensor x, double p)
    {
        using Tensor mask = Make(x.shape, p, NextSeed());
        return x.mul(mask);
    }

    /// <summary>
    /// The next mask's seed: one draw from libtorch's default generator (seeded by torch.random.manual_seed, saved in
    /// checkpoints), or, on a thread given a stream (<see cref="UseStream"/>), the stream's next value.
    /// </summary>
    private static ulong NextSeed()
    {
        if (_stream is (ulong seed, ulong drawn))
        {
            _stream = (seed, drawn + 1);
            return Mix(seed + (drawn + 1) * 0x9E3779B97F4A7C15UL);
        }
        return Draw();
    }

    /// <summary>One draw from libtorch's default generator.</summary>
    public static ulong Draw()
    {
        using Tensor draw = randint(long.MaxValue, new long[] { 1 }, dtype: ScalarType.Int64);
        return (ulong)draw.item<long>();
    }

    /// <summary>
    /// This thread's masks from a stream of seeds derived from <paramref name="seed"/> (null: from libtorch's generator
    /// again). Replicas (Training/Replicas.cs) run on several threads at once, which would take the shared generator's
    /// draws in no fixed order; a stream per replica keeps every mask fixed by the run's seed.
    /// </summary>
    public static void UseStream(ulong? seed) => _stream = seed is ulong s ? (s, 0) : null;

    [ThreadStatic]
    private static (ulong Seed, ulong Drawn)? _stream;

    /// <summary>
    /// Each value independently 1/(1 − p) with probability 1 − p, else 0; the same (shape, p, seed) gives the same
    /// mask.
    /// </summary>
    public static Tensor Make(long[] shape, double p, ulong seed)
    {
        if (p is < 0 or >= 1)
        {
            throw new ArgumentException($"dropout probability must be in [0, 1), got {p}.");
        }
        Tensor mask = empty(shape);
        long n = mask.numel();
        float scale = (float)(1 / (1 - p));
        // Keep when a uniform 32-bit value falls below (1 − p)·2³²: p to 2⁻³², finer than libtorch's float draw.
        ulong threshold = (ulong)Math.Round((1 - p) * 4294967296.0);
        float* m = Planes.Ptr(mask);
        const long Chunk = 1 << 14;   // even, so each 64-bit hash feeds two neighbours of one chunk
        long chunks = (n + Chunk - 1) / Chunk;
        Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = Planes.Threads }, c =>
        {
            long end = Math.Min(n, (c + 1) * Chunk);
            for (long i = c * Chunk; i < end; i += 2)
            {
                ulong bits = Mix(seed + (ulong)(i >> 1) * 0x9E3779B97F4A7C15UL);
                m[i] = (bits & 0xFFFFFFFFUL) < threshold ? scale : 0f;
                if (i + 1 < end)
                {
                    m[i + 1] = (bits >> 32) < threshold ? scale : 0f;
                }
            }
        });
        return mask;
    }

    /// <summary>SplitMix64's finaliser (Steele, Lea and Flood 2014): a counter in, 64 well-mixed bits out.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
