// `alexnet quantize`: a checkpoint made ready for int8 inference (Model/Quantization.cs). The activation ranges are
// calibrated on the centre views (§4.1's test-time cut) of training images spread evenly over the store, never on
// the test split; the float32 weights are kept, and the calibration is written into the model card, so one file
// runs in float32 or int8 (`--precision`) and exports to ONNX either way.
using System;
using System.Collections.Generic;
using System.IO;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using AlexNet.Model.Kernels;
using AlexNet.Training;
using static TorchSharp.torch;

namespace AlexNet.Inference;

public static class Quantizer
{
    /// <summary>
    /// Calibrates <paramref name="checkpoint"/> on <paramref name="images"/> records of <paramref name="store"/> and
    /// writes the result to <paramref name="output"/> (weights, card and calibration; no optimiser state).
    /// </summary>
    public static Int8Quantization Quantize(string checkpoint, string store, string output, int images, CalibrationMethod method, double percentile, int batchSize = 64)
    {
        if (Path.GetFullPath(checkpoint) == Path.GetFullPath(output))
        {
            throw new ArgumentException($"-o {output} is the checkpoint itself: write the quantized net to a new file (it keeps no optimiser state to resume from).");
        }
        if (images < 1)
        {
            throw new ArgumentException($"--calibration-images must be at least 1, got {images}.");
        }
        (AlexNetModel model, RunState state) = Checkpoint.LoadModel(checkpoint, precision: Precision.Fp32, engine: InferenceEngine.Libtorch);
        using (model)
        {
            ModelCard card = state.ModelCard;
            Int8Quantization q;
            using (ImageStore data = ImageStore.Open(store))
            {
                q = Int8Quantization.Calibrate(model, Batches(data, card, Math.Min(images, data.Count), batchSize), method, percentile);
            }
            Checkpoint.Save(output, state with { Card = card with { Int8 = q } }, model, velocity: null);
            return q;
        }
    }

    /// <summary>Centre views of <paramref name="count"/> records spread evenly over the store, in batches.</summary>
    private static IEnumerable<Tensor> Batches(ImageStore store, ModelCard card, int count, int batchSize)
    {
        Augmentation aug = TestPipeline.Augmentation(card, store.Height, store.Width);
        int length = aug.OutputLength;
        for (int start = 0; start < count; start += batchSize)
        {
            int n = Math.Min(batchSize, count - start);
            var input = new float[n * length];
            for (int i = 0; i < n; i++)
            {
                aug.Test(store.Record((int)((long)(start + i) * store.Count / count)), input.AsSpan(i * length, length), View.Centre);
            }
            using Tensor x = tensor(input, new long[] { n, aug.Channels, aug.Crop, aug.Crop });
            yield return x;
        }
    }
}
