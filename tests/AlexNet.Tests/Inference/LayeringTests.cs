using System;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Reflection.Emit;
using AlexNet.Inference;
using Xunit;

namespace AlexNet.Tests.Inference;

/// <summary>
/// Loading a net for inference needs nothing from Training/: every method reachable from Classifier.Load and
/// ModelFile.Load, followed through their IL within the library, names no type of AlexNet.Training.
/// </summary>
public class LayeringTests
{
    private static readonly Dictionary<short, OpCode> OpCodesByValue =
        typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    [Theory]
    [InlineData(nameof(Classifier))]
    [InlineData(nameof(ModelFile))]
    [InlineData(nameof(Quantizer))]
    public void LoadingForInferenceReachesNothingInTraining(string type)
    {
        Assembly core = typeof(ModelFile).Assembly;
        Type start = core.GetType("AlexNet.Inference." + type)!;
        var seen = new HashSet<MethodBase>();
        var queue = new Queue<MethodBase>(start.GetMethods(BindingFlags.Public | BindingFlags.Static).Where(m =>
            m.Name is "Load" or "Quantize"));
        Assert.NotEmpty(queue);
        var offenders = new SortedSet<string>();
        while (queue.TryDequeue(out MethodBase? method))
        {
            if (!seen.Add(method) || method.Module.Assembly != core)
            {
                continue;
            }
            foreach (MemberInfo member in Referenced(method))
            {
                Type? owner = member as Type ?? member.DeclaringType;
                if (owner?.Namespace == "AlexNet.Training")
                {
                    offenders.Add($"{method.DeclaringType?.Name}.{method.Name} → {owner.Name}.{member.Name}");
                }
                if (member is MethodBase callee)
                {
                    queue.Enqueue(callee);
                }
            }
        }
        Assert.True(seen.Count > 50, $"only {seen.Count} methods were followed: the walk is not reading the IL");
        Assert.Empty(offenders);
    }

    /// <summary>The methods, fields and types a method's IL names (calls, object creation, delegates,
    /// tokens).</summary>
    private static IEnumerable<MemberInfo> Referenced(MethodBase method)
    {
        byte[]? il = method.GetMethodBody()?.GetILAsByteArray();
        if (il is null)
        {
            yield break;
        }
        Type[]? typeArgs = method.DeclaringType is { IsGenericType: true } t ? t.GetGenericArguments() : null;
        Type[]? methodArgs = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (int i = 0; i < il.Length;)
        {
            short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
            OpCode op = OpCodesByValue[value];
            i += op.Size;
            int operand = op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
            if (op.OperandType is OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok)
            {
                MemberInfo? member = null;
                try
                {
                    member = method.Module.ResolveMember(BitConverter.ToInt32(il, i), typeArgs, methodArgs);
                }
                catch (ArgumentException)
                {
                    // a token of an open generic context the walk does not track
                }
                if (member is not null)
                {
                    yield return member;
                }
            }
            i += operand;
        }
    }
}
