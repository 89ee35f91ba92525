#:package Microsoft.CodeAnalysis.CSharp@5.12.0
// Run from the repository root: `dotnet run tools/wrap-lines.cs -- src tests --write` (without --write: counts only).
// Wraps C# lines longer than a limit at syntax boundaries: commas of argument/parameter lists (outermost first),
// binary operators, `=>`, member access, `=`; long comments are reflowed and long string literals split with `+`.
// The token stream is checked unchanged (string splits aside) before a file is written.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Text;

int limit = 120;
bool write = args.Contains("--write");
int before = 0, after = 0;
foreach (string file in args.Where(a => !a.StartsWith("--")).SelectMany(a => Directory.Exists(a) ? Directory.EnumerateFiles(a, "*.cs", SearchOption.AllDirectories) : new[] { a })
    .Where(f => !f.Contains("/obj/") && !f.Contains("/bin/")))
{
    string text = File.ReadAllText(file);
    before += Long(text);
    string wrapped = Wrap(text, out bool changedStrings);
    if (!changedStrings && Tokens(text) != Tokens(wrapped))
    {
        Console.Error.WriteLine($"{file}: token stream changed; not written");
        after += Long(text);
        continue;
    }
    if (CSharpSyntaxTree.ParseText(wrapped).GetDiagnostics().Any(d => d.Severity == DiagnosticSeverity.Error))
    {
        Console.Error.WriteLine($"{file}: wrapped text does not parse; not written");
        after += Long(text);
        continue;
    }
    after += Long(wrapped);
    if (write && wrapped != text)
    {
        File.WriteAllText(file, wrapped, new UTF8Encoding(text.StartsWith('\uFEFF')));
    }
}
Console.WriteLine($"lines over {limit}: {before} -> {after}");

int Long(string t) => t.Split('\n').Count(l => l.TrimEnd('\r').Length > limit);

// Trailing commas the initializers gain aside.
string Tokens(string t) => string.Join("\u0001", CSharpSyntaxTree.ParseText(t).GetRoot().DescendantTokens().Select(x => x.Text)).Replace(",\u0001}", "}");

string Wrap(string text, out bool changedStrings)
{
    changedStrings = false;
    for (int round = 0; round < 3000; round++)
    {
        SyntaxTree tree = CSharpSyntaxTree.ParseText(text);
        SourceText source = tree.GetText();
        bool edited = false;
        foreach (TextLine line in source.Lines)
        {
            string s = source.ToString(line.Span);
            if (s.Length <= limit)
            {
                continue;
            }
            string? result = BreakLine(tree, source, line, out bool stringSplit);
            if (Environment.GetEnvironmentVariable("WRAP_DEBUG") is not null && result is not null)
            {
                Console.Error.WriteLine($"round {round} line {line.LineNumber + 1}: {s.Trim()[..Math.Min(60, s.Trim().Length)]}");
            }
            if (result is not null && result != text)
            {
                text = result;
                changedStrings |= stringSplit;
                edited = true;
                break;
            }
        }
        if (!edited)
        {
            return text;
        }
    }
    return text;
}

