using System;
using AlexNet.Data;
using Xunit;

namespace AlexNet.Tests.Data;

/// <summary>
/// §2's rescale: the separable antialiased bicubic against the same filter applied directly in 2-d, in float64.
/// </summary>
public class ResamplerTests
{
    private static double Cubic(double x)
    {
        x = Math.Abs(x);
        return x < 1 ? (1.5 * x - 2.5) * x * x + 1 : x < 2 ? ((-0.5 * x + 2.5) * x - 4) * x + 2 : 0;   // Keys, a = −0.5
    }

    /// <summary>w[o, i]: PIL's normalised taps, written out from the formula.</summary>
    private static double[,] Weights(int input, int output)
    {
        double scale = (double)input / output, fs = Math.Max(scale, 1), support = 2 * fs;
        var w = new double[output, input];
        for (int o = 0; o < output; o++)
        {
            double centre = (o + 0.5) * scale, sum = 0;
            int lo = Math.Max(0, (int)(centre - support + 0.5)), hi = Math.Min(input, (int)(centre + support + 0.5));
            for (int i = lo; i < hi; i++)
            {
                sum += w[o, i] = Cubic((i - centre + 0.5) / fs);
            }
            for (int i = lo; i < hi; i++)
            {
                w[o, i] /= sum;
            }
        }
        return w;
    }

    [Theory]
    [InlineData(57, 40, 16)]    // a 40-px square inside 57×40, down to 16
    [InlineData(30, 30, 30)]    // the same size: a copy
    [InlineData(20, 24, 32)]    // up-sampling (small images)
    public void SeparablePassesEqualTheDirectFilter(int width, int height, int size)
    {
        var rng = new Random(4);
        var rgba = new byte[width * height * 4];
        rng.NextBytes(rgba);
        int side = Math.Min(width, height), x0 = (width - side) / 2, y0 = (height - side) / 2;
        byte[] planar = Resampler.SquareToPlanar(rgba, width * 4, x0, y0, side, size);
        double[,] w = Weights(side, size);
        for (int c = 0; c < 3; c++)
        {
            for (int oy = 0; oy < size; oy++)
            {
                for (int ox = 0; ox < size; ox++)
                {
                    double v = 0;
                    for (int j = 0; j < side; j++)
                    {
                        for (int i = 0; i < side; i++)
                        {
                            v += w[oy, j] * w[ox, i] * rgba[((y0 + j) * width + x0 + i) * 4 + c];
                        }
                    }
                    int expected = (int)Math.Clamp(Math.Round(v), 0, 255);
                    Assert.InRange(planar[c * size * size + oy * size + ox], expected - 1, expected + 1);
                }
            }
        }
        if (side == size)
        {
            Assert.Equal(rgba[(y0 * width + x0) * 4 + 1], planar[size * size]);   // a copy, pixel for pixel
        }
    }

    [Fact]
    public void HalvingACheckerboardAveragesItInsteadOfAliasing()
    {
        const int side = 64;
        var rgba = new byte[side * side * 4];
        for (int y = 0; y < side; y++)
        {
            for (int x = 0; x < side; x++)
            {
                byte v = (byte)((x + y) % 2 == 0 ? 255 : 0);
                rgba[(y * side + x) * 4] = rgba[(y * side + x) * 4 + 1] = rgba[(y * side + x) * 4 + 2] = v;
            }
        }
        byte[] half = Resampler.SquareToPlanar(rgba, side * 4, 0, 0, side, side / 2);
        // Point sampling would give all 255 or all 0; the antialiased filter gives mid-grey away from the border.
        for (int y = 4; y < side / 2 - 4; y++)
        {
            for (int x = 4; x < side / 2 - 4; x++)
            {
                Assert.InRange(half[y * side / 2 + x], 120, 135);
            }
        }
    }
}
