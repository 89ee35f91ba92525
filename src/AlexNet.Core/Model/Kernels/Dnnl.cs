// oneDNN's C API (Debian's libdnnl2, oneDNN 2.6.3) through P/Invoke, for the inference engine (OneDnnNet.cs) and
// training's convolutions and stages (OneDnnConv.cs, OneDnnFeatures.cs). No
// header is installed with the runtime, so the signatures, constants and the 696-byte memory descriptor are those
// of v2.6.3's include/oneapi/dnnl/dnnl.h and dnnl_types.h (the constants printed by a C program compiled against
// them; the C API and these values are stable across oneDNN 2.x, and oneDNN 3 replaced the descriptors, so only
// major version 2 is used). libtorch links its own oneDNN privately (no dnnl_* symbol is exported), so this is a
// second copy in the process with its own OpenMP runtime, the system's libgomp. The one place the library is loaded:
// the training's FC layers (FullyConnected.cs) take its sgemm from here too, whose C signature oneDNN 3 kept.
using System;
using System.Linq;
using System.Runtime.InteropServices;

namespace AlexNet.Model.Kernels;

/// <summary>A dnnl_memory_desc_t: plain data the library fills in and reads (sizeof = 696 in oneDNN 2.x).</summary>
[StructLayout(LayoutKind.Sequential, Size = 1024)]
internal struct MemoryDesc
{
    // Opaque: only the library reads and writes it (1,024 bytes leave room beyond its 696).
}

internal static unsafe class Dnnl
{
    // dnnl_data_type_t
    public const int F32 = 3, S8 = 5, U8 = 6;

    // dnnl_format_tag_t: plain layouts by dimension count, "any" (the primitive picks, a blocked layout), and the
    // channel-blocked activations of the AVX-512 and AVX2 kernels (nChw16c, nChw8c), and channels-last (nhwc)
    public const int Any = 1, A = 2, Ab = 3, Abcd = 5, Abcde = 7, ABcd16b = 69, ABcd8b = 93, Acdb = 20;

    // dnnl_prop_kind_t
    public const int ForwardTraining = 64, ForwardInference = 96, BackwardData = 160, BackwardWeights = 192;
    public const int ConvolutionDirect = 1, ConvolutionWinograd = 2, EltwiseRelu = 31, EltwiseTanh = 47,
        EltwiseReluUseDst = 256, PoolingMax = 511, LrnAcrossChannels = 2815;   // dnnl_alg_kind_t
    public const int QuerySrcMd = 129, QueryDiffSrcMd = 130, QueryWeightsMd = 131,
        QueryDiffWeightsMd = 132, QueryDstMd = 133,
        QueryDiffDstMd = 134, QueryWorkspaceMd = 135, QueryScratchpadMd = 136, QueryImplInfo = 8;   // dnnl_query_t
    public const int ArgSrc = 1, ArgDst = 17, ArgWeights = 33, ArgBias = 41, ArgWorkspace = 64, ArgDiffSrc = 129,
        ArgDiffDst = 145, ArgDiffWeights = 161,
        ArgDiffBias = 169, ArgScratchpad = 80;      // DNNL_ARG_*
    private const int ScratchpadModeUser = 1;                                     // dnnl_scratchpad_mode_t
    private const int CpuIsaAvx2Vnni = 0x407;                                     // dnnl_cpu_isa_t

    private static readonly nint MemoryAllocate = -1;        // DNNL_MEMORY_ALLOCATE

