// How one training step runs, behind one interface: the net alone (§5's step as it reads), its replicas (the batch
// split over copies of the net on their own threads, Replicas.cs), or §3.2's two towers (TowerNet). The trainer
// asks an engine for a step, for the net's outputs when it validates, and to save or load a checkpoint; only
// StepEngine.For knows which engine runs. Whatever the engine, a checkpoint is the grouped net's, interchangeable.
using System;
using System.Linq;
using AlexNet.Model;
using static TorchSharp.torch;

namespace AlexNet.Training;

/// <summary>
/// What one step needs besides the batch (TrainingStep.Run's parameters).
/// </summary>
/// <param name="ReduceGradients">Averages ∂L/∂w over the process group between the backward pass and the
/// update.</param>
public sealed record StepSettings(double LabelSmoothing, double ClipGradNorm, Action ReduceGradients);

public interface IStepEngine : IDisposable
{
    /// <summary>What trains forward and backward (the towers, or the grouped net).</summary>
    nn.Module<Tensor, Tensor> Net { get; }

    /// <summary>
    /// One update on (inputs, labels); the loss and the logits come back detached, in the caller's scope.
    /// </summary>
    (Tensor Loss, Tensor Logits) Step(PaperSgd sgd, Tensor inputs, Tensor labels, StepSettings settings, Mix? mix);

    /// <summary>
    /// The grouped net's outputs for <paramref name="model"/> on <paramref name="inputs"/> in evaluation mode, or null
    /// where the model's own forward is the way (Evaluator's default).
    /// </summary>
    Func<AlexNetModel, Tensor, Tensor>? Forward(AlexNetModel model);

    /// <summary>Brings what was learned into the grouped net (before it validates or is saved).</summary>
    void Publish(AlexNetModel model);

    /// <summary>last.ckpt from the grouped net and the optimiser's momentum, in the grouped net's layout.</summary>
    void Save(string path, RunState state, AlexNetModel model, PaperSgd sgd, WeightEma? ema);

    /// <summary>
    /// The weights and momentum of a checkpoint into the grouped net and the optimiser (and the engine's own copies).
    /// </summary>
    void Load(string path, RunState saved, AlexNetModel model, PaperSgd sgd, WeightEma? ema);
}

public static class StepEngine
{
    /// <summary>The one place a strategy is chosen: §3.2's towers, replicas of the net, or the net alone.</summary>
    public static IStepEngine For(AlexNetModel model, TowerNet? towers, int replicas, int threads) =>
        towers is not null ? new Towers(towers)
        : replicas > 1 ? new ReplicaSteps(new Replicas(model, replicas, threads))
        : new Single(model);

    /// <summary>The net alone: TrainingStep.Run.</summary>
    private sealed class Single(AlexNetModel model) : IStepEngine
    {
        public nn.Module<Tensor, Tensor> Net => model;

        public (Tensor Loss, Tensor Logits) Step(PaperSgd sgd, Tensor inputs,
            Tensor labels, StepSettings s, Mix? mix) =>
            TrainingStep.Run(model, sgd, inputs, labels, s.LabelSmoothing, s.ClipGradNorm, s.ReduceGradients, mix);

        public Func<AlexNetModel, Tensor, Tensor>? Forward(AlexNetModel m) => null;

        public void Publish(AlexNetModel m)
        {
        }

        public void Save(string path, RunState state, AlexNetModel m, PaperSgd sgd, WeightEma? ema) =>
            Checkpoint.Save(path, state, m, sgd, ema);

        public void Load(string path, RunState saved, AlexNetModel m, PaperSgd sgd, WeightEma? ema) =>
            Checkpoint.LoadInto(path, saved, m, sgd, ema);

        public void Dispose()
        {
        }
    }

    /// <summary>
    /// Not in the paper: the batch split over replicas of the net (--replicas), which also validate on their lanes.
    /// </summary>
    private sealed class ReplicaSteps(Replicas replicas) : IStepEngine
    {
        public nn.Module<Tensor, Tensor> Net => replicas.Net;

        public (Tensor Loss, Tensor Logits) Step(PaperSgd sgd, Tensor inputs,
            Tensor labels, StepSettings s, Mix? mix) =>
            replicas.Run(sgd, inputs, labels, s.LabelSmoothing, s.ClipGradNorm, s.ReduceGradients, mix);

        // The net itself on the replicas' lanes, as it trains (the weight average has no replicas).
        public Func<AlexNetModel, Tensor, Tensor>? Forward(AlexNetModel m) =>
            m == replicas.Net ? (_, x) => replicas.Infer(x) : null;

        public void Publish(AlexNetModel m)
        {
        }

        public void Save(string path, RunState state, AlexNetModel m, PaperSgd sgd, WeightEma? ema) =>
            Checkpoint.Save(path, state, m, sgd, ema);

        public void Load(string path, RunState saved, AlexNetModel m, PaperSgd sgd, WeightEma? ema) =>
            Checkpoint.LoadInto(path, saved, m, sgd, ema);

        public void Dispose() => replicas.Dispose();
    }

    /// <summary>
    /// §3.2's two towers: they train (the optimiser holds their parameters); the grouped net validates and is saved.
    /// </summary>
    private sealed class Towers(TowerNet towers) : IStepEngine
    {
        public nn.Module<Tensor, Tensor> Net => towers;

        public (Tensor Loss, Tensor Logits) Step(PaperSgd sgd, Tensor inputs,
            Tensor labels, StepSettings s, Mix? mix) =>
            TrainingStep.Run(towers, sgd, inputs, labels, s.LabelSmoothing, s.ClipGradNorm, s.ReduceGradients, mix);

        public Func<AlexNetModel, Tensor, Tensor>? Forward(AlexNetModel m) => null;

        public void Publish(AlexNetModel m) => towers.WriteInto(m);

        public void Save(string path, RunState state, AlexNetModel m, PaperSgd sgd, WeightEma? ema)
        {
            towers.WriteInto(m);
            // the grouped net's layout: the checkpoint is interchangeable
            Tensor[] velocity = towers.Join(m, sgd.Velocity);
            try
            {
                Checkpoint.Save(path, state, m, velocity, ema);
            }
            finally
            {
                Array.ForEach(velocity, v => v.Dispose());
            }
        }

        public void Load(string path, RunState saved, AlexNetModel m, PaperSgd sgd, WeightEma? ema)
        {
            // The checkpoint is the grouped net's: its weights and momentum are read in that layout, then split to the
            // towers.
            Tensor[] velocity = m.parameters().Select(p => zeros_like(p).DetachFromDisposeScope()).ToArray();
            try
            {
                Checkpoint.LoadInto(path, saved, m, velocity, ema);
                towers.ReadFrom(m);
                towers.SplitInto(m, velocity, sgd.Velocity);
            }
            finally
            {
                Array.ForEach(velocity, v => v.Dispose());
            }
        }

        public void Dispose() => towers.Dispose();
    }
}