string? BreakLine(SyntaxTree tree, SourceText source, TextLine line, out bool stringSplit)
{
    stringSplit = false;
    string s = source.ToString(line.Span);
    string indent = s[..(s.Length - s.TrimStart().Length)];
    SyntaxNode root = tree.GetRoot();
    string trimmed = s.TrimStart();
    if (trimmed.StartsWith("#"))
    {
        return null;
    }
    // A whole-line comment: reflow at the last space that fits.
    if (trimmed.StartsWith("//"))
    {
        string prefix = trimmed.StartsWith("///") ? "/// " : "// ";
        int cut = s.LastIndexOf(' ', limit);
        if (cut <= indent.Length + prefix.Length + 10)
        {
            return null;
        }
        string head = s[..cut], tail = s[(cut + 1)..];
        return Replace(source, line.Span, head + "\n" + indent + prefix + tail);
    }
    // A trailing comment that makes a code line long: move it above the line.
    SyntaxTrivia comment = root.FindToken(line.End - 1 > line.Start ? line.End - 1 : line.Start, findInsideTrivia: false)
        .TrailingTrivia.FirstOrDefault(t => t.IsKind(SyntaxKind.SingleLineCommentTrivia) && line.Span.Contains(t.SpanStart));
    if (comment != default && comment.SpanStart - line.Start <= limit + 1)
    {
        string code = source.ToString(TextSpan.FromBounds(line.Start, comment.SpanStart)).TrimEnd();
        if (code.Trim().Length > 0 && !code.TrimEnd().EndsWith(",") && !comment.Token.Parent!.AncestorsAndSelf().Any(a => a is ParameterListSyntax))
        {
            return Replace(source, line.Span, indent + comment.ToString() + "\n" + code);
        }
    }
    // An object or collection initializer held on the line: one member per line, braces on their own lines.
    SyntaxNode? whole = root.DescendantNodes(line.Span).FirstOrDefault(i =>
        (i is InitializerExpressionSyntax { Expressions.Count: > 0 } ie && (ie.Kind() is SyntaxKind.ObjectInitializerExpression or SyntaxKind.CollectionInitializerExpression
            && ie.Parent is BaseObjectCreationExpressionSyntax || ie.Kind() is SyntaxKind.WithInitializerExpression) || i is SwitchExpressionSyntax { Arms.Count: > 0 })
        && i.SpanStart >= line.Start && i.Span.End <= line.End && !i.Ancestors().Any(a => a is InterpolationSyntax)
        && !i.Ancestors().Any(a => a is InitializerExpressionSyntax or SwitchExpressionSyntax && a.SpanStart >= line.Start && a.Span.End <= line.End)
        && !i.Ancestors().TakeWhile(a => a.SpanStart >= line.Start).Any(a => a is BaseObjectCreationExpressionSyntax { Initializer: not null } c && c.Initializer != i
            && c.Span.End <= line.End && c.Initializer.Span.End <= line.End));
    // Candidates: (column of the break, rank, depth, text to put there).
    var candidates = new List<(int Col, int Rank, int Depth, TextSpan Span, string Insert)>();
    int stmtIndent = StatementIndent(root, source, line);
    string cont = new string(' ', stmtIndent + 4);
    foreach (SyntaxToken token in root.DescendantTokens(line.Span))
    {
        if (token.Span.Start < line.Start || token.Span.End > line.End || InsideString(token) || InsideBraces(token, line))
        {
            continue;
        }
        int col = token.Span.End - line.Start;
        int depth = token.Parent!.AncestorsAndSelf().Count(n => n is BaseArgumentListSyntax or BaseParameterListSyntax or InitializerExpressionSyntax
            or TupleExpressionSyntax or CollectionExpressionSyntax or AnonymousObjectCreationExpressionSyntax or LambdaExpressionSyntax);
        SyntaxNode p = token.Parent!;
        // Break after the token: replace the whitespace that follows it.
        TextSpan after = WhitespaceAfter(source, token.Span.End, line.End);
        if (token.IsKind(SyntaxKind.CommaToken) && p is BaseArgumentListSyntax or BaseParameterListSyntax or InitializerExpressionSyntax
                or TupleExpressionSyntax or CollectionExpressionSyntax or AnonymousObjectCreationExpressionSyntax or TypeParameterListSyntax
                or BaseListSyntax or TypeParameterConstraintClauseSyntax or EnumDeclarationSyntax or VariableDeclarationSyntax)
        {
            candidates.Add((col, 0, depth, after, "\n" + cont));
        }
        else if (p is BinaryExpressionSyntax && token.Kind() is SyntaxKind.PlusToken)
        {
            candidates.Add((col, 1, depth, after, "\n" + cont));
        }
        else if (p is BinaryExpressionSyntax && token.Kind() is SyntaxKind.AmpersandAmpersandToken or SyntaxKind.BarBarToken or SyntaxKind.QuestionQuestionToken)
        {
            // Before the operator.
            TextSpan ws = WhitespaceBefore(source, token.Span.Start, line.Start);
            candidates.Add((ws.Start - line.Start, 1, depth, ws, "\n" + cont));
        }
        else if (p is ConditionalExpressionSyntax && token.Kind() is SyntaxKind.QuestionToken or SyntaxKind.ColonToken)
        {
            TextSpan ws = WhitespaceBefore(source, token.Span.Start, line.Start);
            candidates.Add((ws.Start - line.Start, 1, depth, ws, "\n" + cont));
        }
        else if (token.IsKind(SyntaxKind.EqualsGreaterThanToken) && p is ArrowExpressionClauseSyntax { Parent: MemberDeclarationSyntax or AccessorDeclarationSyntax } arrow
            && arrow.Expression.Span.End <= line.End)
        {
            candidates.Add((col, -1, depth, after, "\n" + cont));
        }
        else if (token.IsKind(SyntaxKind.EqualsGreaterThanToken) && p is ArrowExpressionClauseSyntax or LambdaExpressionSyntax or SwitchExpressionArmSyntax)
        {
            candidates.Add((col, 2, depth, after, "\n" + cont));
        }
        else if (token.IsKind(SyntaxKind.DotToken) && p is MemberAccessExpressionSyntax m && m.Expression is InvocationExpressionSyntax)
        {
            TextSpan ws = TextSpan.FromBounds(token.Span.Start, token.Span.Start);
            candidates.Add((token.Span.Start - line.Start, 3, depth, ws, "\n" + cont));
        }
        else if (token.IsKind(SyntaxKind.EqualsToken) && p is EqualsValueClauseSyntax or AssignmentExpressionSyntax)
        {
            candidates.Add((col, 4, depth, after, "\n" + cont));
        }
        else if (token.Kind() is SyntaxKind.OpenParenToken && p is BaseArgumentListSyntax or BaseParameterListSyntax
            && token.GetNextToken().Kind() is not SyntaxKind.CloseParenToken)
        {
            candidates.Add((col, 5, depth, after, "\n" + cont));
        }
    }
    int first = indent.Length + 12;   // a break this early gains nothing
    var fitting = candidates.Where(c => c.Col <= limit && c.Col > first && c.Span.End <= line.End).ToList();
    if (whole is not null && !fitting.Any(c => c.Rank < 0 && cont.Length + (line.End - c.Span.End) <= limit))
    {
        string ind = indent;
        var sb = new StringBuilder("\n" + ind + "{\n");
        IEnumerable<SyntaxNode> members = whole is SwitchExpressionSyntax sw ? sw.Arms : ((InitializerExpressionSyntax)whole).Expressions;
        foreach (SyntaxNode e in members)
        {
            sb.Append(ind).Append("    ").Append(e.ToString().Trim()).Append(",\n");
        }
        sb.Append(ind).Append('}');
        SyntaxToken open = whole is SwitchExpressionSyntax sw2 ? sw2.OpenBraceToken : ((InitializerExpressionSyntax)whole).OpenBraceToken;
        int from = open.GetPreviousToken().Span.End;
        int to = whole is SwitchExpressionSyntax sw3 ? sw3.CloseBraceToken.Span.End : whole.Span.End;
        return Replace(source, TextSpan.FromBounds(from, to), sb.ToString());
    }

    if (fitting.Count > 0)
    {
        // One break that leaves the rest fitting beats several; an expression body's `=>` first, then commas of the
        // outermost list, then the other kinds; the break nearest the limit.
        bool Fits((int Col, int Rank, int Depth, TextSpan Span, string Insert) c) => cont.Length + (line.End - c.Span.End) <= limit;
        // A break that leaves a scrap (a last argument alone) only where nothing else fits.
        bool Scrap((int Col, int Rank, int Depth, TextSpan Span, string Insert) c) => source.ToString(TextSpan.FromBounds(c.Span.End, line.End)).Trim().Length < 30;
        var best = fitting.OrderBy(c => Fits(c) ? 0 : 1).ThenBy(c => Scrap(c) ? 1 : 0).ThenBy(c => c.Rank).ThenBy(c => c.Depth).ThenByDescending(c => c.Col).First();
        return Replace(source, best.Span, best.Insert);
    }
    // A long string literal: split at a space inside its text, joined by +.
    foreach (SyntaxToken token in root.DescendantTokens(line.Span))
    {
        if (token.Span.Start >= line.Start + limit || token.Span.End <= line.Start + limit - 8)
        {
            continue;
        }
        if (token.IsKind(SyntaxKind.StringLiteralToken) && token.Text.StartsWith("\""))
        {
            int from = Math.Min(token.Text.Length - 2, limit - 3 - (token.Span.Start - line.Start));
            int at = from > 1 ? token.Text.LastIndexOf(' ', from) : -1;
            if (at > 1 && at < token.Text.Length - 3)
            {
                stringSplit = true;
                return Replace(source, new TextSpan(token.Span.Start + at + 1, 0), "\" +\n" + cont + "\"");
            }
        }
        if (token.IsKind(SyntaxKind.InterpolatedStringTextToken) && token.Parent!.Parent is InterpolatedStringExpressionSyntax)
        {
            break;   // handled below: the rightmost space of any text part that fits
        }
    }
    // An interpolated string: split at the rightmost space of its text parts that keeps the line within the limit.
    int bestSplit = -1;
    InterpolatedStringExpressionSyntax? owner = null;
    foreach (SyntaxToken token in root.DescendantTokens(line.Span))
    {
        if (!token.IsKind(SyntaxKind.InterpolatedStringTextToken) || token.Parent!.Parent is not InterpolatedStringExpressionSyntax ise
            || ise.StringStartToken.Text != "$\"" || token.Span.Start < line.Start || token.Span.End > line.End || TakesAHandler(ise))
        {
            continue;
        }
        for (int i = token.Span.End - 1; i >= token.Span.Start; i--)
        {
            int col = i + 1 - line.Start;
            if (source[i] == ' ' && col + 3 <= limit && col > first && i + 1 < token.Span.End)
            {
                if (i + 1 > bestSplit)
                {
                    bestSplit = i + 1;
                    owner = ise;
                }
                break;
            }
        }
    }
    if (owner is not null)
    {
        stringSplit = true;
        int split = bestSplit;
        // The second half keeps `$` only where it holds a hole or an escaped brace.
        string rest = source.ToString(TextSpan.FromBounds(split, owner.Span.End));
        bool holes = owner.Contents.OfType<InterpolationSyntax>().Any(i => i.SpanStart > split) || rest.Contains("{{") || rest.Contains("}}");
        return Replace(source, new TextSpan(split, 0), "\" +\n" + cont + (holes ? "$\"" : "\""));
    }
    return null;
}

