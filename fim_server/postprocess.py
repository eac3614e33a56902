"""Turn the model's raw middle into text worth showing as ghost text.

Pure functions over strings: each rule is one function, `clean_completion` chains them in
the order the completion mode calls for. Everything works on "\\n" line breaks.
"""

from __future__ import annotations

import re
import unicodedata
import zlib

import tree_sitter

from .context import PYTHON, CompletionContext, Mode

# Stop markers end the useful text; anything after them is the model wandering on.
_END_MARKERS = re.compile(r"<eom>|<eos>|<\|endoftext\|>|<\|im_end\|>|<\|eot_id\|>")
# Control tokens of our model and of the common open FIM vocabularies (StarCoder, Qwen).
_SPECIAL_TOKENS = re.compile(
    r"<(?:fim_prefix|fim_suffix|fim_middle|fim_pad|pad|mask)>|<\|fim_\w+\|>"
)
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}
_QUOTES = "'\""
# Empty blocks parse fine in tree-sitter but not in Python: `if x:` with nothing after it.
_PROBLEMS = tree_sitter.Query(PYTHON, "(ERROR) @error (MISSING) @missing (block) @block")


def strip_special_tokens(text: str) -> str:
    """Cut at an end-of-text marker and drop other special tokens and control characters."""
    end = _END_MARKERS.search(text)
    if end is not None:
        text = text[: end.start()]
    text = _SPECIAL_TOKENS.sub("", text)
    text = text.replace("\r\n", "\n")
    return "".join(
        ch for ch in text if ch in "\n\t" or (unicodedata.category(ch) != "Cc" and ch != "\ufffd")
    )


def cut_at_newline(text: str) -> str:
    """A single-line completion ends at its first line break."""
    return text.split("\n", 1)[0]


def _closes_own_opening(kept: str, dropped: str) -> bool:
    """Whether `dropped` closes a bracket or string that `kept` opened.

    Such characters belong to the completion itself; the suffix's copies close what was
    open before the cursor.
    """
    stack: list[str] = []
    for ch in kept:
        if ch in _OPENERS:
            stack.append(ch)
        elif ch in _CLOSERS and stack and stack[-1] == _CLOSERS[ch]:
            stack.pop()
    for ch in dropped:
        if ch in _OPENERS:
            stack.append(ch)
        elif ch in _CLOSERS:
            if stack and stack[-1] == _CLOSERS[ch]:
                return True
        elif ch in _QUOTES and kept.count(ch) % 2 == 1:
            return True
    return False


def drop_suffix_overlap(text: str, line_suffix: str) -> str:
    """Drop the end of a single-line completion that repeats the start of the rest of the line.

    The model often writes the closing `)` or `:` that already follows the cursor. Only the
    longest overlap that closes nothing the completion itself opened is dropped, so
    `foo(|)` + `bar()` stays `bar()` while `foo(|)` + `x)` becomes `x`.
    """
    for k in range(min(len(text), len(line_suffix)), 0, -1):
        if text.endswith(line_suffix[:k]) and not _closes_own_opening(text[:-k], text[-k:]):
            return text[:-k]
    return text


def _first_line_indent(line_prefix: str, first: str) -> int:
    # The first line continues the cursor line, so its indentation includes what was typed
    # before the cursor when that was only whitespace.
    lead = len(first) - len(first.lstrip(" \t"))
    return (len(line_prefix) if not line_prefix.strip() else 0) + lead


def cut_at_dedent(text: str, block_indent: int) -> str:
    """Stop a multi-line completion at the first line (after the first) indented less than
    `block_indent`: from there the model is writing code outside the block it was asked for."""
    lines = text.split("\n")
    for i in range(1, len(lines)):
        line = lines[i]
        if line.strip() and len(line) - len(line.lstrip(" \t")) < block_indent:
            return "\n".join(lines[:i])
    return text


