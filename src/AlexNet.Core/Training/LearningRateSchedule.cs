// §5 "The heuristic which we followed was to divide the learning rate by 10 when the validation error
// rate stopped improving with the current learning rate. ... reduced three times prior to termination."
// A small type with no I/O: ask it for ε at the top of every step, feed it each epoch's validation error.
// Besides §5's rule: fixed steps, and Caffe's "poly" policy, which sets ε every step from the step alone
// (so a resumed run follows the same curve) and suits budgets far shorter than the paper's 90 epochs.
using System;
using System.Linq;

namespace AlexNet.Training;

public sealed record ScheduleState(double LearningRate, double BestError, int EpochsSinceBest, int Reductions);

public sealed class LearningRateSchedule
{
    private readonly TrainOptions _o;

    public ScheduleState State { get; private set; }

    public LearningRateSchedule(TrainOptions options, ScheduleState? state = null)
    {
        _o = options;
        State = state ?? new ScheduleState(options.LearningRate, double.PositiveInfinity, 0, 0);
    }

    public double LearningRate => State.LearningRate;

    /// <summary>True when ε changes every step (<see cref="BeginStep"/>) rather than between epochs.</summary>
    public bool PerStep => _o.Schedule == ScheduleKind.Poly;

    /// <summary> ε for 0-based <paramref name="step"/> of a run of <paramref name="totalSteps"/> steps: the poly policy
    /// sets it from the step alone; the others keep the rate of the epoch (set by <see cref="EndEpoch"/>).
    /// </summary>
    public double BeginStep(long step, long totalSteps) => Warm(step, totalSteps, ScheduledRate(step, totalSteps));

    /// <summary>
    /// Not in the paper: over the first WarmupEpochs, ε·(t + 1)/W of the schedule's ε (W the warm-up's steps).
    /// </summary>
    private double Warm(long step, long totalSteps, double rate)
    {
        long warmup = (long)Math.Round(_o.WarmupEpochs * totalSteps / _o.Epochs);
        return step < warmup ? rate * (step + 1) / warmup : rate;
    }

    private double ScheduledRate(long step, long totalSteps)
    {
        if (!PerStep)
        {
            return State.LearningRate;
        }
        double left = Math.Max(0, 1 - (double)step / totalSteps);
        State = State with { LearningRate = _o.LearningRate * Math.Pow(left, _o.Power) };
        return State.LearningRate;
    }

    /// <summary>
    /// Records the validation error of the epoch just finished (1-based <paramref name="epoch"/>); returns the next ε.
    /// </summary>
    public double EndEpoch(int epoch, double validationError)
    {
        ScheduleState s = State;
        if (PerStep)
        {
            State = s with { BestError = Math.Min(s.BestError, validationError) };
            return State.LearningRate;
        }
        if (_o.Schedule == ScheduleKind.Step)
        {
            int drops = _o.StepEpochs.Count(e => e <= epoch);
            State = s with
            {
                LearningRate = _o.LearningRate * Math.Pow(_o.LrFactor, drops),
                Reductions = drops,
                BestError = Math.Min(s.BestError, validationError)
            };
            return State.LearningRate;
        }
        if (validationError < s.BestError)
        {
            State = s with { BestError = validationError, EpochsSinceBest = 0 };
        }
        else if (s.EpochsSinceBest + 1 >= _o.Patience && s.Reductions < _o.MaxReductions)
        {
            State = s with
            {
                LearningRate = s.LearningRate * _o.LrFactor,
                EpochsSinceBest = 0,
                Reductions = s.Reductions + 1,
            };
        }
        else
        {
            State = s with { EpochsSinceBest = s.EpochsSinceBest + 1 };
        }
        return State.LearningRate;
    }
}
