"""Rule `cut at dedent`: a block ends at its first line indented left of it, unless that line
still belongs to the statement (a clause, a closer of its own, a line inside its own
brackets). Golden: tests/golden/blocks.txt, tests/golden/brackets_block.txt.
"""

from __future__ import annotations

from ..context import CompletionContext
from ..languages import LanguageSpec
from .blocks import BRACE_CONTINUATION, CONTINUATIONS, continues_statement, nesting_depth
from .brackets import scan_brackets
from .rule import Rule, Stream
from .text import CLOSER_TOKEN, CLOSERS, indent_of, language_spec


def _inside_own_brackets(above: str, spec: LanguageSpec | None) -> bool:
    """Whether the completion so far (`above`) leaves a bracket or string of its own open:
    a line after it is inside that expression (a call's arguments, a literal, a string),
    whatever its indentation."""
    scan = scan_brackets(
        above,
        line_comment=spec.line_comment if spec is not None else "",
        char_quotes=spec is None or spec.name != "rust",
    )
    if scan.mismatched:
        return False
    # A brace language's `{` opens a block, which indentation ends like any other.
    braces_nest = spec is None or spec.indented_blocks
    return bool(scan.open_quote) or any(b != "{" or braces_nest for b in scan.open_brackets)


def cut_at_dedent(
    text: str,
    block_indent: int,
    line_indent: int | None = None,
    spec: LanguageSpec | None = None,
    statement_indent: int | None = None,
) -> str:
    """Stop a multi-line completion at the first line (after the first) indented less than
    `block_indent`: from there the model is writing code outside the block it was asked for.

    `line_indent`: the completion continues a statement on a line indented this much (a
    block started mid-line: `items.forEach(|)`). A line back at that indentation that closes
    a bracket or (`spec`) a block the completion opened (`});`, `end)`) still belongs to
    it, as its last line. `statement_indent`: the indentation of the compound statement
    whose body is being written: its clauses at that indentation (`elif`/`else`/`except`/
    `finally`, `} else {`, `} catch (e) {`) still belong to it, and so do their bodies. A
    line inside a bracket or string the completion opened is inside its expression, not
    out of the block.
    """
    lines = text.split("\n")
    for i in range(1, len(lines)):
        line = lines[i]
        indent = indent_of(line)
        if not line.strip() or indent >= block_indent:
            continue
        if indent == statement_indent and continues_statement(line, spec):
            continue
        if _inside_own_brackets("\n".join(lines[:i]), spec):
            continue
        if line_indent is not None and indent >= line_indent:
            first = CLOSER_TOKEN.match(line.lstrip())
            closer_words = spec.block_closers if spec is not None else ()
            above = "\n".join(lines[:i])
            if first is not None and (
                (first.group() in CLOSERS and scan_brackets(above).open_brackets)
                or (first.group() in closer_words and nesting_depth(above, spec) > 0)
            ):
                return "\n".join(lines[: i + 1])
        return "\n".join(lines[:i])
    return text


def _statement_indent(ctx: CompletionContext, spec: LanguageSpec | None) -> int | None:
    """The indentation of the compound statement whose body the block fills: the
    cursor's line when it holds the header, else the nearest line above indented less
    than the block."""
    if spec is None:
        return None
    if ctx.line_prefix.strip():
        return indent_of(ctx.line_prefix)
    for line in reversed(ctx.prefix.split("\n")[:-1]):
        if line.strip() and indent_of(line) < ctx.block_indent:
            return indent_of(line)
    return None


# First words of a brace statement's header that a `} else` / `} catch` may continue.
_CONTINUED_HEADERS = frozenset({"if", "else", "try", "catch", "}"})


def _header_may_continue(ctx: CompletionContext) -> bool:
    """Whether the line that opened the block being written starts an `if`, a `try` or
    one of their clauses (so its `}` may be followed by `else`, `catch`, `finally`)."""
    if ctx.line_prefix.strip():
        header = ctx.line_prefix
    else:
        above = [
            line
            for line in ctx.prefix.split("\n")[:-1]
            if line.strip() and indent_of(line) < ctx.block_indent
        ]
        header = above[-1] if above else ""
    word = CLOSER_TOKEN.match(header.lstrip())
    return word is not None and word.group() in _CONTINUED_HEADERS


def block_cut_at_dedent(text: str, ctx: CompletionContext) -> str:
    """`cut_at_dedent` as `clean_edit` applies it to a block asked for at `ctx` (the
    streaming early stop makes the same cut)."""
    spec = language_spec(ctx)
    mid_line = bool(ctx.line_prefix.strip())
    line_indent = indent_of(ctx.line_prefix) if mid_line else None
    return cut_at_dedent(text, ctx.block_indent, line_indent, spec, _statement_indent(ctx, spec))


def unfinished_line_may_stay(line: str, ctx: CompletionContext) -> bool:
    """Whether `line`, the start of a dedented line of a block being streamed, may still
    turn out to belong to the block once it is whole: a closer line of a block begun
    mid-line (`});`), or the start of a Python clause (`el` of `elif`)."""
    spec = language_spec(ctx)
    indent = indent_of(line)
    word = line.strip()
    if ctx.line_prefix.strip() and indent >= indent_of(ctx.line_prefix):
        closer_words = spec.block_closers if spec is not None else ()
        if word[:1] in CLOSERS or any(w.startswith(word) for w in closer_words):
            return True
    if indent != _statement_indent(ctx, spec):
        return False
    if spec is not None and not spec.indented_blocks:
        # `}` may become `} else {` when the statement is an `if` or a `try`.
        head = word[1:].lstrip() if word.startswith("}") else None
        return (
            head is not None
            and _header_may_continue(ctx)
            and (
                BRACE_CONTINUATION.match(word) is not None
                or any(clause.startswith(head) for clause in ("else", "catch", "finally"))
            )
        )
    return any(clause.startswith(word) or word.startswith(clause) for clause in CONTINUATIONS)


def _stream(text: str, ctx: CompletionContext) -> Stream | None:
    # Whole lines only: a dedented line may still belong to the block (`});` closing it,
    # Python's `else:`), and `en` may be the start of `end` or of `enumerate`.
    lines = text[: text.rfind("\n") + 1]
    if not lines:
        return Stream.WAIT
    if block_cut_at_dedent(lines, ctx).rstrip("\n") != lines.rstrip("\n"):
        return Stream.CUT  # a line that left the block has been written
    last = text[len(lines) :]
    if last.strip() and block_cut_at_dedent(text, ctx) != text:
        # A dedented line has begun (its indent is known): cut unless it may still be one
        # that stays.
        return Stream.WAIT if unfinished_line_may_stay(last, ctx) else Stream.CUT
    return None


CUT_AT_DEDENT = Rule("cut at dedent", block_cut_at_dedent, stream=_stream)
