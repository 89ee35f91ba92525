// What the trainer asks of the processes it runs among, as PyTorch's DDP asks of its process group: one process is a
// group of one that does nothing; DataParallel (MPI) is the other. The trainer calls these in every case and names
// no strategy; where the group is chosen (MachineOptions.Parallel) is the one place that knows.
using System;
using System.Collections.Generic;
using AlexNet.Model;
using TorchSharp.Modules;

namespace AlexNet.Distributed;

public interface IProcessGroup
{
    int Rank { get; }
    int Ranks { get; }

    /// <summary>Rank 0 (or the only process): the one that writes the run folder and reports.</summary>
    bool IsLeader { get; }

    /// <summary>Stops every rank with a message naming <paramref name="what"/> when the ranks' texts differ.</summary>
    void Agree(string what, string text);

    /// <summary>Rank 0's weights everywhere.</summary>
    void Broadcast(AlexNetModel model);

    /// <summary>∂L/∂w averaged over the ranks, each weighted by its <paramref name="share"/> of the batch.</summary>
    void AverageGradients(IReadOnlyList<Parameter> parameters, double share);

    /// <summary>Each value summed over the ranks, in place.</summary>
    void Sum(Span<double> values);

    /// <summary>
    /// Whether any rank's <paramref name="flag"/> is set: a stop seen by one stops all at the same step.
    /// </summary>
    bool Any(bool flag);

    int Max(int value);
}

/// <summary>One process: every collective is the identity.</summary>
public sealed class LocalGroup : IProcessGroup
{
    public static readonly LocalGroup Instance = new();

    private LocalGroup()
    {
    }

    public int Rank => 0;
    public int Ranks => 1;
    public bool IsLeader => true;

    public void Agree(string what, string text)
    {
    }

    public void Broadcast(AlexNetModel model)
    {
    }

    public void AverageGradients(IReadOnlyList<Parameter> parameters, double share)
    {
    }

    public void Sum(Span<double> values)
    {
    }

    public bool Any(bool flag) => flag;

    public int Max(int value) => value;
}