    private static readonly delegate* unmanaged<MemoryDesc*, int, long*, int, int, int> MdInitByTag;
    private static readonly delegate* unmanaged<MemoryDesc*, MemoryDesc*, int> MdEqual;
    private static readonly delegate* unmanaged<byte*, int, int, MemoryDesc*, MemoryDesc*, MemoryDesc*, MemoryDesc*, long*, long*, long*, int> ConvInit;
    private static readonly delegate* unmanaged<byte*, int, int, MemoryDesc*, MemoryDesc*, long*, long*, long*, long*, int> PoolInit;
    private static readonly delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, MemoryDesc*, MemoryDesc*, int> InnerProductInit;
    private static readonly delegate* unmanaged<byte*, int, int, MemoryDesc*, long, float, float, float, int> LrnInit;
    private static readonly delegate* unmanaged<nint*, void*, nint, nint, nint, int> PdCreate;
    private static readonly delegate* unmanaged<byte*, int, int, MemoryDesc*, float, float, int> EltwiseInit;
    private static readonly delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, float, float, int> EltwiseBackwardInit;
    private static readonly delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, long, float, float, float, int> LrnBackwardInit;
    private static readonly delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, long*, long*, long*, long*, int> PoolBackwardInit;
    private static readonly delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, MemoryDesc*, long*, long*, long*, int> ConvBackwardDataInit;
    private static readonly delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, MemoryDesc*, MemoryDesc*, long*, long*, long*, int> ConvBackwardWeightsInit;
    private static readonly delegate* unmanaged<nint*, MemoryDesc*, nint, MemoryDesc*, nint, nint, int> ReorderPdCreate;
    private static readonly delegate* unmanaged<nint, int, int, MemoryDesc*> PdQueryMd;
    private static readonly delegate* unmanaged<nint, int, int, void*, int> PdQuery;
    private static readonly delegate* unmanaged<nint, int> PdDestroy;
    private static readonly delegate* unmanaged<nint*, nint, int> PrimitiveCreate;
    private static readonly delegate* unmanaged<nint, nint, int, ExecArg*, int> PrimitiveExecute;
    private static readonly delegate* unmanaged<nint, int> PrimitiveDestroy;
    private static readonly delegate* unmanaged<nint*, int> AttrCreate;
    private static readonly delegate* unmanaged<nint, int> AttrDestroy;
    private static readonly delegate* unmanaged<nint, long, int, float*, int> AttrSetOutputScales;
    private static readonly delegate* unmanaged<nint, nint, int> AttrSetPostOps;
    private static readonly delegate* unmanaged<nint, int, int> AttrSetScratchpadMode;
    private static readonly delegate* unmanaged<nint*, int> PostOpsCreate;
    private static readonly delegate* unmanaged<nint, int> PostOpsDestroy;
    private static readonly delegate* unmanaged<nint, float, int, float, float, int> PostOpsAppendEltwise;
    private static readonly delegate* unmanaged<nint*, MemoryDesc*, nint, nint, int> MemoryCreate;
    private static readonly delegate* unmanaged<nint, nint, int> MemorySetHandle;
    private static readonly delegate* unmanaged<nint, nint*, int> MemoryGetHandle;
    private static readonly delegate* unmanaged<nint, int> MemoryDestroy;
    private static readonly delegate* unmanaged<MemoryDesc*, nuint> MdGetSize;
    private static readonly delegate* unmanaged<nint*, int, nuint, int> EngineCreate;
    private static readonly delegate* unmanaged<nint*, nint, uint, int> StreamCreate;
    private static readonly delegate* unmanaged<nint, int> StreamWait;
    private static readonly delegate* unmanaged<int> EffectiveIsa;
    private static readonly delegate* unmanaged<int, void> SetOmpThreads;
    private static readonly delegate* unmanaged<int> GetOmpThreads;
    private static readonly delegate* unmanaged<sbyte, sbyte, sbyte, long, long, long, float, byte*, long, byte, sbyte*, long, sbyte, float, int*, long, int*, int> GemmU8S8S32;
    private static readonly delegate* unmanaged<sbyte, sbyte, long, long, long, float, float*, long, float*, long, float, float*, long, int> SgemmF32;

    /// <summary>Why the engine cannot run here (null: it can).</summary>
    public static readonly string? Unavailable;

    /// <summary>oneDNN 2.x's version, e.g. "2.6.3" (null where it did not load).</summary>
    public static readonly string? Version;

