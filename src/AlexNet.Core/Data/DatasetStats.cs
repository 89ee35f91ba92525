// §4.1 "We perform PCA on the set of RGB pixel values throughout the ImageNet training set": the 3×3
// covariance of pixel values, its eigenvalues λᵢ and eigenvectors pᵢ (C×C in general: 1×1 for grayscale).
using System;
using System.Linq;

namespace AlexNet.Data;

public static class DatasetStats
{
    /// <param name="moments">Σ x xᵀ (upper triangle, row-major C×C) followed by Σ x (C), over all pixels.</param>
    public static PcaStats Pca(double[] moments, int channels, long pixels)
    {
        int c = channels;
        var cov = new double[c][];
        for (int a = 0; a < c; a++)
        {
            cov[a] = new double[c];
        }
        for (int a = 0; a < c; a++)
        {
            double ma = moments[c * c + a] / pixels;
            for (int b = a; b < c; b++)
            {
                double mb = moments[c * c + b] / pixels;
                cov[a][b] = cov[b][a] = moments[a * c + b] / pixels - ma * mb;
            }
        }
        (double[] values, double[][] vectors) = SymmetricEigen(cov);
        return new PcaStats(values, vectors, cov);
    }

    /// <summary>Cyclic Jacobi rotations: exact enough for the small symmetric matrices here. Eigenvalues descending,
    /// eigenvectors as columns, each with its largest component positive (a fixed sign makes results
    /// comparable).</summary>
    public static (double[] Values, double[][] Vectors) SymmetricEigen(double[][] matrix)
    {
        int n = matrix.Length;
        double[,] a = new double[n, n];
        double[,] v = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                a[i, j] = matrix[i][j];
            }
            v[i, i] = 1;
        }
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int p = 0; p < n; p++)
            {
                for (int q = p + 1; q < n; q++)
                {
                    off += a[p, q] * a[p, q];
                }
            }
            if (off < 1e-30)
            {
                break;
            }
            for (int p = 0; p < n; p++)
            {
                for (int q = p + 1; q < n; q++)
                {
                    if (Math.Abs(a[p, q]) < 1e-300)
                    {
                        continue;
                    }
                    double theta = (a[q, q] - a[p, p]) / (2 * a[p, q]);
                    double t = Math.Sign(theta == 0 ? 1 : theta) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double cos = 1 / Math.Sqrt(t * t + 1);
                    double sin = t * cos;
                    for (int k = 0; k < n; k++)
                    {
                        double akp = a[k, p], akq = a[k, q];
                        a[k, p] = cos * akp - sin * akq;
                        a[k, q] = sin * akp + cos * akq;
                    }
                    for (int k = 0; k < n; k++)
                    {
                        double apk = a[p, k], aqk = a[q, k];
                        a[p, k] = cos * apk - sin * aqk;
                        a[q, k] = sin * apk + cos * aqk;
                    }
                    for (int k = 0; k < n; k++)
                    {
                        double vkp = v[k, p], vkq = v[k, q];
                        v[k, p] = cos * vkp - sin * vkq;
                        v[k, q] = sin * vkp + cos * vkq;
                    }
                }
            }
        }
        int[] order = Enumerable.Range(0, n).OrderByDescending(i => a[i, i]).ToArray();
        double[] values = order.Select(i => a[i, i]).ToArray();
        var vectors = new double[n][];
        for (int row = 0; row < n; row++)
        {
            vectors[row] = new double[n];
        }
        for (int col = 0; col < n; col++)
        {
            int src = order[col];
            int big = Enumerable.Range(0, n).OrderByDescending(r => Math.Abs(v[r, src])).First();
            double sign = v[big, src] < 0 ? -1 : 1;
            for (int row = 0; row < n; row++)
            {
                vectors[row][col] = sign * v[row, src];
            }
        }
        return (values, vectors);
    }
}