def drop_repeated_suffix_lines(text: str, suffix: str) -> str:
    """Cut a multi-line completion where it starts repeating the code after the cursor.

    Compared line by line, ignoring indentation and blank lines: the completion is cut
    before its first line equal to the first non-blank line of the suffix, when every
    non-blank line from there on matches the suffix's lines in order.
    """
    wanted = [line.strip() for line in suffix.split("\n") if line.strip()]
    if not wanted:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip() != wanted[0]:
            continue
        tail = [t.strip() for t in lines[i:] if t.strip()]
        if tail == wanted[: len(tail)]:
            return "\n".join(lines[:i])
    return text


def is_degenerate(text: str, min_bytes: int = 48, max_ratio: float = 0.25) -> bool:
    """Whether `text` is a model stuck in a loop (`_self_self_self...`).

    Measured by how well it compresses: looping output shrinks to a small fraction of its
    size, while even repetitive real code (a run of `self.x = x` lines, an if-chain) keeps
    over a third of it.
    """
    data = text.encode("utf-8")
    return len(data) >= min_bytes and len(zlib.compress(data, 9)) < max_ratio * len(data)


def strip_trailing_blank(text: str) -> str:
    """Drop trailing whitespace-only lines and trailing spaces of the last line."""
    return text.rstrip()


def syntax_problem_rows(source: str, *, empty_blocks: bool) -> list[int]:
    """Rows where syntax errors, missing tokens and (optionally) empty blocks start."""
    tree = tree_sitter.Parser(PYTHON).parse(source.encode("utf-8"))
    captures = tree_sitter.QueryCursor(_PROBLEMS).captures(tree.root_node)
    return sorted(
        node.start_point.row
        for name, nodes in captures.items()
        for node in nodes
        if name != "block" or (empty_blocks and node.child_count == 0)
    )


def keep_valid_syntax(text: str, ctx: CompletionContext) -> str:
    """`text` if inserting it leaves no syntax problem starting on the lines it spans; for
    multi-line, otherwise its longest leading run of lines that does; else "".

    Only problems that start where the completion lands count, so an unrelated error
    elsewhere in the window (the user is mid-edit) does not block every completion. The
    check runs on the context window, not the whole document, to bound its cost. A block
    opener is fine at the end of a single line (`for x in xs:`: the body comes next), not
    at the end of a block the completion was meant to write.
    """
    first_row = ctx.prefix.count("\n")
    lines = text.split("\n")
    sizes = [len(lines)] if ctx.mode is Mode.SINGLE_LINE else range(len(lines), 0, -1)
    for size in sizes:
        candidate = "\n".join(lines[:size]).rstrip()
        if not candidate.strip():
            continue
        last_row = first_row + candidate.count("\n")
        rows = syntax_problem_rows(
            ctx.prefix + candidate + ctx.suffix, empty_blocks=ctx.mode is Mode.MULTI_LINE
        )
        if not any(first_row <= row <= last_row for row in rows):
            return candidate if size < len(lines) else text
    return ""


def clean_completion(raw: str, ctx: CompletionContext) -> str:
    """Apply the rules for `ctx.mode`; "" when nothing useful remains."""
    if ctx.mode is Mode.NONE:
        return ""
    text = strip_special_tokens(raw)
    if ctx.mode is Mode.SINGLE_LINE:
        text = cut_at_newline(text)
        if not ctx.line_suffix.strip():
            text = text.rstrip()
        text = drop_suffix_overlap(text, ctx.line_suffix)
    else:
        text = cut_at_dedent(text, ctx.block_indent)
        text = drop_repeated_suffix_lines(text, ctx.suffix)
        text = strip_trailing_blank(text)
        first = text.split("\n", 1)[0]
        if first.strip() and _first_line_indent(ctx.line_prefix, first) < ctx.block_indent:
            return ""  # a first line left of the block would not belong to it
    if not text.strip() or is_degenerate(text):
        return ""
    return keep_valid_syntax(text, ctx)
