// ONNX Runtime serving an exported net (OnnxExport.cs) on its own: the preprocessing comes from the model's
// metadata, the softmax is averaged over §4.1's ten views as `alexnet predict` does with our own net.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using AlexNet.Data;
using AlexNet.Evaluation;
using AlexNet.Inference;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace AlexNet.Interop;

public sealed class OnnxClassifier : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _run = new();

    public string Path { get; }
    public Preprocessing Preprocessing { get; }

    /// <summary>The net's model card, where the file was exported by a build that writes one (else null).</summary>
    public ModelCard? Card { get; }
    public string[] ClassNames { get; }
    public string Variant { get; }

    /// <summary>§2's mean image (C×R×R) where the net was trained on it, else empty.</summary>
    public float[] Mean { get; }

    public int Classes => ClassNames.Length;

    /// <param name="threads">ONNX Runtime's intra-op threads (the bench gives it ours).</param>
    /// <param name="optimize">false: ONNX Runtime's graph optimisations off (the tests check both).</param>
    public OnnxClassifier(string path, int threads, bool optimize = true)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"ONNX file {path} does not exist.", path);
        }
        Path = path;
        using var options = new SessionOptions
        {
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = optimize ? GraphOptimizationLevel.ORT_ENABLE_ALL
                : GraphOptimizationLevel.ORT_DISABLE_ALL,
        };
        try
        {
            _session = new InferenceSession(path, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidDataException(
                $"{path}: ONNX Runtime cannot load it ({e.Message.Trim()}). Export it again with `alexnet export`.", e);
        }
        Dictionary<string, string> meta = _session.ModelMetadata.CustomMetadataMap;
        if (!meta.TryGetValue(OnnxExport.PreprocessingKey,
            out string? pre) || !meta.TryGetValue(OnnxExport.ClassesKey, out string? classes))
        {
            _session.Dispose();
            throw new InvalidDataException(
                $"{path} has no {OnnxExport.PreprocessingKey} metadata, so its preprocessing is unknown: export it " +
                "with `alexnet export`.");
        }
        Preprocessing = Json.Parse<Preprocessing>(pre, path);
        ClassNames = Json.Parse<string[]>(classes, path);
        Variant = meta.GetValueOrDefault(OnnxExport.VariantKey, "?");
        Mean = meta.TryGetValue(OnnxExport.MeanKey, out string? mean)
            ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(Convert.FromBase64String(mean)).ToArray()
            : Array.Empty<float>();
        Card = meta.TryGetValue(OnnxExport.CardKey, out string? card) ? Json.Parse<ModelCard>(card, path) with
        {
            MeanImage = Mean,
        } : null;
    }

    /// <summary>Logits, N×classes, of N inputs already preprocessed (N×C×Crop×Crop floats).</summary>
    public float[] Logits(float[] input, int n)
    {
        int c = Preprocessing.Channels, s = Preprocessing.Crop;
        using OrtValue x = OrtValue.CreateTensorValueFromMemory(input, new long[] { n, c, s, s });
        using IDisposableReadOnlyCollection<OrtValue> y = _session.Run(_run, new[] { OnnxExport.InputName },
            new[] { x }, new[] { OnnxExport.OutputName });
        return y[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>The test-time cut of a §2 record, as the net's metadata describes it.</summary>
    public Augmentation TestAugmentation()
    {
        int c = Preprocessing.Channels, r = Preprocessing.RecordSize;
        PcaStats noPca = PcaStats.None(c);
        return new Augmentation(c, r, r, Mean.Length > 0 ? Mean : new float[c * r * r], noPca, Preprocessing.Augment());
    }

    /// <summary>
    /// Image files: the top <paramref name="top"/> classes of each, the softmax averaged over <paramref name="views"/>
    /// (default §4.1's ten).
    /// </summary>
    public List<Prediction> PredictFiles(IReadOnlyList<string> files, int top, IReadOnlyList<View>? views = null) =>
        PredictRecords(files.Select(f => Predictor.LoadRecord(f, Preprocessing.RecordSize,
        Preprocessing.Channels)).ToArray(), files.ToArray(), top, views);

    /// <summary>
    /// Records read by Predictor.LoadRecords at this file's record size, named by <paramref name="sources"/>.
    /// </summary>
    public List<Prediction> PredictRecords(byte[][] records, string[] sources, int top,
        IReadOnlyList<View>? views = null)
    {
        views ??= Evaluator.TenViews;
        if (records.Length == 0)
        {
            return new List<Prediction>();
        }
        Augmentation aug = TestAugmentation();
        int n = records.Length, k = Classes, len = aug.OutputLength;
        var input = new float[n * len];
        // As Evaluator.Probabilities averages our own net's softmax over the views.
        using Tensor sum = zeros(n, k);
        foreach (View view in views)
        {
            for (int i = 0; i < n; i++)
            {
                aug.Test(records[i], input.AsSpan(i * len, len), view);
            }
            using Tensor logits = tensor(Logits(input, n), new long[] { n, k });
            using Tensor p = logits.softmax(1);
            sum.add_(p);
        }
        sum.div_(views.Count);
        float[] all = sum.data<float>().ToArray();
        return Enumerable.Range(0, n).Select(i => new Prediction(sources[i], null, null,
            Predictor.Best(j => all[i * k + j], k, ClassNames, top), records[i], Preprocessing.RecordSize,
            Preprocessing.Channels)).ToList();
    }

    public void Dispose()
    {
        _run.Dispose();
        _session.Dispose();
    }
}