    static Dnnl()
    {
        if (!NativeLibrary.TryLoad("libdnnl.so.2", out nint lib) && !NativeLibrary.TryLoad("libdnnl.so.3", out lib))
        {
            Unavailable =
                "Debian's libdnnl2 (oneDNN 2) is not installed: `sudo ./setup.sh` or `apt-get install libdnnl2`";
            return;
        }
        if (!NativeLibrary.TryLoad("libgomp.so.1", out nint gomp))
        {
            Unavailable =
                "the system's OpenMP runtime (libgomp.so.1), which libdnnl2 runs its threads on, did not load";
            return;
        }
        nint F(nint l, string name) => NativeLibrary.GetExport(l, name);
        SetOmpThreads = (delegate* unmanaged<int, void>)F(gomp, "omp_set_num_threads");
        GetOmpThreads = (delegate* unmanaged<int>)F(gomp, "omp_get_max_threads");
        SgemmF32 = (delegate* unmanaged<sbyte, sbyte, long, long, long, float, float*, long, float*, long, float, float*, long, int>)F(lib, "dnnl_sgemm");
        int* v = ((delegate* unmanaged<int*>)F(lib, "dnnl_version"))();   // {major, minor, patch, hash, ...}
        Version = $"{v[0]}.{v[1]}.{v[2]}";
        if (v[0] != 2)
        {
            Unavailable =
                $"the installed libdnnl is oneDNN {Version}; this binding of its primitives is of oneDNN 2's C API";
            return;
        }
        MdInitByTag = (delegate* unmanaged<MemoryDesc*, int, long*, int, int, int>)F(lib,
            "dnnl_memory_desc_init_by_tag");
        MdEqual = (delegate* unmanaged<MemoryDesc*, MemoryDesc*, int>)F(lib, "dnnl_memory_desc_equal");
        MdGetSize = (delegate* unmanaged<MemoryDesc*, nuint>)F(lib, "dnnl_memory_desc_get_size");
        ConvInit = (delegate* unmanaged<byte*, int, int, MemoryDesc*, MemoryDesc*, MemoryDesc*, MemoryDesc*, long*, long*, long*, int>)F(lib, "dnnl_convolution_forward_desc_init");
        PoolInit = (delegate* unmanaged<byte*, int, int, MemoryDesc*, MemoryDesc*, long*, long*, long*, long*, int>)F(
            lib, "dnnl_pooling_forward_desc_init");
        InnerProductInit = (delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, MemoryDesc*, MemoryDesc*, int>)F(
            lib, "dnnl_inner_product_forward_desc_init");
        LrnInit = (delegate* unmanaged<byte*, int, int, MemoryDesc*, long, float, float, float, int>)F(lib,
            "dnnl_lrn_forward_desc_init");
        PdCreate = (delegate* unmanaged<nint*, void*, nint, nint, nint, int>)F(lib, "dnnl_primitive_desc_create");
        EltwiseInit = (delegate* unmanaged<byte*, int, int, MemoryDesc*, float, float, int>)F(lib,
            "dnnl_eltwise_forward_desc_init");
        EltwiseBackwardInit = (delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, float, float, int>)F(lib,
            "dnnl_eltwise_backward_desc_init");
        LrnBackwardInit = (delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, long, float, float, float, int>)F(
            lib, "dnnl_lrn_backward_desc_init");
        PoolBackwardInit = (delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, long*, long*, long*, long*, int>)F(
            lib, "dnnl_pooling_backward_desc_init");
        ConvBackwardDataInit =
            (delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, MemoryDesc*, long*, long*, long*, int>)F(lib,
            "dnnl_convolution_backward_data_desc_init");
        ConvBackwardWeightsInit =
            (delegate* unmanaged<byte*, int, MemoryDesc*, MemoryDesc*, MemoryDesc*, MemoryDesc*, long*, long*, long*, int>)F(lib, "dnnl_convolution_backward_weights_desc_init");
        ReorderPdCreate = (delegate* unmanaged<nint*, MemoryDesc*, nint, MemoryDesc*, nint, nint, int>)F(lib,
            "dnnl_reorder_primitive_desc_create");
        PdQueryMd = (delegate* unmanaged<nint, int, int, MemoryDesc*>)F(lib, "dnnl_primitive_desc_query_md");
        PdQuery = (delegate* unmanaged<nint, int, int, void*, int>)F(lib, "dnnl_primitive_desc_query");
        PdDestroy = (delegate* unmanaged<nint, int>)F(lib, "dnnl_primitive_desc_destroy");
        PrimitiveCreate = (delegate* unmanaged<nint*, nint, int>)F(lib, "dnnl_primitive_create");
        PrimitiveExecute = (delegate* unmanaged<nint, nint, int, ExecArg*, int>)F(lib, "dnnl_primitive_execute");
        PrimitiveDestroy = (delegate* unmanaged<nint, int>)F(lib, "dnnl_primitive_destroy");
        AttrCreate = (delegate* unmanaged<nint*, int>)F(lib, "dnnl_primitive_attr_create");
        AttrDestroy = (delegate* unmanaged<nint, int>)F(lib, "dnnl_primitive_attr_destroy");
        AttrSetOutputScales = (delegate* unmanaged<nint, long, int, float*, int>)F(lib,
            "dnnl_primitive_attr_set_output_scales");
        AttrSetPostOps = (delegate* unmanaged<nint, nint, int>)F(lib, "dnnl_primitive_attr_set_post_ops");
        AttrSetScratchpadMode = (delegate* unmanaged<nint, int, int>)F(lib, "dnnl_primitive_attr_set_scratchpad_mode");
        PostOpsCreate = (delegate* unmanaged<nint*, int>)F(lib, "dnnl_post_ops_create");
        PostOpsDestroy = (delegate* unmanaged<nint, int>)F(lib, "dnnl_post_ops_destroy");
        PostOpsAppendEltwise = (delegate* unmanaged<nint, float, int, float, float, int>)F(lib,
            "dnnl_post_ops_append_eltwise");
        MemoryCreate = (delegate* unmanaged<nint*, MemoryDesc*, nint, nint, int>)F(lib, "dnnl_memory_create");
        MemorySetHandle = (delegate* unmanaged<nint, nint, int>)F(lib, "dnnl_memory_set_data_handle");
        MemoryGetHandle = (delegate* unmanaged<nint, nint*, int>)F(lib, "dnnl_memory_get_data_handle");
        MemoryDestroy = (delegate* unmanaged<nint, int>)F(lib, "dnnl_memory_destroy");
        EngineCreate = (delegate* unmanaged<nint*, int, nuint, int>)F(lib, "dnnl_engine_create");
        StreamCreate = (delegate* unmanaged<nint*, nint, uint, int>)F(lib, "dnnl_stream_create");
        StreamWait = (delegate* unmanaged<nint, int>)F(lib, "dnnl_stream_wait");
        EffectiveIsa = (delegate* unmanaged<int>)F(lib, "dnnl_get_effective_cpu_isa");
        GemmU8S8S32 =
            (delegate* unmanaged<sbyte, sbyte, sbyte, long, long, long, float, byte*, long, byte, sbyte*, long, sbyte, float, int*, long, int*, int>)F(lib, "dnnl_gemm_u8s8s32");
        nint engine, stream;
        Check(EngineCreate(&engine, 1, 0), "creating the CPU engine");   // dnnl_cpu
        Check(StreamCreate(&stream, engine, 1), "creating a stream");     // dnnl_stream_default_flags
        Engine = engine;
        Stream = stream;
    }

