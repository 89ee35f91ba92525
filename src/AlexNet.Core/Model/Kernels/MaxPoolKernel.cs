// §3.4 Overlapping max-pooling of one plane (window z = 3, stride s = 2 in the paper), the pooling pass of the
// fused ReLU→LRN→pool stage: forward keeps each window's first maximum as an index into the plane; backward
// routes each pooled gradient to it.
//
// Shapes: a plane is H×W; the pooled plane is Ho×Wo with Ho = (H − z)/s + 1 (Shapes.PooledSize).
using System;
using System.Numerics;

namespace AlexNet.Model.Kernels;

internal static unsafe class MaxPoolKernel
{
    /// <summary>Scratch planes the forward pass needs per image (row maxima and their indices).</summary>
    public const int ScratchPlanes = 2;

    /// <summary>
    /// y = max-pool(b) and, with <paramref name="argmax"/>, each window's maximum as an index into the plane. Separable
    /// and on whole vectors: each row's window maximum at every column, then the maximum of those down each window's
    /// rows. Strict "greater than" in both passes keeps the leftmost of equal values within a row and then the topmost
    /// row: libtorch's first maximum in row-major order. NaN wins. <paramref name="b"/> is padded scratch.
    /// </summary>
    public static void Forward(float* b, float* y, int* argmax, int h, int w, int window,
        int stride, float* rowMax, int* rowArg)
    {
        int ho = Shapes.PooledSize(h, window, stride), wo = Shapes.PooledSize(w, window, stride);
        int vw = Vector<float>.Count;
        int cols = w - window + 1;   // window starts along a row
        Span<int> iota = stackalloc int[vw];
        for (int l = 0; l < vw; l++)
        {
            iota[l] = l;
        }
        var lanes = new Vector<int>(iota);
        int rows = (ho - 1) * stride + window;
        for (int r = 0; r < rows; r++)
        {
            float* row = b + r * w;
            for (int x0 = 0; x0 < cols; x0 += vw)
            {
                Vector<float> m = Vector.LoadUnsafe(ref row[x0]);
                Vector<int> start = lanes + new Vector<int>(r * w + x0);
                Vector<int> at = start;
                for (int dx = 1; dx < window; dx++)
                {
                    Vector<float> v = Vector.LoadUnsafe(ref row[x0 + dx]);
                    Vector<int> take = Vector.GreaterThan(v, m) | ~Vector.Equals(v, v);
                    m = Vector.ConditionalSelect(take, v, m);
                    at = Vector.ConditionalSelect(take, start + new Vector<int>(dx), at);
                }
                m.StoreUnsafe(ref rowMax[r * w + x0]);
                at.StoreUnsafe(ref rowArg[r * w + x0]);
            }
        }
        Span<float> windowMax = stackalloc float[cols + vw];
        Span<int> windowArg = stackalloc int[cols + vw];
        for (int oy = 0; oy < ho; oy++)
        {
            int top = oy * stride * w;
            for (int x0 = 0; x0 < cols; x0 += vw)
            {
                Vector<float> m = Vector.LoadUnsafe(ref rowMax[top + x0]);
                Vector<int> at = Vector.LoadUnsafe(ref rowArg[top + x0]);
                for (int dy = 1; dy < window; dy++)
                {
                    Vector<float> v = Vector.LoadUnsafe(ref rowMax[top + dy * w + x0]);
                    Vector<int> take = Vector.GreaterThan(v, m) | ~Vector.Equals(v, v);
                    m = Vector.ConditionalSelect(take, v, m);
                    at = Vector.ConditionalSelect(take, Vector.LoadUnsafe(ref rowArg[top + dy * w + x0]), at);
                }
                m.StoreUnsafe(ref windowMax[x0]);
                at.StoreUnsafe(ref windowArg[x0]);
            }
            // The pooled values are those of the windows that start at every stride-th column.
            float* yo = y + oy * wo;
            for (int ox = 0; ox < wo; ox++)
            {
                yo[ox] = windowMax[ox * stride];
            }
            if (argmax != null)
            {
                int* io = argmax + oy * wo;
                for (int ox = 0; ox < wo; ox++)
                {
                    io[ox] = windowArg[ox * stride];
                }
            }
        }
    }

    /// <summary>∂b = ∂y scattered to the saved maxima (overlapping windows add up), over a cleared plane.</summary>
    public static void Backward(float* gy, int* argmax, int pooled, float* gb, int plane)
    {
        new Span<float>(gb, plane).Clear();
        for (int o = 0; o < pooled; o++)
        {
            gb[argmax[o]] += gy[o];
        }
    }
}
