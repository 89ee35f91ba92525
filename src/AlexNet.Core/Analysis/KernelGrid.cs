// §6.1, Figure 3: "96 convolutional kernels of size 11×11×3 learned by the first convolutional layer ...
// The top 48 kernels were learned on GPU 1 while the bottom 48 kernels were learned on GPU 2."
// Each kernel is contrast-normalised on its own (min → 0, max → 255), enlarged, and laid out one block
// per tower (the first half of conv1's kernels, then the second half).
using System;
using System.IO;
using System.Linq;
using AlexNet.Model;
using SkiaSharp;
using static TorchSharp.torch;

namespace AlexNet.Analysis;

public sealed record GridLayout(int Kernels, int Towers, int Columns, int RowsPerTower, int KernelSide,
    int Scale, int Width, int Height);

public static class KernelGrid
{
    private const int Gap = 2, TowerGap = 12;

    public static GridLayout Layout(int kernels, int side, int scale = 4, int towers = 2, int columns = 16)
    {
        towers = kernels % towers == 0 ? towers : 1;
        int perTower = kernels / towers;
        columns = Math.Min(columns, perTower);
        int rows = (perTower + columns - 1) / columns;
        int cell = side * scale + Gap;
        return new GridLayout(kernels, towers, columns, rows, side, scale, columns * cell + Gap,
            towers * (rows * cell + Gap) + (towers - 1) * TowerGap);
    }

    /// <summary>Draws conv1's weights (K×C×s×s, C = 3 or 1) as a PNG.</summary>
    /// <param name="towers">2: Figure 3's two blocks, the kernels of each GPU (§3.2); 1 for single-tower nets.</param>
    public static GridLayout Draw(Tensor weight, string path, int scale = 4, int towers = 2)
    {
        (byte[] png, GridLayout g) = Render(weight, scale, towers);
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
        }
        AtomicFile.WriteAllBytes(path, png);
        return g;
    }

    /// <summary>The same grid as PNG bytes (for `alexnet serve`).</summary>
    public static (byte[] Png, GridLayout Layout) Render(Tensor weight, int scale = 4, int towers = 2)
    {
        using Tensor w = weight.detach().to(ScalarType.Float32).cpu().contiguous();
        int k = (int)w.shape[0], c = (int)w.shape[1], side = (int)w.shape[2];
        GridLayout g = Layout(k, side, scale, towers);
        float[] data = w.data<float>().ToArray();
        using var bitmap = new SKBitmap(new SKImageInfo(g.Width, g.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.White);
        }
        int perTower = k / g.Towers, cell = side * scale + Gap, size = c * side * side;
        for (int i = 0; i < k; i++)
        {
            int tower = i / perTower, j = i % perTower;
            int x0 = Gap + j % g.Columns * cell;
            int y0 = Gap + tower * (g.RowsPerTower * cell + Gap + TowerGap) + j / g.Columns * cell;
            float[] kernel = data.AsSpan(i * size, size).ToArray();
            float min = float.PositiveInfinity, max = float.NegativeInfinity;
            foreach (float v in kernel)
            {
                min = Math.Min(min, v);
                max = Math.Max(max, v);
            }
            float range = max > min ? max - min : 1;
            for (int y = 0; y < side * scale; y++)
            {
                for (int x = 0; x < side * scale; x++)
                {
                    int p = y / scale * side + x / scale;
                    byte Channel(int ch) => (byte)Math.Round(255 * (kernel[(c == 3 ? ch
                        : 0) * side * side + p] - min) / range);
                    bitmap.SetPixel(x0 + x, y0 + y, new SKColor(Channel(0), Channel(1), Channel(2)));
                }
            }
        }
        using SKData png = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return (png.ToArray(), g);
    }

    /// <summary>
    /// Pixels per weight that make a net's conv1 grid readable: 4 for the 11×11 kernels, 8 for the small nets' 5×5.
    /// </summary>
    /// <summary>
    /// Two blocks for the two-tower nets (a grouped layer anywhere), one for the others.
    /// </summary>
    public static int TowersOf(Architecture arch) => arch.Convs.Any(c => c.Groups == 2) ? 2 : 1;

    public static int ScaleFor(Architecture arch) => arch.Convs[0].Size >= 11 ? 4 : 8;
}
