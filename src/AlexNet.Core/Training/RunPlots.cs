// Training curves of a run as PNG (ScottPlot), redrawn from metrics.jsonl after every epoch.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace AlexNet.Training;

public static class RunPlots
{
    /// <summary>A run's metrics.jsonl as columns; EpochSeconds: each epoch's time as logged.</summary>
    public sealed record Series(List<double> Steps, List<double> Loss, List<double> StepTop1, List<double> Epochs,
        List<double> TrainTop1, List<double> ValTop1,
        List<double> TrainTop5, List<double> ValTop5, List<double> Lr, List<double> EpochSeconds);

    public static Series Read(string runDir)
    {
        var s = new Series(new(), new(), new(), new(), new(), new(), new(), new(), new(), new());
        foreach (MetricsRecord record in MetricsLog.Read(runDir))
        {
            switch (record)
            {
                case StepMetrics m:
                    s.Steps.Add(m.Step);
                    s.Loss.Add(m.Loss);
                    s.StepTop1.Add(m.Top1Error);
                    break;
                case EpochMetrics m:
                    s.Epochs.Add(m.Epoch);
                    s.TrainTop1.Add(100 * m.TrainTop1Error);
                    s.ValTop1.Add(100 * m.ValTop1Error);
                    s.TrainTop5.Add(100 * m.TrainTop5Error);
                    s.ValTop5.Add(100 * m.ValTop5Error);
                    s.Lr.Add(m.LearningRate);
                    s.EpochSeconds.Add(m.Seconds);
                    break;
            }
        }
        return s;
    }

    /// <summary>Writes loss.png, error.png and lr.png into the run folder; returns their paths.</summary>
    public static string[] Write(string runDir)
    {
        Series s = Read(runDir);
        var written = new List<string>();
        if (s.Steps.Count > 1)
        {
            var plt = new ScottPlot.Plot();
            plt.Add.Scatter(s.Steps.ToArray(), s.Loss.ToArray()).LegendText = "training loss";
            plt.Title("Training loss (softmax cross-entropy)");
            plt.XLabel("step");
            plt.YLabel("loss");
            written.Add(Save(plt, runDir, "loss.png"));
        }
        if (s.Epochs.Count > 0)
        {
            var plt = new ScottPlot.Plot();
            double[] x = s.Epochs.ToArray();
            plt.Add.Scatter(x, s.TrainTop1.ToArray()).LegendText = "train top-1";
            plt.Add.Scatter(x, s.ValTop1.ToArray()).LegendText = "val top-1";
            plt.Add.Scatter(x, s.TrainTop5.ToArray()).LegendText = "train top-5";
            plt.Add.Scatter(x, s.ValTop5.ToArray()).LegendText = "val top-5";
            plt.ShowLegend();
            plt.Title("Error rates");
            plt.XLabel("epoch");
            plt.YLabel("error (%)");
            written.Add(Save(plt, runDir, "error.png"));

            var lr = new ScottPlot.Plot();
            lr.Add.Scatter(x, s.Lr.ToArray());
            lr.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
            {
                LabelFormatter = v => v.ToString("G3", System.Globalization.CultureInfo.InvariantCulture),
            };
            lr.Title("Learning rate ε (§5)");
            lr.XLabel("epoch");
            lr.YLabel("ε");
            written.Add(Save(lr, runDir, "lr.png"));
        }
        return written.ToArray();
    }

    private static string Save(ScottPlot.Plot plot, string dir, string name)
    {
        string path = Path.Combine(dir, name);
        plot.SavePng(path, 800, 500);
        return path;
    }
}
