using System;
using System.Globalization;
using AlexNet.Training;
using Spectre.Console;

namespace AlexNet.Cli;

/// <summary>Draws training progress: a live bar on a terminal, one line per log interval otherwise.</summary>
internal sealed class ConsoleProgress : ITrainingProgress
{
    private ProgressTask? _task;
    private ProgressContext? _context;

    public void Attach(ProgressContext context) => _context = context;

    public static string Pct(double v) => (100 * v).ToString("F2", CultureInfo.InvariantCulture) + "%";

    public void EpochStarted(int epoch, int epochs, int stepsPerEpoch, int stepsDone)
    {
        if (_context is not null)
        {
            _task?.StopTask();
            _task = _context.AddTask($"epoch {epoch}/{epochs}", maxValue: stepsPerEpoch);
            _task.Value = stepsDone;
        }
    }

    public void Step(StepMetrics m)
    {
        if (_task is not null)
        {
            _task.Value = m.StepInEpoch;
            _task.Description = string.Create(CultureInfo.InvariantCulture,
                $"epoch {m.Epoch} loss {m.Loss:F3} top-1 err {100 * m.Top1Error:F1}% ε {m.LearningRate:G3} {m.ImagesPerSecond:F0} img/s");
        }
        else
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"epoch {m.Epoch} step {m.Step} ({m.StepInEpoch}/{m.StepsPerEpoch}) loss {m.Loss:F4} top-1 err {100 * m.Top1Error:F2}% ε {m.LearningRate:G3} {m.ImagesPerSecond:F0} img/s"));
        }
    }

    public void EpochEnded(EpochMetrics m)
    {
        string line = string.Create(CultureInfo.InvariantCulture,
            $"epoch {m.Epoch}: train loss {m.TrainLoss:F4}, top-1/top-5 " +
            $"error {Pct(m.TrainTop1Error)}/{Pct(m.TrainTop5Error)}; " +
            $"val loss {m.ValLoss:F4}, top-1/top-5 error {Pct(m.ValTop1Error)}/{Pct(m.ValTop5Error)}; " +
            $"ε {m.LearningRate:G3}; {m.ImagesPerSecond:F0} img/s; {m.Seconds:F0} s");
        if (m.EmaValTop1Error is double e1 && m.EmaValTop5Error is double e5)
        {
            line += $"; weight average (--ema) top-1/top-5 {Pct(e1)}/{Pct(e5)}";
        }
        if (_task is not null)
        {
            _task.Value = _task.MaxValue;
            _task.StopTask();
            _task = null;
            AnsiConsole.MarkupLine(Markup.Escape(line));
        }
        else
        {
            Console.WriteLine(line);
        }
    }

    public void Message(string text)
    {
        if (_context is not null)
        {
            AnsiConsole.MarkupLine(Markup.Escape(text));
        }
        else
        {
            Console.WriteLine(text);
        }
    }

    /// <summary>Runs <paramref name="body"/> under a live progress display when the console is interactive.</summary>
    public T Run<T>(Func<T> body)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive)
        {
            return body();
        }
        return AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
            new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                Attach(ctx);
                return body();
            });
    }
}
