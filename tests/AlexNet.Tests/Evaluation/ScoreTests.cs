using System;
using System.Linq;
using AlexNet.Evaluation;
using Xunit;
using static TorchSharp.torch;

namespace AlexNet.Tests.Evaluation;

/// <summary>
/// §6's numbers from hand-made probabilities: loss, top-1/top-5 error, per-class accuracy, most-confused pairs.
/// </summary>
public class ScoreTests
{
    [Fact]
    public void ScoreMatchesAHandComputation()
    {
        // 6 classes, 4 images. Rows are probabilities; the label's rank decides top-1/top-5.
        float[,] p =
        {
            { 0.50f, 0.20f, 0.10f, 0.10f, 0.05f, 0.05f },   // label 0: rank 1
            { 0.40f, 0.30f, 0.10f, 0.10f, 0.05f, 0.05f },   // label 1: rank 2 (top-5 hit, top-1 miss; predicted 0)
            { 0.30f, 0.25f, 0.20f, 0.15f, 0.09f, 0.01f },   // label 5: rank 6 (both miss; predicted 0)
            { 0.05f, 0.05f, 0.10f, 0.70f, 0.05f, 0.05f },   // label 3: rank 1
        };
        int[] labels = { 0, 1, 5, 3 };
        using Tensor probs = tensor(p);
        EvalResult r = Evaluator.Score(probs, labels, new[] { "a", "b", "c", "d", "e", "f" }, "centre", 1);
        Assert.Equal(4, r.Count);
        Assert.Equal(0.5, r.Top1Error, 12);    // images 1 and 2 miss
        Assert.Equal(0.25, r.Top5Error, 12);   // image 2 misses
        double loss = -(Math.Log(0.5) + Math.Log(0.3) + Math.Log(0.01) + Math.Log(0.7)) / 4;
        Assert.Equal(loss, r.Loss, 5);
        Assert.Equal(1.0, r.PerClassAccuracy[0]);
        Assert.Equal(0.0, r.PerClassAccuracy[1]);
        Assert.True(double.IsNaN(r.PerClassAccuracy[2]));   // no image of class c
        Assert.Equal(1.0, r.PerClassAccuracy[3]);
        Assert.Equal(0.0, r.PerClassAccuracy[5]);
        // Two confusions of one image each, ordered by count then by true class: b → a, then f → a.
        Assert.Equal(new[] { ("b", "a", 1), ("f", "a", 1) },
            r.MostConfused.Select(c => (c.TrueName, c.PredictedName, c.Count)));
    }

    [Fact]
    public void MostConfusedPairsAreCountedAndRankedByCount()
    {
        // Three images of class 0 predicted 2, one predicted 1, one of class 1 predicted 0.
        int[] labels = { 0, 0, 0, 0, 1 };
        int[] predicted = { 2, 2, 2, 1, 0 };
        var p = new float[5, 3];
        for (int i = 0; i < 5; i++)
        {
            p[i, predicted[i]] = 1f;
        }
        using Tensor probs = tensor(p);
        EvalResult r = Evaluator.Score(probs, labels, new[] { "x", "y", "z" }, "centre", 1);
        Assert.Equal(1.0, r.Top1Error, 12);
        Assert.Equal(0.0, r.Top5Error, 12);   // 3 classes: every label is in the "top 5"
        Assert.Equal((0, 2, 3), (r.MostConfused[0].True, r.MostConfused[0].Predicted, r.MostConfused[0].Count));
        Assert.Equal(3, r.MostConfused.Length);
    }
}
