// conv1 of one-channel images (Fashion-MNIST, the quick start's `small`) on CPUs where oneDNN has no AVX-512:
// libtorch's forward, and the weight gradient as one convolution with the batch as channels:
//   ∂W[o,c,u,v] = Σ_n Σ_ij ∂y[n,o,i,j]·x[n,c, s·i + u − p, s·j + v − p]   (s = stride, p = padding)
// that is, xᵀ (C×N×H×W) convolved by ∂yᵀ (O×N×Ho×Wo) with dilation s, first k×k of the result.
// ∂b[o] = Σ_n Σ_ij ∂y[n,o,i,j]. conv1's input is the image batch, so no ∂x is computed.
// Why: there libtorch's own backward for a one-channel input took 6.5 ms at batch 64 on one thread against 1.4 ms
// this way, ~7% of `small`'s step; with oneDNN's AVX-512 kernels libtorch's is the faster (0.7 against 1.2 ms),
// and with three channels or the paper's conv1 this way is not faster (docs/performance.md, "conv1's weight
// gradient on AVX2"). So it is used only there.
using System.Collections.Generic;
using System.Linq;
using AlexNet.Model.Kernels;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model;

public static class GrayscaleConv1
{
    /// <summary>
    /// This conv's training step takes this path: oneDNN without AVX-512, a one-channel float32 CPU batch that needs no
    /// gradient of its own, weights that do, an ungrouped undilated conv with a bias.
    /// </summary>
    public static bool Supports(Tensor x, Conv2d conv) => !LowPrecision.OneDnnAvx512 && Applies(x, conv);

    /// <summary>
    /// The shape and gradient conditions of <see cref="Supports"/>, whatever the CPU (the tests run the path
    /// everywhere).
    /// </summary>
    internal static bool Applies(Tensor x, Conv2d conv) =>
        torch.is_grad_enabled() && !x.requires_grad && conv.weight!.requires_grad
        && Planes.Supports(x) && x.shape[1] == 1
        && conv.groups == 1 && conv.dilation.All(d => d == 1) && conv.padding is not null && conv.bias is not null
        && Planes.IsCpuFloat32(conv.weight!);

    /// <summary>y = conv(x, W) + b by libtorch, with the backward above.</summary>
    public static Tensor Apply(Tensor x, Conv2d conv) =>
        Conv1Function.apply(x, conv.weight!, conv.bias!, new ConvArgs(conv.stride, conv.padding!));

    private sealed record ConvArgs(long[] Stride, long[] Padding);

    private sealed class Conv1Function : autograd.SingleTensorFunction<Conv1Function>
    {
        public override string Name => "AlexNetGrayscaleConv1";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            Tensor x = (Tensor)vars[0], w = (Tensor)vars[1], b = (Tensor)vars[2];
            var args = (ConvArgs)vars[3];
            ctx.save_for_backward(new List<Tensor> { x, w });
            ctx.save_data("args", args);
            return nn.functional.conv2d(x, w, b, strides: args.Stride, padding: args.Padding);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var args = (ConvArgs)ctx.get_data("args");
            List<Tensor> saved = ctx.get_saved_variables();
            Tensor x = saved[0], w = saved[1];
            Tensor gw, gb;
            using (var scope = NewDisposeScope())
            {
                Tensor full = nn.functional.conv2d(x.transpose(0, 1), gradOutput.transpose(0, 1),
                    padding: args.Padding, dilation: args.Stride);
                gw = full.narrow(2, 0, w.shape[2]).narrow(3, 0, w.shape[3]).transpose(0,
                    1).contiguous().MoveToOuterDisposeScope();
                gb = gradOutput.sum(new long[] { 0, 2, 3 }).MoveToOuterDisposeScope();
            }
            foreach (Tensor t in saved)
            {
                t.Dispose();
            }
            gradOutput.Dispose();   // a fresh wrapper that nothing reads after this call (as in FusedStage)
            return new List<Tensor> { null!, gw, gb, null! };
        }
    }
}
