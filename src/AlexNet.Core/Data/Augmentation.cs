// §4.1 Data augmentation, and §2's mean subtraction, from a stored record to the network's input.
//   training: a random Crop×Crop patch (of the record zero-padded by Pad, in mean-centred space),
//             a horizontal reflection with probability ½, and PCA colour noise drawn once per image;
//   testing:  the centre patch, or one of the ten views (four corners and centre, each also reflected).
// Each step can be switched off for the ablations. Values stay on the records' 0–255 scale times Scale
// (the paper trains on "raw RGB values", centred).
using System;

namespace AlexNet.Data;

/// <param name="Crop">Side of the patch fed to the net (§4.1: 224 of 256).</param>
/// <param name="Pad">Zero padding around the record before cropping (small images: 4, so a 32-px patch of 28+2·4 shifts
/// by ±2 px).</param>
/// <param name="PcaStd">σ of αᵢ ~ N(0, σ²) (§4.1: 0.1); 0 switches the colour noise off.</param>
/// <param name="Scale">Multiplies the centred values (1 = the paper's raw scale).</param>
/// <param name="ChannelNorm">Per-channel mean and std in place of §2's mean image and Scale (torchvision's weights), or
/// null.</param>
public sealed record AugmentOptions(
    int Crop,
    int Pad = 0,
    bool RandomCrop = true,
    bool Flip = true,
    double PcaStd = 0.1,
    bool SubtractMean = true,
    float Scale = 1f,
    Normalization? ChannelNorm = null)
{
    /// <summary>
    /// §4.1's settings for a store of side <paramref name="stored"/>: 224 of 256. Small images (28, 32 px) are padded
    /// by 4 and cropped to side + 4: random shifts of up to ±2 px, and the centre view is the whole image.
    /// </summary>
    public static AugmentOptions PaperFor(int stored) => stored >= 64
        ? new AugmentOptions(Crop: stored * 7 / 8)
        : new AugmentOptions(Crop: stored + 4, Pad: 4);

    /// <summary>
    /// §4.1's geometry for height×width records with a run's overrides: <paramref name="pad"/> (−1: §4.1's; honoured
    /// for small images only, whose crop is then side + pad) and <paramref name="crop"/> (null: §4.1's).
    /// </summary>
    public static AugmentOptions For(int height, int width, int pad, int? crop)
    {
        int stored = Math.Min(height, width);
        AugmentOptions a = PaperFor(stored);
        if (pad >= 0 && stored < 64)
        {
            // small images: the crop is the padded image less the shift range
            a = a with { Pad = pad, Crop = stored + pad };
        }
        if (crop is int c)
        {
            if (c > a.LargestCrop(height, width))
            {
                throw new ArgumentException(
                    $"--crop {c} does not fit the {height}×{width} images padded by {a.Pad}: use at " +
                    $"most {a.LargestCrop(height, width)}.");
            }
            a = a with { Crop = c };
        }
        return a;
    }

    /// <summary>The largest patch a height×width record padded by <see cref="Pad"/> holds.</summary>
    public int LargestCrop(int height, int width) => Math.Min(height, width) + 2 * Pad;
}

/// <summary>One of §4.1's ten test views.</summary>
public enum View
{
    TopLeft, TopRight, BottomLeft, BottomRight, Centre,
    TopLeftFlipped, TopRightFlipped, BottomLeftFlipped, BottomRightFlipped, CentreFlipped,
}

public sealed class Augmentation
{
    private readonly int _c, _h, _w;
    private readonly float[] _mean;       // subtracted per pixel (§2's mean image, or each channel's mean level)
    private readonly float[] _scale;      // then multiplied per channel
    private readonly float[] _pcaBasis;   // C×C: pcaBasis[c·C + i] = pᵢ[c]·√λᵢ

    public AugmentOptions Options { get; }
    public int Channels => _c;
    public int Crop => Options.Crop;

    public Augmentation(ImageStore store, AugmentOptions options)
        : this(store.Channels, store.Height, store.Width, store.Mean, store.Manifest.Pca, options)
    {
    }

