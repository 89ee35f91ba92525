using System;
using System.IO;
using AlexNet.Cli;
using Spectre.Console;

namespace AlexNet.Tests.Cli;

/// <summary>
/// Runs `alexnet` in this process and returns what it printed with its exit code, so that a test of a refusal checks
/// its message, not only its code (a code of 2 can come from another error than the one meant). The console is
/// swapped under a lock, one run at a time; lines are not wrapped.
/// </summary>
internal static class CliCapture
{
    private static readonly object Gate = new();

    public static (int Code, string Text) Run(params string[] args)
    {
        lock (Gate)
        {
            var text = new StringWriter();
            IAnsiConsole saved = AnsiConsole.Console;
            TextWriter savedError = Console.Error;
            IAnsiConsole capture = AnsiConsole.Create(new AnsiConsoleSettings
            {
                Out = new AnsiConsoleOutput(text),
                Ansi = AnsiSupport.No,
                ColorSystem = ColorSystemSupport.NoColors,
                Interactive = InteractionSupport.No,
            });
            capture.Profile.Width = 10_000;
            try
            {
                AnsiConsole.Console = capture;
                Console.SetError(text);
                int code = App.Run(args);
                return (code, text.ToString());
            }
            finally
            {
                AnsiConsole.Console = saved;
                Console.SetError(savedError);
            }
        }
    }

    /// <summary>
    /// Runs and asserts the exit code and that the output holds every one of <paramref name="says"/>.
    /// </summary>
    public static void Refuses(int code, string[] args, params string[] says)
    {
        (int got, string text) = Run(args);
        Xunit.Assert.True(got == code, $"exit {got}, not {code}: alexnet {string.Join(" ", args)}\n{text}");
        foreach (string s in says)
        {
            Xunit.Assert.True(text.Contains(s, StringComparison.Ordinal),
                $"'{s}' not in the output of alexnet {string.Join(" ", args)}:\n{text}");
        }
    }
}