    /// <summary>The process's CPU engine and its in-order stream.</summary>
    public static readonly nint Engine, Stream;

    /// <summary>oneDNN's effective ISA: whether its int8 kernels have VNNI's dot products here.</summary>
    public static int Isa => EffectiveIsa();

    /// <summary>Names the ISA oneDNN dispatches to (dnnl_cpu_isa_t), for reports.</summary>
    public static string IsaName => Isa switch
    {
        0x3e7 => "avx512_core_amx",
        0xe7 => "avx512_core_bf16",
        0x67 => "avx512_core_vnni",
        0x27 => "avx512_core",
        0x407 => "avx2_vnni",
        0x7 => "avx2",
        int other => $"isa 0x{other:x}",
    };

    /// <summary>int8 products on VNNI's u8·s8 dot products (AVX-512 VNNI or AVX-VNNI) rather than their
    /// emulation.</summary>
    public static bool Vnni => (Isa & 0x40) != 0 || Isa == CpuIsaAvx2Vnni;   // 0x40: the VNNI bit of the AVX-512 values

    public static void Check(int status, string what)
    {
        if (status != 0)
        {
            string name = status switch
            {
                1 => "out of memory",
                2 => "invalid arguments",
                3 => "unimplemented",
                5 => "runtime error",
                _ => $"status {status}",
            };
            throw new InvalidOperationException($"oneDNN (libdnnl {Version}) failed {what}: {name}.");
        }
    }

    public static MemoryDesc Desc(ReadOnlySpan<long> dims, int type, int tag)
    {
        MemoryDesc md;
        fixed (long* d = dims)
        {
            Check(MdInitByTag(&md, dims.Length, d, type, tag),
                $"describing a {string.Join("×", dims.ToArray())} tensor");
        }
        return md;
    }

    /// <summary>The plain row-major layout of a tensor of this many dimensions (nchw, oihw, goihw, nc, x).</summary>
    public static int Plain(int dims) => dims switch
    {
        1 => A,
        2 => Ab,
        4 => Abcd,
        5 => Abcde,
        _ => throw new ArgumentOutOfRangeException(nameof(dims)),
    };