    public Augmentation(int channels, int height, int width, float[] mean, PcaStats pca, AugmentOptions options)
    {
        if (options.Crop < 1 || options.Crop > options.LargestCrop(height, width))
        {
            throw new ArgumentException(
                $"crop {options.Crop} does not fit a {height}×{width} record padded by {options.Pad}.");
        }
        _c = channels;
        _h = height;
        _w = width;
        Options = options;
        if (options.ChannelNorm is Normalization norm)
        {
            // (x/255 − m)/s = (x − 255m)·1/(255s): the same centre-then-scale, with a constant per channel.
            norm.Validate(channels);
            _mean = new float[channels * height * width];
            _scale = new float[channels];
            for (int c = 0; c < channels; c++)
            {
                _mean.AsSpan(c * height * width, height * width).Fill(255f * norm.Mean[c]);
                _scale[c] = 1f / (255f * norm.Std[c]);
            }
        }
        else
        {
            _mean = mean;
            _scale = new float[channels];
            Array.Fill(_scale, options.Scale);
        }
        _pcaBasis = new float[channels * channels];
        for (int c = 0; c < channels; c++)
        {
            for (int i = 0; i < channels; i++)
            {
                // √λᵢ, the standard deviation along pᵢ: see docs/paper-map.md on §4.1's λ.
                _pcaBasis[c * channels +
                    i] = (float)(pca.Eigenvectors[c][i] * Math.Sqrt(Math.Max(pca.Eigenvalues[i], 0)));
            }
        }
    }

    public int OutputLength => _c * Options.Crop * Options.Crop;

    /// <summary>
    /// A training sample: random crop, random flip, PCA noise, all drawn from <paramref name="rng"/>.
    /// </summary>
    public void Train(ReadOnlySpan<byte> record, Span<float> output, ref Rng rng)
    {
        int spanY = _h + 2 * Options.Pad - Options.Crop, spanX = _w + 2 * Options.Pad - Options.Crop;
        int y0 = Options.RandomCrop ? rng.Next(spanY + 1) : spanY / 2;
        int x0 = Options.RandomCrop ? rng.Next(spanX + 1) : spanX / 2;
        bool flip = Options.Flip && rng.Next(2) == 1;
        Span<float> shift = stackalloc float[_c];
        if (Options.PcaStd > 0)
        {
            Span<float> alpha = stackalloc float[_c];
            for (int i = 0; i < _c; i++)
            {
                alpha[i] = (float)(rng.NextGaussian() * Options.PcaStd);
            }
            for (int c = 0; c < _c; c++)
            {
                for (int i = 0; i < _c; i++)
                {
                    shift[c] += _pcaBasis[c * _c + i] * alpha[i];   // [p₁ p₂ p₃][α₁λ₁ α₂λ₂ α₃λ₃]ᵀ
                }
            }
        }
        Cut(record, output, y0 - Options.Pad, x0 - Options.Pad, flip, shift);
    }

    /// <summary>A test view: the centre, or one of the ten of §4.1. Corners are taken in the padded record.</summary>
    public void Test(ReadOnlySpan<byte> record, Span<float> output, View view = View.Centre)
    {
        int spanY = _h + 2 * Options.Pad - Options.Crop, spanX = _w + 2 * Options.Pad - Options.Crop;
        int corner = (int)view % 5;
        (int y0, int x0) = corner switch
        {
            0 => (0, 0),
            1 => (0, spanX),
            2 => (spanY, 0),
            3 => (spanY, spanX),
            _ => (spanY / 2, spanX / 2),
        };
        Cut(record, output, y0 - Options.Pad, x0 - Options.Pad, flip: (int)view >= 5, stackalloc float[_c]);
    }

    /// <summary>The patch whose top-left is (top, left) in record coordinates (negative = in the padding).</summary>
    private void Cut(ReadOnlySpan<byte> record, Span<float> output, int top, int left,
        bool flip, ReadOnlySpan<float> shift)
    {
        int crop = Options.Crop;
        int plane = _h * _w;
        bool centre = Options.SubtractMean || Options.ChannelNorm is not null;
        for (int c = 0; c < _c; c++)
        {
            float s = shift[c];
            float scale = _scale[c];
            for (int y = 0; y < crop; y++)
            {
                int sy = top + y;
                Span<float> row = output.Slice((c * crop + y) * crop, crop);
                if ((uint)sy >= (uint)_h)
                {
                    row.Clear();   // padding: the mean level, 0 in centred space
                    continue;
                }
                int rowStart = c * plane + sy * _w;
                for (int x = 0; x < crop; x++)
                {
                    int sx = left + (flip ? crop - 1 - x : x);
                    if ((uint)sx >= (uint)_w)
                    {
                        row[x] = 0f;
                        continue;
                    }
                    float v = record[rowStart + sx];
                    if (centre)
                    {
                        v -= _mean[rowStart + sx];
                    }
                    row[x] = (v + s) * scale;
                }
            }
        }
    }
}
