// §3.5's fully connected layers (fc6, fc7, fc8) on oneDNN's float32 GEMM. libtorch hands a float32 linear layer
// to MKL's sgemm, which on AMD processors runs its AVX2 code even where the CPU has AVX-512: fc6 ran at about a
// quarter of the FMA peak while the convolutions, which libtorch hands to oneDNN, ran near it (docs/performance.md,
// "Performance II"). oneDNN's own sgemm picks its kernels by the CPU's features, not its
// vendor; libtorch links oneDNN privately, so we call Debian's (libdnnl2, dnnl_sgemm) through its C API. Used where
// the library loads and the CPU has AVX-512 (where it was measured); elsewhere, and for any tensor but a 2-d float32
// one on the CPU, libtorch's linear runs as before.
//
// Shapes: x = N×K (a batch of inputs), W = M×K (one row per neuron), b = M, y = N×M.
// dnnl_sgemm is row-major: C[m×n] = A[m×k]·B[k×n], either operand optionally transposed.
using System;
using System.Collections.Generic;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model.Kernels;

public static unsafe class FullyConnected
{
    /// <summary>oneDNN's sgemm is loaded (Debian's libdnnl2) and the CPU has AVX-512.</summary>
    public static bool Available => Avx512F.IsSupported && Dnnl.SgemmLoaded;

    /// <summary>This layer's product can run on oneDNN: a 2-d float32 CPU input and weights.</summary>
    public static bool Supports(Tensor x, Linear fc) => Available && x.dim() == 2 && Planes.IsCpuFloat32(x)
        && Planes.IsCpuFloat32(fc.weight!) && fc.weight!.is_contiguous();

    /// <summary>y = x·Wᵀ + b, on oneDNN's sgemm, with its own backward (∂x = ∂y·W, ∂W = ∂yᵀ·x, ∂b = Σ ∂y).</summary>
    public static Tensor Apply(Tensor x, Linear fc)
    {
        if (!torch.is_grad_enabled() || !(x.requires_grad || fc.weight!.requires_grad))
        {
            return Forward(x, fc.weight!, fc.bias!);   // Forward reads x only through its transposed copy
        }
        return LinearFunction.apply(x, fc.weight!, fc.bias!);
    }

    /// <summary>C = op(A)·op(B) for contiguous row-major float32 tensors (op = transpose where asked).</summary>
    private static void Gemm(bool transA, bool transB, Tensor a, Tensor b, Tensor c)
    {
        long m = c.shape[0], n = c.shape[1], k = transA ? a.shape[0] : a.shape[1];
        // the OpenMP runtime oneDNN was built against, the system's, not libtorch's copy
        Dnnl.UseThreads(Planes.Threads);
        int status = Dnnl.Sgemm(transA, transB, m, n, k, Planes.Ptr(a), a.shape[1], Planes.Ptr(b),
            b.shape[1], Planes.Ptr(c), n);
        if (status != 0)
        {
            throw new InvalidOperationException($"oneDNN's sgemm failed (status {status}) on {m}×{k} by {k}×{n}.");
        }
    }

    private static Tensor Forward(Tensor x, Tensor w, Tensor b)
    {
        // yᵀ = W·xᵀ: both operands untransposed, oneDNN's fastest case here (2.2× its x·Wᵀ; docs/performance.md).
        using Tensor xT = x.t().contiguous();
        using Tensor yT = empty(w.shape[0], x.shape[0]);
        Gemm(false, false, w, xT, yT);
        Tensor y = empty(x.shape[0], w.shape[0]);
        y.copy_(yT.t());
        return y.add_(b);
    }

    private sealed class LinearFunction : autograd.SingleTensorFunction<LinearFunction>
    {
        public override string Name => "AlexNetFullyConnected";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            Tensor x = ((Tensor)vars[0]).contiguous(), w = (Tensor)vars[1], b = (Tensor)vars[2];
            ctx.save_for_backward(new List<Tensor> { x, w });
            ctx.save_data("inputGradient", ((Tensor)vars[0]).requires_grad);
            return Forward(x, w, b);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            List<Tensor> saved = ctx.get_saved_variables();
            Tensor x = saved[0], w = saved[1];
            using Tensor gy = gradOutput.contiguous();
            Tensor? gx = null;
            if ((bool)ctx.get_data("inputGradient"))
            {
                gx = empty_like(x);
                Gemm(false, false, gy, w, gx);     // ∂x = ∂y·W
            }
            Tensor gw = empty_like(w);
            Gemm(true, false, gy, x, gw);           // ∂W = ∂yᵀ·x
            Tensor gb = gy.sum(dim: 0);
            foreach (Tensor t in saved)
            {
                t.Dispose();
            }
            gradOutput.Dispose();   // a fresh wrapper that nothing reads after this call (as in FusedStage)
            return new List<Tensor> { gx!, gw, gb };
        }
    }
}