    public static bool Equal(in MemoryDesc a, in MemoryDesc b)
    {
        fixed (MemoryDesc* pa = &a, pb = &b)
        {
            return MdEqual(pa, pb) != 0;
        }
    }

    /// <summary>
    /// A primitive descriptor of the op descriptor <paramref name="op"/> with <paramref name="attr"/>; a backward pass
    /// names its forward's as <paramref name="hint"/>.
    /// </summary>
    public static nint Describe(byte* op, nint attr, string what, nint hint = 0)
    {
        nint pd, a = OwnScratchpad(attr);
        int status = PdCreate(&pd, op, a, Engine, hint);
        Release(a, attr);
        Check(status, what);
        return pd;
    }

    /// <summary>
    /// <paramref name="attr"/>, or new attributes where it is 0, with the scratchpad in the user's hands. Why: by
    /// default (scratchpad mode "library", Debian's build without DNNL_ENABLE_CONCURRENT_EXEC) the primitives of a
    /// thread share one scratchpad and must run on the thread that made them, which the server's batcher, the test
    /// runner's threads and the training convolutions' plans do not promise. The test host died once in ~20 runs with
    /// a oneDNN JIT kernel writing a convolution's tiles to address 0 (gdb on the dump, 2026-12-06); oneDNN documents
    /// the user mode as thread-safe while no two executions share a buffer. Each primitive owns its scratchpad
    /// (Primitive, Execute); OneDnnConv runs one pass at a time, and a net's engine runs on one thread at a time.
    /// </summary>
    private static nint OwnScratchpad(nint attr)
    {
        nint a = attr;
        if (a == 0)
        {
            Check(AttrCreate(&a), "creating attributes");
        }
        Check(AttrSetScratchpadMode(a, ScratchpadModeUser), "asking for a scratchpad of the primitive's own");
        return a;
    }

    /// <summary>Destroys the attributes OwnScratchpad made (not the caller's).</summary>
    private static void Release(nint made, nint attr)
    {
        if (attr == 0)
        {
            AttrDestroy(made);
        }
    }

    /// <summary>Each primitive's own scratchpad (OwnScratchpad), passed at every execution.</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<nint, nint> Scratchpads = new();

    /// <param name="algorithm">ConvolutionDirect, or ConvolutionWinograd (3×3, stride 1: fewer multiplications by
    /// transforming tiles; oneDNN answers "unimplemented" where it has no such kernel, and TryConvolution then gives
    /// 0).</param>
    public static nint Convolution(MemoryDesc src, MemoryDesc weights, MemoryDesc bias, MemoryDesc dst,
        ReadOnlySpan<long> strides, ReadOnlySpan<long> padding, nint attr, string what,
        int algorithm = ConvolutionDirect)
    {
        byte* op = stackalloc byte[OpDescBytes];
        fixed (long* s = strides, p = padding)
        {
            Check(ConvInit(op, ForwardInference, algorithm, &src, &weights, &bias, &dst, s, p, p), what);
        }
        return Describe(op, attr, what);
    }

    /// <summary>
    /// A convolution for training: its forward (ForwardTraining), the gradient of its input and that of its weights
    /// and bias, the two backward passes made with the forward's as their hint (so their layouts agree with it).
    /// </summary>
    public static (nint Forward, nint BackwardData, nint BackwardWeights) TrainingConvolution(MemoryDesc src,
        MemoryDesc weights, MemoryDesc bias,
        MemoryDesc dst, ReadOnlySpan<long> strides, ReadOnlySpan<long> padding, int algorithm, string what,
        nint attr = 0)
    {
        byte* op = stackalloc byte[OpDescBytes];
        nint forward = 0, data = 0;
        fixed (long* s = strides, p = padding)
        {
            try
            {
                Check(ConvInit(op, ForwardTraining, algorithm, &src, &weights, &bias, &dst, s, p, p), what);
                forward = Describe(op, attr, what);
                Check(ConvBackwardDataInit(op, algorithm, &src, &weights, &dst, s, p, p), what + "'s input gradient");
                data = Describe(op, 0, what + "'s input gradient", forward);
                Check(ConvBackwardWeightsInit(op, algorithm, &src, &weights, &bias, &dst, s, p,
                    p), what + "'s weight gradient");
                return (forward, data, Describe(op, 0, what + "'s weight gradient", forward));
            }
            catch (InvalidOperationException)
            {
                // a pass this algorithm lacks (a Winograd forward without its backward): none of the three is kept
                foreach (nint made in new[] { forward, data })
                {
                    if (made != 0)
                    {
                        DestroyDesc(made);
                    }
                }
                throw;
            }
        }
    }

