// Not in the paper: a run in TensorBoard, the viewer people already use. TorchSharp's own SummaryWriter writes
// the event files: every metrics.jsonl line as scalars while the run trains (it wraps the run's progress
// reporter, so the trainer knows nothing of it), and at the end the conv1 kernels (Figure 3) and a few
// predictions (Figure 4) as images.
using System.IO;
using AlexNet.Training;
using TorchSharp.Modules;
using static TorchSharp.torch.utils;

namespace AlexNet.Analysis;

public sealed class TensorBoardLog(string directory, ITrainingProgress inner) : ITrainingProgress
{
    private readonly SummaryWriter _writer = tensorboard.SummaryWriter(directory);

    public string Directory => _writer.LogDir;

    public void EpochStarted(int epoch, int epochs, int stepsPerEpoch, int stepsDone) =>
        inner.EpochStarted(epoch, epochs, stepsPerEpoch, stepsDone);

    // Step and EpochEnded repeat add_scalar on purpose: one line per TensorBoard tag, so a reader finds each curve's
    // tag by searching for it.
    public void Step(StepMetrics m)
    {
        int step = (int)m.Step;
        _writer.add_scalar("train/loss", (float)m.Loss, step);
        _writer.add_scalar("train/top1_error", (float)m.Top1Error, step);
        _writer.add_scalar("train/top5_error", (float)m.Top5Error, step);
        _writer.add_scalar("lr", (float)m.LearningRate, step);
        _writer.add_scalar("images_per_second", (float)m.ImagesPerSecond, step);
        inner.Step(m);
    }

    public void EpochEnded(EpochMetrics m)
    {
        int step = (int)m.Step;
        _writer.add_scalar("epoch/train_loss", (float)m.TrainLoss, step);
        _writer.add_scalar("epoch/train_top1_error", (float)m.TrainTop1Error, step);
        _writer.add_scalar("val/loss", (float)m.ValLoss, step);
        _writer.add_scalar("val/top1_error", (float)m.ValTop1Error, step);
        _writer.add_scalar("val/top5_error", (float)m.ValTop5Error, step);
        if (m.EmaValTop1Error is double ema)
        {
            _writer.add_scalar("val/ema_top1_error", (float)ema, step);
        }
        inner.EpochEnded(m);
    }

    public void Message(string text) => inner.Message(text);

    /// <summary>The run's pictures (kernels.png, predictions.png as RunReport draws them), where they exist.</summary>
    public void AddPictures(string runDir, long step)
    {
        foreach ((string tag, string file) in new[] { ("conv1_kernels", "kernels.png"),
            ("predictions", "predictions.png") })
        {
            string path = Path.Combine(runDir, file);
            if (File.Exists(path))
            {
                _writer.add_img(tag, path, (int)step);
            }
        }
    }
}
