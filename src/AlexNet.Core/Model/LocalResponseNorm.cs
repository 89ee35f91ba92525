// §3.3 Local response normalisation as a layer (Figure 2: after conv1's and conv2's ReLU). The arithmetic is
// LrnKernel's; this file is the module and its autograd function. In the nets, conv1's and conv2's
// ReLU → LRN → pool run fused (FusedStage); this layer runs where the stage does not apply.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading.Tasks;
using AlexNet.Model.Kernels;
using TorchSharp;
using static TorchSharp.torch;

namespace AlexNet.Model;

/// <summary>
/// The §3.3 layer. With <c>fused</c>, float32 CPU tensors take our kernel; anything else (CUDA, float64) takes
/// libtorch's.
/// </summary>
public sealed class LocalResponseNorm : nn.Module<Tensor, Tensor>
{
    private readonly LrnParams _p;
    private readonly bool _fused;

    /// <param name="fused">false: always libtorch's own LRN, the reference our kernel is tested against.</param>
    public LocalResponseNorm(LrnParams p, bool fused = true) : base(nameof(LocalResponseNorm))
    {
        p.Validate();
        _p = p;
        _fused = fused;
    }

    public LrnParams Params => _p;

    public override Tensor forward(Tensor input) => Apply(input, _p, _fused);

    public static Tensor Apply(Tensor input, LrnParams p, bool fused = true)
    {
        if (!fused || !Planes.Supports(input))
        {
            return Reference(input, p);
        }
        if (!torch.is_grad_enabled() || !input.requires_grad)
        {
            using Tensor contiguous = input.contiguous();
            Tensor output = empty_like(contiguous);
            Kernel.Forward(contiguous, output, p);
            return output;
        }
        return LrnFunction.apply(input, p);
    }

    /// <summary>
    /// libtorch's LRN, tower by tower (each tower's maps normalised among themselves, §3.2): the reference of our
    /// kernel, and the path of other devices and dtypes.
    /// </summary>
    public static Tensor Reference(Tensor input, LrnParams p)
    {
        if (p.Towers == 1)
        {
            return nn.functional.local_response_norm(input, p.Size, p.TorchAlpha, p.Beta, p.K);
        }
        using var scope = NewDisposeScope();
        Tensor[] towers = input.chunk(p.Towers,
            1).Select(t => nn.functional.local_response_norm(t, p.Size, p.TorchAlpha, p.Beta, p.K)).ToArray();
        return cat(towers, 1).MoveToOuterDisposeScope();
    }

    private sealed class LrnFunction : autograd.SingleTensorFunction<LrnFunction>
    {
        public override string Name => "AlexNetLocalResponseNorm";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var p = (LrnParams)vars[1];
            Tensor input = ((Tensor)vars[0]).contiguous();
            Tensor output = empty_like(input);
            Kernel.Forward(input, output, p);
            ctx.save_for_backward(new List<Tensor> { input });
            ctx.save_data("p", p);
            return output;
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var p = (LrnParams)ctx.get_data("p");
            List<Tensor> saved = ctx.get_saved_variables();
            using Tensor g = gradOutput.contiguous();
            Tensor gradInput = empty_like(saved[0]);
            Kernel.Backward(saved[0], g, gradInput, p);
            foreach (Tensor t in saved)
            {
                t.Dispose();
            }
            // TorchSharp hands the incoming gradient over in a fresh wrapper that nothing reads after this call.
            gradOutput.Dispose();
            return new List<Tensor> { gradInput, null! };
        }
    }

    /// <summary>LrnKernel's passes image by image, straight from and into the tensors.</summary>
    internal static unsafe class Kernel
    {
        public static void Forward(Tensor input, Tensor output, LrnParams p)
        {
            (int n, int c, int plane) = Dims(input);
            float* a = Planes.Ptr(input), b = Planes.Ptr(output);
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = Planes.Threads }, img =>
            {
                using var scratch = new Scratch(plane, LrnKernel.ForwardScratchPlanes);
                long o = (long)img * c * plane;
                var sink = new Into(b + o, plane);
                LrnKernel.ForwardImage<Identity, Into>(a + o, c, plane, p, scratch, ref sink);
            });
        }

        public static void Backward(Tensor input, Tensor gradOutput, Tensor gradInput, LrnParams p)
        {
            (int n, int c, int plane) = Dims(input);
            float* a = Planes.Ptr(input), g = Planes.Ptr(gradOutput), ga = Planes.Ptr(gradInput);
            int planes = LrnKernel.BackwardScratchPlanes(p);
            Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = Planes.Threads }, img =>
            {
                using var scratch = new Scratch(plane, planes);
                long o = (long)img * c * plane;
                var grad = new From(g + o, plane);
                LrnKernel.BackwardImage<Identity, From>(a + o, ga + o, c, plane, p, scratch, ref grad);
            });
        }

        private static (int N, int C, int Plane) Dims(Tensor t)
        {
            long[] shape = t.shape;
            return ((int)shape[0], (int)shape[1], checked((int)(shape[2] * shape[3])));
        }

        private readonly struct Into(float* output, int plane) : IPlaneSink
        {
            public float* Target(int c) => output + (long)c * plane;

            public void Written(int c, float* b)
            {
            }
        }

        private readonly struct From(float* gradOutput, int plane) : IPlaneGradient
        {
            public float* Gradient(int c) => gradOutput + (long)c * plane;
        }
    }
}