    /// <summary>A convolution's primitive descriptor, or 0 where oneDNN has no kernel for it.</summary>
    public static nint TryConvolution(MemoryDesc src, MemoryDesc weights, MemoryDesc bias, MemoryDesc dst,
        ReadOnlySpan<long> strides, ReadOnlySpan<long> padding, nint attr,
        int algorithm)
    {
        try
        {
            return Convolution(src, weights, bias, dst, strides, padding, attr, "", algorithm);
        }
        catch (InvalidOperationException)
        {
            return 0;
        }
    }

    /// <summary>
    /// A forward convolution's time on zeroed buffers of its own layouts: one run to warm up, the best of three after
    /// (how a measured choice between two algorithms is made).
    /// </summary>
    public static double Time(nint pd, nint bias)
    {
        nint primitive = Primitive(pd, "timing a convolution");
        nint[] memories = new[] { QuerySrcMd, QueryWeightsMd, QueryDstMd }.Select(what =>
        {
            MemoryDesc md = Query(pd, what);
            nint m = Memory(md);
            new Span<byte>(Handle(m), (int)Size(md)).Clear();
            return m;
        }).ToArray();
        ExecArg[] args = { new(ArgSrc, memories[0]), new(ArgWeights, memories[1]),
            new(ArgBias, bias), new(ArgDst, memories[2]) };
        double best = BestSeconds(() =>
        {
            Execute(primitive, args);
            Wait();
        }, timed: 3);
        Destroy(primitive);
        Array.ForEach(memories, DestroyMemory);
        return best;
    }

    /// <summary>
    /// Seconds <paramref name="run"/> takes: one run to warm up, then the best of <paramref name="timed"/>, stopping at
    /// the first that takes <paramref name="enough"/> or more (a measured choice between two ways of running).
    /// </summary>
    public static double BestSeconds(Action run, int timed, double enough = double.MaxValue)
    {
        run();
        double best = double.MaxValue;
        for (int i = 0; i < timed; i++)
        {
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            run();
            best = Math.Min(best, System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds);
            if (best >= enough)
            {
                break;
            }
        }
        return best;
    }

    /// <summary>The bytes a buffer of <paramref name="md"/> takes (blocked layouts pad their channels).</summary>
    public static long Size(MemoryDesc md) => (long)MdGetSize(&md);

    public static nint MaxPool(MemoryDesc src, MemoryDesc dst, int window, int stride, string what)
    {
        byte* op = stackalloc byte[OpDescBytes];
        long* s = stackalloc long[] { stride, stride };
        long* k = stackalloc long[] { window, window };
        long* p = stackalloc long[] { 0, 0 };
        Check(PoolInit(op, ForwardInference, PoolingMax, &src, &dst, s, k, p, p), what);
        return Describe(op, 0, what);
    }

    /// <summary>oneDNN's LRN across channels: dst = src · (k + α/n · Σ src²)^−β over n channels, as
    /// libtorch's.</summary>
    public static nint Lrn(MemoryDesc data, long size, float alphaOverSizeTimesSize, float beta, float k, string what)
    {
        byte* op = stackalloc byte[OpDescBytes];
        Check(LrnInit(op, ForwardInference, LrnAcrossChannels, &data, size, alphaOverSizeTimesSize, beta, k), what);
        return Describe(op, 0, what);
    }

    /// <summary>
    /// §3.1's ReLU backward for training, from its output (the forward is a convolution's post-op): diff_src =
    /// diff_dst where dst &gt; 0, in place allowed. oneDNN wants a forward as the hint; it is made for that and
    /// dropped.
    /// </summary>
    public static nint ReluBackward(MemoryDesc data, string what)
    {
        byte* op = stackalloc byte[OpDescBytes];
        Check(EltwiseInit(op, ForwardTraining, EltwiseReluUseDst, &data, 0f, 0f), what);
        nint hint = Describe(op, 0, what);
        try
        {
            Check(EltwiseBackwardInit(op, EltwiseReluUseDst, &data, &data, 0f, 0f), what);
            return Describe(op, 0, what, hint);
        }
        finally
        {
            DestroyDesc(hint);
        }
    }