/// An interpolated string passed where a FormattableString or a handler is taken (Spectre's *Interpolated, string.Create):
/// joined by `+` it would become a string.
static bool TakesAHandler(InterpolatedStringExpressionSyntax s) =>
    s.Parent is ArgumentSyntax { Parent.Parent: InvocationExpressionSyntax inv } && (inv.Expression is MemberAccessExpressionSyntax m ? m.Name.Identifier.Text
        : inv.Expression is IdentifierNameSyntax id ? id.Identifier.Text : "") is var name && (name.EndsWith("Interpolated") || name is "Create" or "Append" or "AppendLine" or "Text")
    || s.Ancestors().Any(a => a is InterpolationSyntax);

/// Inside an initializer, a `with`, a switch expression or a block held on this line, or in the creation an
/// initializer follows: a break there would make dotnet format want the braces on lines of their own.
static bool InsideBraces(SyntaxToken token, TextLine line) => token.Parent!.AncestorsAndSelf().Any(n =>
    n is InitializerExpressionSyntax { RawKind: not (int)SyntaxKind.ArrayInitializerExpression } or SwitchExpressionSyntax or BlockSyntax or WithExpressionSyntax
        or BaseObjectCreationExpressionSyntax { Initializer: not null }
    ? n.SpanStart >= line.Start && n.Span.End <= line.End || n is WithExpressionSyntax or BaseObjectCreationExpressionSyntax && n.Span.End > line.End && n.SpanStart >= line.Start
    : false);

