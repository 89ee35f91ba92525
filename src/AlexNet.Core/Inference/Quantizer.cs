// `alexnet quantize`: a checkpoint made ready for int8 inference (Model/Quantization.cs). The activation ranges are
// calibrated on the centre views (§4.1's test-time cut) of training images spread evenly over the store, never on
// the test split; the float32 weights are kept, and the calibration is written into the model card, so one file
// runs in float32 or int8 (`--precision`) and exports to ONNX either way.
using System;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Model;
using AlexNet.Model.Kernels;

namespace AlexNet.Inference;

public static class Quantizer
{
    /// <summary>
    /// Calibrates <paramref name="checkpoint"/> on <paramref name="images"/> records of <paramref name="store"/> and
    /// writes the result to <paramref name="output"/>: the same file with the calibration in its card.
    /// </summary>
    public static Int8Quantization Quantize(string checkpoint, string store, string output, int images,
        CalibrationMethod method, double percentile, int batchSize = 64)
    {
        if (Path.GetFullPath(checkpoint) == Path.GetFullPath(output))
        {
            throw new ArgumentException(
                $"-o {output} is the checkpoint itself: write the quantized net to a new file, so the checkpoint " +
                    $"stays as it was.");
        }
        if (images < 1)
        {
            throw new ArgumentException($"--calibration-images must be at least 1, got {images}.");
        }
        (AlexNetModel model, ModelCard card) = ModelFile.Load(checkpoint, precision: Precision.Fp32,
            engine: InferenceEngine.Libtorch);
        using (model)
        {
            Int8Quantization q;
            using (ImageStore data = ImageStore.Open(store))
            {
                // Centre views of records spread evenly over the store, through the test loader.
                int count = Math.Min(images, data.Count);
                int[] records = Enumerable.Range(0, count).Select(i => (int)((long)i * data.Count / count)).ToArray();
                var views = new StoreViews(data, TestPipeline.Augmentation(card, data.Height, data.Width), batchSize,
                    records: records);
                q = Int8Quantization.Calibrate(model, views.Pass(View.Centre, default).Select(b => b.Inputs), method,
                    percentile);
            }
            ModelFile.WriteWithCard(checkpoint, output, card with { Int8 = q });
            return q;
        }
    }
}