    /// <summary>§3.3's LRN for training: the forward (writing a workspace the backward reads) and the
    /// backward.</summary>
    public static (nint Forward, nint Backward) TrainingLrn(MemoryDesc data, long size, float alphaOverSizeTimesSize,
        float beta, float k, string what)
    {
        byte* op = stackalloc byte[OpDescBytes];
        Check(LrnInit(op, ForwardTraining, LrnAcrossChannels, &data, size, alphaOverSizeTimesSize, beta, k), what);
        nint forward = Describe(op, 0, what);
        Check(LrnBackwardInit(op, LrnAcrossChannels, &data, &data, size, alphaOverSizeTimesSize, beta, k), what);
        return (forward, Describe(op, 0, what + "'s backward", forward));
    }

    /// <summary>§3.4's max-pool for training: the forward (the winners' places in a workspace) and the
    /// backward.</summary>
    public static (nint Forward, nint Backward) TrainingMaxPool(MemoryDesc src, MemoryDesc dst, int window, int stride,
        string what)
    {
        byte* op = stackalloc byte[OpDescBytes];
        long* s = stackalloc long[] { stride, stride };
        long* k = stackalloc long[] { window, window };
        long* p = stackalloc long[] { 0, 0 };
        Check(PoolInit(op, ForwardTraining, PoolingMax, &src, &dst, s, k, p, p), what);
        nint forward = Describe(op, 0, what);
        MemoryDesc pooled = Query(forward, QueryDstMd);
        Check(PoolBackwardInit(op, PoolingMax, &src, &pooled, s, k, p, p), what);
        return (forward, Describe(op, 0, what + "'s backward", forward));
    }

    public static nint InnerProduct(MemoryDesc src, MemoryDesc weights, MemoryDesc bias,
        MemoryDesc dst, nint attr, string what)
    {
        byte* op = stackalloc byte[OpDescBytes];
        Check(InnerProductInit(op, ForwardInference, &src, &weights, &bias, &dst), what);
        return Describe(op, attr, what);
    }

    public static nint Reorder(MemoryDesc src, MemoryDesc dst, nint attr, string what)
    {
        nint pd, a = OwnScratchpad(attr);
        int status = ReorderPdCreate(&pd, &src, Engine, &dst, Engine, a);
        Release(a, attr);
        Check(status, what);
        return pd;
    }

    /// <summary>sizeof(dnnl_convolution_desc_t) is 5,976 bytes in 2.6, the largest of the op descriptors used
    /// here.</summary>
    private const int OpDescBytes = 8192;

    public static MemoryDesc Query(nint pd, int what, int index = 0)
    {
        MemoryDesc* md = PdQueryMd(pd, what, index);
        if (md == null)
        {
            throw new InvalidOperationException($"oneDNN returned no memory descriptor for query {what}.");
        }
        return *md;
    }

    /// <summary>The implementation oneDNN chose (e.g. "jit:avx512_core"), for reports and tests.</summary>
    public static string Implementation(nint pd)
    {
        sbyte* name = null;
        return PdQuery(pd, QueryImplInfo, 0, &name) == 0 && name != null ? new string(name) : "?";
    }

    public static nint Primitive(nint pd, string what)
    {
        nint p;
        Check(PrimitiveCreate(&p, pd), what);
        MemoryDesc* scratch = PdQueryMd(pd, QueryScratchpadMd, 0);
        if (scratch != null && MdGetSize(scratch) > 0)
        {
            Scratchpads[p] = Memory(*scratch);
        }
        return p;
    }

    public static void Destroy(nint primitive)
    {
        PrimitiveDestroy(primitive);
        if (Scratchpads.TryRemove(primitive, out nint scratch))
        {
            MemoryDestroy(scratch);
        }
    }
    public static void DestroyDesc(nint pd) => PdDestroy(pd);

    /// <summary>Attributes: per-output-channel (or one) scale of the result, then the activation as a
    /// post-op.</summary>
    /// <param name="scales">null: none; one value: for the whole output; else one per output channel.</param>
    /// <param name="activation">EltwiseRelu, EltwiseTanh, or 0 for none.</param>
    public static nint Attributes(float[]? scales, int activation, int channelMask = 1 << 1)
    {
        nint attr;
        Check(AttrCreate(&attr), "creating attributes");
        if (scales is not null)
        {
            fixed (float* s = scales)
            {
                Check(AttrSetOutputScales(attr, scales.Length,
                    scales.Length == 1 ? 0 : channelMask, s), "setting output scales");
            }
        }
        if (activation != 0)
        {
            nint ops;
            Check(PostOpsCreate(&ops), "creating post-ops");
            Check(PostOpsAppendEltwise(ops, 1f, activation, 0f, 0f), "appending the activation");
            Check(AttrSetPostOps(attr, ops), "attaching the activation");
            PostOpsDestroy(ops);
        }
        return attr;
    }

