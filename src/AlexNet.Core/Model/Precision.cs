// Not in the paper (it trained in float32 on GTX 580s): the conv and fully connected products in bfloat16,
// as PyTorch's CPU autocast runs them. The weights stay float32 (the masters §5's update reads and writes);
// each product casts its input and weights to bfloat16, libtorch hands it to oneDNN (AVX-512 BF16's dot
// products where the CPU has them, emulated on other AVX-512 CPUs; refused without AVX-512, see Fast), and the
// result comes back as float32, so ReLU, the
// fused LRN/pool stage, dropout, the loss and every gradient outside the products stay float32. bfloat16
// keeps float32's exponent, so no loss scaling is needed.
using System;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model;

/// <summary>The number format of the conv and fully connected products.</summary>
public enum Precision
{
    /// <summary>float32 throughout, as the paper.</summary>
    Fp32,

    /// <summary>
    /// Not in the paper: the products in bfloat16 from float32 master weights, everything else float32.
    /// </summary>
    Bf16,

    /// <summary>
    /// Not in the paper: inference only, the products in 8-bit integers from a calibrated checkpoint
    /// (Quantization.cs), on oneDNN's int8 kernels (OneDnnNet.cs).
    /// </summary>
    Int8,
}

public static class LowPrecision
{
    /// <summary> Whether libtorch runs bfloat16 products on oneDNN on this device: any GPU, or a CPU with oneDNN's
    /// avx512_core (AVX-512 F, BW, VL, DQ; avx512_bf16 makes it fast) unless ONEDNN_MAX_CPU_ISA caps it lower.
    /// Elsewhere (AVX2 CPUs) libtorch falls back to its own bfloat16 convolutions, measured ~50× slower than float32
    /// (docs/performance.md).
    /// </summary>
    public static bool Fast(Device device) => device.type != DeviceType.CPU || OneDnnAvx512;

    /// <summary>
    /// oneDNN runs its avx512_core kernels on this CPU: AVX-512 F, BW, VL and DQ, and no ONEDNN_MAX_CPU_ISA below them.
    /// </summary>
    internal static readonly bool OneDnnAvx512 = Avx512F.IsSupported && Avx512BW.IsSupported
        && Avx512DQ.IsSupported && Avx512F.VL.IsSupported
        && !IsaCappedBelowAvx512(Environment.GetEnvironmentVariable("ONEDNN_MAX_CPU_ISA")
        ?? Environment.GetEnvironmentVariable("DNNL_MAX_CPU_ISA"));

    private static bool IsaCappedBelowAvx512(string? cap) => cap is not null
        && !(cap.StartsWith("AVX512", StringComparison.OrdinalIgnoreCase) || cap.StartsWith("AVX10",
        StringComparison.OrdinalIgnoreCase)
            || cap.StartsWith("AMX", StringComparison.OrdinalIgnoreCase) || cap.Equals("ALL",
        StringComparison.OrdinalIgnoreCase));

    /// <summary>Refuses bf16 where it would crawl (see <see cref="Fast"/>), with what to do instead.</summary>
    public static void Check(Precision precision, Device device)
    {
        if (precision == Precision.Bf16 && !Fast(device))
        {
            throw new ArgumentException(
                "--precision bf16 needs a CPU with AVX-512 (lscpu: avx512f avx512bw avx512vl avx512dq; avx512_bf16 " +
                "makes it fast): "
                + "on this one libtorch has no oneDNN bfloat16 kernels and its fallback runs ~50× slower than " +
                "float32. Use --precision fp32.");
        }
    }

    /// <summary>`fp32` or `bf16` (the flag's spelling) as a <see cref="Precision"/>.</summary>
    public static Precision Parse(string name) => name.ToLowerInvariant() switch
    {
        "fp32" or "float32" => Precision.Fp32,
        "bf16" or "bfloat16" => Precision.Bf16,
        "int8" => Precision.Int8,
        _ => throw new ArgumentException(
            $"--precision takes fp32, bf16 or int8 (inference of a quantized checkpoint), got '{name}'."),
    };

    /// <summary>
    /// A conv layer's product in bfloat16, returned as float32; gradients flow through the casts to the float32
    /// weights.
    /// </summary>
    public static Tensor Conv(Tensor x, Conv2d conv)
    {
        using var scope = NewDisposeScope();
        Tensor y = nn.functional.conv2d(x.to(ScalarType.BFloat16), conv.weight!.to(ScalarType.BFloat16),
            conv.bias!.to(ScalarType.BFloat16),
            strides: conv.stride, padding: conv.padding, dilation: conv.dilation, groups: conv.groups);
        return y.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>A fully connected layer's product in bfloat16, returned as float32.</summary>
    public static Tensor Linear(Tensor x, Linear fc)
    {
        using var scope = NewDisposeScope();
        Tensor y = nn.functional.linear(x.to(ScalarType.BFloat16), fc.weight!.to(ScalarType.BFloat16),
            fc.bias!.to(ScalarType.BFloat16));
        return y.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}
