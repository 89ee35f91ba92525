using System.Linq;
using AlexNet.Model;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests;

/// <summary>Comparisons of two computations that should agree within float32 rounding (towers, replicas).</summary>
internal static class Close
{
    /// <summary>max |expected − actual| ≤ rtol · max |expected|.</summary>
    public static void Assert(Tensor expected, Tensor actual, double rtol, string what)
    {
        double scale = expected.abs().max().item<float>();
        double diff = (expected - actual).abs().max().item<float>();
        Xunit.Assert.True(diff <= rtol * scale, $"{what}: max |Δ| {diff} against max |x| {scale}");
    }

    /// <summary>Every weight of two checkpoints' nets within 1e-4 of the largest of its tensor in the first.</summary>
    public static void SameWeights(string a, string b)
    {
        (AlexNetModel x, _) = AlexNet.Training.Checkpoint.LoadModel(a);
        (AlexNetModel y, _) = AlexNet.Training.Checkpoint.LoadModel(b);
        using (x)
        using (y)
        {
            foreach ((Tensor p, Tensor q) in x.parameters().Zip(y.parameters()))
            {
                double diff = (p - q).abs().max().item<float>(), scale = p.abs().max().item<float>();
                Xunit.Assert.True(diff <= 1e-4 * scale, $"max |Δ| {diff} against max |w| {scale}");
            }
        }
    }
}
