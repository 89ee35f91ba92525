// The output side of a convolution or a pooling window, one formula for the builder, the summary and the kernels.
namespace AlexNet.Model;

public static class Shapes
{
    /// <summary>
    /// ⌊(side + 2·padding − kernel) / stride⌋ + 1: the positions a kernel of that size takes along one axis.
    /// </summary>
    public static int OutputSize(int side, int kernel, int stride, int padding = 0) =>
        (side + 2 * padding - kernel) / stride + 1;

    /// <summary>§3.4's pooling without padding: (side − z)/s + 1 (55 → 27 for z = 3, s = 2).</summary>
    public static int PooledSize(int side, int window, int stride) => OutputSize(side, window, stride);
}