static bool InsideString(SyntaxToken token) => token.Parent!.AncestorsAndSelf().Any(n => n is InterpolationSyntax);

static TextSpan WhitespaceAfter(SourceText source, int start, int end)
{
    int i = start;
    while (i < end && source[i] == ' ')
    {
        i++;
    }
    return TextSpan.FromBounds(start, i);
}

static TextSpan WhitespaceBefore(SourceText source, int end, int start)
{
    int i = end;
    while (i > start && source[i - 1] == ' ')
    {
        i--;
    }
    return TextSpan.FromBounds(i, end);
}

/// The indentation of the line where the statement, member or argument holding the line's first token begins.
static int StatementIndent(SyntaxNode root, SourceText source, TextLine line)
{
    SyntaxToken firstToken = root.FindToken(line.Start + (source.ToString(line.Span).Length - source.ToString(line.Span).TrimStart().Length));
    SyntaxNode? n = firstToken.Parent;
    while (n is not null && n is not StatementSyntax and not MemberDeclarationSyntax and not SwitchExpressionArmSyntax and not AccessorDeclarationSyntax
        and not AttributeListSyntax && n.Parent is not InitializerExpressionSyntax)
    {
        n = n.Parent;
    }
    // A block-bodied member or statement: its own first line.
    int pos = n?.GetFirstToken().SpanStart ?? line.Start;
    // Skip leading attributes of a member: its indentation is the same line's anyway.
    TextLine l = source.Lines.GetLineFromPosition(pos);
    string text = source.ToString(l.Span);
    return text.Length - text.TrimStart().Length;
}

static string Replace(SourceText source, TextSpan span, string with) => source.WithChanges(new TextChange(span, with)).ToString();