    public static void DestroyAttributes(nint attr)
    {
        if (attr != 0)
        {
            AttrDestroy(attr);
        }
    }

    /// <summary>A memory object: oneDNN's own buffer, or <paramref name="handle"/> (set per run where 0).</summary>
    public static nint Memory(MemoryDesc md, nint handle = -1)
    {
        nint m;
        Check(MemoryCreate(&m, &md, Engine, handle == -1 ? MemoryAllocate : handle), "allocating memory");
        return m;
    }

    public static void SetHandle(nint memory, void* data) =>
        Check(MemorySetHandle(memory, (nint)data), "setting a buffer");

    public static void* Handle(nint memory)
    {
        nint h;
        Check(MemoryGetHandle(memory, &h), "reading a buffer");
        return (void*)h;
    }

    public static void DestroyMemory(nint memory) => MemoryDestroy(memory);

    public static void Execute(nint primitive, ReadOnlySpan<ExecArg> args)
    {
        if (Scratchpads.TryGetValue(primitive, out nint scratch))
        {
            Span<ExecArg> all = stackalloc ExecArg[args.Length + 1];
            args.CopyTo(all);
            all[args.Length] = new ExecArg(ArgScratchpad, scratch);
            fixed (ExecArg* a = all)
            {
                Check(PrimitiveExecute(primitive, Stream, all.Length, a), "executing a primitive");
            }
            return;
        }
        fixed (ExecArg* a = args)
        {
            Check(PrimitiveExecute(primitive, Stream, args.Length, a), "executing a primitive");
        }
    }

    /// <summary>C[m×n] = A[m×k]·B[k×n] in u8·s8 → s32, row-major, no offsets: the int8 product at its
    /// plainest.</summary>
    public static void Gemm(long m, long n, long k, byte* a, sbyte* b, int* c)
    {
        int zero = 0;
        Check(GemmU8S8S32((sbyte)'N', (sbyte)'N', (sbyte)'F', m, n, k, 1f, a, k, 0, b, n, 0, 0f, c, n, &zero),
            "multiplying u8·s8 matrices");
    }

    /// <summary>oneDNN's float32 GEMM (any oneDNN 2 or 3 loaded, with its OpenMP runtime) is there.</summary>
    public static bool SgemmLoaded => SgemmF32 != null;

    /// <summary>
    /// C[m×n] = op(A)·op(B), row-major float32, op a transpose where asked: dnnl_sgemm, on oneDNN's threads.
    /// </summary>
    public static int Sgemm(bool transA, bool transB, long m, long n, long k, float* a, long lda, float* b,
        long ldb, float* c, long ldc) =>
        SgemmF32((sbyte)(transA ? 'T' : 'N'), (sbyte)(transB ? 'T' : 'N'), m, n, k, 1f, a, lda, b, ldb, 0f, c, ldc);

    public static void Wait() => Check(StreamWait(Stream), "waiting for the stream");

    /// <summary>oneDNN's threads for the next primitives (its OpenMP runtime's, not libtorch's).</summary>
    public static void UseThreads(int threads) => SetOmpThreads(threads);

    /// <summary>oneDNN's threads for the next primitives on this thread (its OpenMP runtime's setting).</summary>
    public static int Threads => GetOmpThreads();

    /// <summary>
    /// oneDNN's threads set to <paramref name="threads"/> until the result is disposed, then the caller's again: a
    /// plan made or run on fewer threads must not leave later primitives on this thread (training's, another
    /// engine's) on them, nor libtorch where it shares the OpenMP runtime.
    /// </summary>
    public static ThreadsScope OnThreads(int threads) => new(threads);

    public readonly struct ThreadsScope : IDisposable
    {
        private readonly int _caller;

        public ThreadsScope(int threads)
        {
            _caller = Threads;
            UseThreads(threads);
        }

        public void Dispose() => UseThreads(_caller);
    }
}

/// <summary>dnnl_exec_arg_t: which argument (DNNL_ARG_*) is which memory.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct ExecArg
{
    public int Arg;
    public nint Memory;

    public ExecArg(int arg, nint memory)
    {
        Arg = arg;
        Memory = memory;
    }
}
