// §3.5 as a table: each layer's output shape, parameters and multiply-adds, computed from the Architecture
// (no forward pass), and checked against a real forward pass by the tests.
using System.Collections.Generic;
using System.Linq;

namespace AlexNet.Model;

public sealed record SummaryRow(string Layer, string Operation, int Channels, int Height, int Width,
    long Parameters, long MultiplyAdds)
{
    public string Shape => Height == 1 && Width == 1 ? $"{Channels}" : $"{Height}×{Width}×{Channels}";
}

public sealed record ModelSummary(Architecture Architecture, IReadOnlyList<SummaryRow> Rows)
{
    public long Parameters => Rows.Sum(r => r.Parameters);
    public long MultiplyAdds => Rows.Sum(r => r.MultiplyAdds);

    public static ModelSummary Of(Architecture arch)
    {
        var rows = new List<SummaryRow>
        {
            new("input", "image", arch.InputChannels, arch.InputSize, arch.InputSize, 0, 0),
        };
        int size = arch.InputSize;
        int channels = arch.InputChannels;
        foreach (ConvLayer c in arch.Convs)
        {
            int outSize = Shapes.OutputSize(size, c.Size, c.Stride, c.Padding);
            long weights = (long)c.Kernels * (channels / c.Groups) * c.Size * c.Size;
            string op = $"conv {c.Size}×{c.Size}/{c.Stride}" + (c.Padding > 0 ? $" pad {c.Padding}" : "")
                + (c.Groups > 1 ? $", {c.Groups} towers" : "") + $", {arch.Activation.ToString().ToLowerInvariant()}"
                + (c.Lrn && arch.Lrn is not null ? ", LRN" : "");
            rows.Add(new SummaryRow(c.Name, op, c.Kernels, outSize, outSize, weights + c.Kernels,
                weights * outSize * outSize));
            size = outSize;
            if (c.Pool)
            {
                size = Shapes.PooledSize(size, arch.PoolWindow, arch.PoolStride);
                rows.Add(new SummaryRow($"pool{c.Name[^1]}", $"max-pool {arch.PoolWindow}/{arch.PoolStride}",
                    c.Kernels, size, size, 0, 0));
            }
            channels = c.Kernels;
        }
        if (arch.TorchvisionLayout && size != 6)
        {
            size = 6;
            rows.Add(new SummaryRow("avgpool", "adaptive avg-pool to 6×6", channels, 6, 6, 0, 0));
        }
        long width = (long)channels * size * size;
        foreach (FcLayer f in arch.Hidden)
        {
            rows.Add(new SummaryRow(f.Name,
                $"fully connected, {arch.Activation.ToString().ToLowerInvariant()}, dropout {arch.Dropout}",
                f.Units, 1, 1, width * f.Units + f.Units, width * f.Units));
            width = f.Units;
        }
        rows.Add(new SummaryRow("fc8", "fully connected → softmax", arch.Classes, 1, 1,
            width * arch.Classes + arch.Classes, width * arch.Classes));
        return new ModelSummary(arch, rows);
    }
}
