// Not in the paper (it trained in float32 on GTX 580s): the conv and fully connected products in bfloat16,
// as PyTorch's CPU autocast runs them. The weights stay float32 (the masters §5's update reads and writes);
// each product casts its input and weights to bfloat16, libtorch hands it to oneDNN (AVX-512 BF16's dot
// products where the CPU has them, emulated elsewhere), and the result comes back as float32, so ReLU, the
// fused LRN/pool stage, dropout, the loss and every gradient outside the products stay float32. bfloat16
// keeps float32's exponent, so no loss scaling is needed.
using System;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model;

/// <summary>The number format of the conv and fully connected products.</summary>
public enum Precision
{
    /// <summary>float32 throughout, as the paper.</summary>
    Fp32,

    /// <summary>Not in the paper: the products in bfloat16 from float32 master weights, everything else float32.</summary>
    Bf16,
}

public static class LowPrecision
{
    /// <summary>`fp32` or `bf16` (the flag's spelling) as a <see cref="Precision"/>.</summary>
    public static Precision Parse(string name) => name.ToLowerInvariant() switch
    {
        "fp32" or "float32" => Precision.Fp32,
        "bf16" or "bfloat16" => Precision.Bf16,
        _ => throw new ArgumentException($"--precision takes fp32 or bf16, got '{name}'."),
    };

    /// <summary>A conv layer's product in bfloat16, returned as float32; gradients flow through the casts to the float32 weights.</summary>
    public static Tensor Conv(Tensor x, Conv2d conv, ConvLayer layer)
    {
        using var scope = NewDisposeScope();
        Tensor y = nn.functional.conv2d(x.to(ScalarType.BFloat16), conv.weight!.to(ScalarType.BFloat16), conv.bias!.to(ScalarType.BFloat16),
            strides: [layer.Stride], padding: [layer.Padding], groups: layer.Groups);
        return y.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>A fully connected layer's product in bfloat16, returned as float32.</summary>
    public static Tensor Linear(Tensor x, Linear fc)
    {
        using var scope = NewDisposeScope();
        Tensor y = nn.functional.linear(x.to(ScalarType.BFloat16), fc.weight!.to(ScalarType.BFloat16), fc.bias!.to(ScalarType.BFloat16));
        return y.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }
}
