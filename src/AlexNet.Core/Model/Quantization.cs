// Not in the paper (it ran float32 on GTX 580s): post-training int8 quantization for inference, as oneDNN's and ONNX
// Runtime's int8 paths expect it. Symmetric throughout (zero maps to zero, which is all oneDNN's convolutions take):
//   weights: s8 per output channel, scale = max |w| / 127 over the channel's kernel;
//   activations: one scale per tensor, calibrated on training images: the input of each learned layer is u8 after
//   a ReLU (scale = range / 255) and s8 at conv1 (the centred image, scale = range / 127).
// The range is a high percentile of |x| over the calibration images rather than the maximum: one outlier pixel in
// thousands of images would otherwise stretch the scale of every activation (docs/performance.md, int8, measures
// both on a validation split).
using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace AlexNet.Model;

/// <summary>How activation ranges were calibrated.</summary>
public enum CalibrationMethod
{
    /// <summary>The largest |x| seen.</summary>
    MinMax,

    /// <summary>A percentile of |x| (default 99.99): outliers saturate, the bulk keeps its resolution.</summary>
    Percentile,
}

/// <summary>
/// A net's int8 quantization: the range of each learned layer's input (conv1 … fc8), calibrated on training images.
/// Weight scales are not stored: they follow from the float32 weights (max |w| per output channel / 127).
/// </summary>
/// <param name="Method">How the ranges were found.</param>
/// <param name="Percentile">The percentile of |x| taken (Percentile method).</param>
/// <param name="Images">Calibration images (centre views of training records).</param>
/// <param name="InputRanges">Layer name → the largest |x| represented at its input, beyond which values saturate;
/// and conv1.out, conv2.out: the ReLU outputs that §3.3's LRN reads.</param>
public sealed record Int8Quantization(CalibrationMethod Method, double Percentile, int Images,
    Dictionary<string, float> InputRanges)
{
    /// <summary>conv1's input is the signed, centred image (s8); every later learned layer reads a ReLU's output
    /// (u8).</summary>
    public float InputScale(string layer, bool signedInput) => Range(layer) / (signedInput ? 127f : 255f);

    /// <summary>
    /// "conv1.out": the range of a layer's ReLU output where §3.3's LRN follows. oneDNN keeps that tensor float32;
    /// ONNX's QDQ form quantizes it so that ONNX Runtime can fuse the conv into its int8 QLinearConv.
    /// </summary>
    public const string OutputSuffix = ".out";

    public float Range(string layer) => InputRanges.TryGetValue(layer, out float r) && r > 0 && float.IsFinite(r) ? r
        : throw new ArgumentException(
        $"the int8 calibration has no range for {layer}: quantize the checkpoint again (`alexnet quantize`).");

    /// <summary>Per output channel: max |w| / 127 (1 for an all-zero channel).</summary>
    public static float[] WeightScales(Tensor weight)
    {
        using var _ = no_grad();
        using Tensor flat = weight.detach().flatten(1).abs().amax(1).cpu().to(ScalarType.Float32);
        return flat.data<float>().ToArray().Select(m => m > 0 ? m / 127f : 1f).ToArray();
    }

    /// <summary>
    /// Calibrates: runs the float32 net on <paramref name="batches"/> and records |x| at each learned layer's input.
    /// </summary>
    public static Int8Quantization Calibrate(AlexNetModel model, IEnumerable<Tensor> batches, CalibrationMethod method,
        double percentile = 99.99, int samplesPerLayer = 1 << 21, int seed = 0)
    {
        if (method == CalibrationMethod.Percentile && percentile is <= 50 or > 100)
        {
            throw new ArgumentException($"--percentile takes a value in (50, 100], got {percentile}.");
        }
        var names = model.LayerNames.ToHashSet();
        var samples = new Dictionary<string, Reservoir>();
        var rng = new Random(seed);
        int images = 0;
        model.eval();
        using var _ = no_grad();
        string last = "";
        void Sample(string name, Tensor h)
        {
            if (!samples.TryGetValue(name, out Reservoir? r))
            {
                samples[name] = r = new Reservoir(samplesPerLayer);
            }
            using Tensor a = h.abs().flatten().to(ScalarType.Float32).cpu();
            r.Add(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(a.bytes), rng);
        }
        foreach (Tensor batch in batches)
        {
            using var scope = NewDisposeScope();
            images += (int)batch.shape[0];
            Tensor h = batch;
            foreach ((string name, nn.IModule<Tensor, Tensor> module, bool flatten) in model.Pipeline())
            {
                if (flatten)
                {
                    h = module.call(h).flatten(1);
                    continue;
                }
                if (names.Contains(name) && module is Conv2d or Linear)
                {
                    Sample(name, h);
                    last = name;
                }
                else if (module is LocalResponseNorm)
                {
                    // the ReLU's output §3.3 normalises: where ONNX's QDQ form requantizes
                    Sample(last + OutputSuffix, h);
                }
                h = model.Call(module, h);
            }
        }
        if (images == 0)
        {
            throw new ArgumentException("calibration needs at least one image.");
        }
        var ranges = samples.ToDictionary(kv => kv.Key, kv => kv.Value.Range(method, percentile));
        return new Int8Quantization(method, method == CalibrationMethod.Percentile ? percentile : 100, images, ranges);
    }

    /// <summary>A uniform sample of a layer's |x| (reservoir sampling) and its maximum, exact.</summary>
    private sealed class Reservoir(int capacity)
    {
        private readonly float[] _values = new float[capacity];
        private long _seen;
        private float _max;

        public void Add(ReadOnlySpan<float> values, Random rng)
        {
            foreach (float v in values)
            {
                _max = Math.Max(_max, v);
                if (_seen < _values.Length)
                {
                    _values[_seen] = v;
                }
                else
                {
                    long j = rng.NextInt64(_seen + 1);
                    if (j < _values.Length)
                    {
                        _values[j] = v;
                    }
                }
                _seen++;
            }
        }

        public float Range(CalibrationMethod method, double percentile)
        {
            if (method == CalibrationMethod.MinMax || _seen == 0)
            {
                return _max > 0 ? _max : 1f;
            }
            float[] kept = _values.AsSpan(0, (int)Math.Min(_seen, _values.Length)).ToArray();
            Array.Sort(kept);
            float q = kept[(int)Math.Min(kept.Length - 1, Math.Floor(percentile / 100 * kept.Length))];
            return q > 0 ? q : (_max > 0 ? _max : 1f);
        }
    }
}
