"""Turn the model's raw middle into text worth showing as ghost text.

Pure functions over strings: each rule is one function, `clean_completion` chains them in
the order the completion mode calls for. Everything works on "\\n" line breaks.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass
from functools import cache

import tree_sitter

from .context import CompletionContext, Literal, Mode
from .languages import LANGUAGES, LanguageSpec, parse

# Stop markers end the useful text; anything after them is the model wandering on.
_END_MARKERS = re.compile(r"<eom>|<eos>|<\|endoftext\|>|<\|im_end\|>|<\|eot_id\|>")
# Control tokens of our model and of the common open FIM vocabularies (StarCoder, Qwen).
_SPECIAL_TOKENS = re.compile(
    r"<(?:fim_prefix|fim_suffix|fim_middle|fim_pad|pad|mask)>|<\|fim_\w+\|>"
)
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}
_QUOTES = "'\"`"
# The rest of a line that only closes what is open: `)`, `")`, `]);`.
_ONLY_CLOSERS = re.compile(r"\s*[)\]}\"'`]+[;,:]?\s*")


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


def match_indentation(text: str, unit: str) -> str:
    """Re-indent the lines after the first in the file's style: tabs where the file uses
    tabs, spaces where it uses spaces (a model trained mostly on one style drifts to it)."""
    lines = text.split("\n")
    if len(lines) < 2:
        return text
    if unit == "\t":
        widths = [
            len(line) - len(line.lstrip(" "))
            for line in lines[1:]
            if line.strip() and line.startswith(" ")
        ]
        if not widths:
            return text
        step = 2 if any(w % 4 for w in widths) and all(w % 2 == 0 for w in widths) else 4
        for i in range(1, len(lines)):
            line = lines[i]
            lead = line[: len(line) - len(line.lstrip(" \t"))]
            if " " in lead:
                width = len(lead.expandtabs(step))
                lines[i] = "\t" * (width // step) + " " * (width % step) + line[len(lead) :]
    else:
        for i in range(1, len(lines)):
            line = lines[i]
            lead = line[: len(line) - len(line.lstrip(" \t"))]
            if "\t" in lead:
                lines[i] = lead.expandtabs(len(unit)) + line[len(lead) :]
    return "\n".join(lines)


_NESTING_TOKEN = re.compile(r"[A-Za-z_]\w*|[{}]|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'")


def cut_at_block_exit(text: str, spec: LanguageSpec) -> str:
    """Stop a multi-line completion where it closes the block it was asked to fill: a `}`
    (or `end`, `fi`, `done`, ...) with no opening of its own in the completion belongs to
    the enclosing code, which the suffix already has."""
    if spec.indented_blocks:
        return text
    openers, closers = spec.nesting_words
    depth = 0
    for match in _NESTING_TOKEN.finditer(text):
        token = match.group()
        if token == "{" or token in openers:
            depth += 1
        elif token == "}" or token in closers:
            depth -= 1
            if depth < 0:
                cut = text[: match.start()]
                # Keep whole lines: cut before the closer's line if only blanks precede it.
                line_start = cut.rfind("\n") + 1
                if not cut[line_start:].strip():
                    cut = cut[:line_start]
                return cut.rstrip()
    return text


@dataclass(frozen=True)
class Edit:
    """What to show: `text` replaces the `replace_chars` characters after the cursor."""

    text: str
    replace_chars: int = 0


def balance_closers(text: str, line_suffix: str, in_string: bool) -> Edit | None:
    """When the rest of the line only closes brackets or quotes (`foo(|)`, `[a, |]);`),
    the completion followed by them, with whatever the completion itself left open closed
    first, replacing them: accepting it leaves a balanced line.

    None when this does not apply: other code after the cursor, or a completion that
    closes something opened before the cursor (the insert rules judge that one).
    """
    if not _ONLY_CLOSERS.fullmatch(line_suffix):
        return None
    core = drop_suffix_overlap(text, line_suffix)
    if in_string and any(q in core for q in _QUOTES):
        return None
    stack: list[str] = []
    quote = ""
    escaped = False
    for ch in core:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in _QUOTES:
            quote = ch
        elif ch in _OPENERS:
            stack.append(ch)
        elif ch in _CLOSERS:
            if not stack or stack[-1] != _CLOSERS[ch]:
                return None
            stack.pop()
    closing = quote + "".join(_OPENERS[ch] for ch in reversed(stack))
    return Edit(core + closing + line_suffix, len(line_suffix))


@cache
def _problem_query(language: str) -> tree_sitter.Query:
    patterns = "(ERROR) @error (MISSING) @missing"
    if LANGUAGES[language].indented_blocks:
        # Empty blocks parse fine in tree-sitter but not in Python: `if x:` and nothing.
        patterns += " (block) @block"
    return tree_sitter.Query(LANGUAGES[language].tree_sitter_language, patterns)


@dataclass(frozen=True)
class _Problem:
    row: int
    at_end: bool  # at the very end of the parsed text (an unclosed window or file)


def _problems(source: str, language: str, *, empty_blocks: bool) -> list[_Problem]:
    data = source.encode("utf-8")
    tree = parse(LANGUAGES[language], data)
    end = len(data.rstrip())
    captures = tree_sitter.QueryCursor(_problem_query(language)).captures(tree.root_node)
    return sorted(
        (
            _Problem(node.start_point.row, node.start_byte >= end)
            for name, nodes in captures.items()
            for node in nodes
            if name != "block" or (empty_blocks and node.child_count == 0)
        ),
        key=lambda p: p.row,
    )


def syntax_problem_rows(source: str, *, empty_blocks: bool, language: str = "python") -> list[int]:
    """Rows where syntax errors, missing tokens and (optionally, Python) empty blocks
    start."""
    return [p.row for p in _problems(source, language, empty_blocks=empty_blocks)]


def keep_valid_syntax(text: str, ctx: CompletionContext, replace_chars: int = 0) -> str:
    """`text` if inserting it leaves no syntax problem starting on the lines it spans; for
    multi-line, otherwise its longest leading run of lines that does; else "".

    Only problems that start where the completion lands count, so an unrelated error
    elsewhere in the window (the user is mid-edit) does not block every completion. The
    check runs on the context window, not the whole document, to bound its cost. A block
    opener is fine at the end of a single line (`for x in xs:`: the body comes next), not
    at the end of a block the completion was meant to write. A problem at the very end of
    the window (a block the window cut open, a file being written) is excused when the
    window has it without the completion too. Plain text is not checked.
    """
    if ctx.language is None:
        return text
    empty_blocks = ctx.mode is Mode.MULTI_LINE
    suffix = ctx.suffix[replace_chars:]
    excuse_end = any(
        p.at_end for p in _problems(ctx.prefix + suffix, ctx.language, empty_blocks=empty_blocks)
    )
    first_row = ctx.prefix.count("\n")
    lines = text.split("\n")
    sizes = [len(lines)] if ctx.mode.is_line else range(len(lines), 0, -1)
    for size in sizes:
        candidate = "\n".join(lines[:size]).rstrip()
        if not candidate.strip():
            continue
        last_row = first_row + candidate.count("\n")
        problems = _problems(
            ctx.prefix + candidate + suffix, ctx.language, empty_blocks=empty_blocks
        )
        if not any(
            first_row <= p.row <= last_row and not (excuse_end and p.at_end) for p in problems
        ):
            return candidate if size < len(lines) else text
    return ""


def clean_edit(raw: str, ctx: CompletionContext, *, allow_replace: bool = True) -> Edit:
    """Apply the rules for `ctx.mode`; an empty edit when nothing useful remains."""
    if ctx.mode is Mode.NONE:
        return Edit("")
    spec = LANGUAGES.get(ctx.language) if ctx.language else None
    text = strip_special_tokens(raw)
    replace = 0
    if ctx.mode.is_line:
        text = cut_at_newline(text)
        if not ctx.line_suffix.strip():
            text = text.rstrip()
        balanced = (
            balance_closers(text, ctx.line_suffix, ctx.literal is Literal.STRING)
            if allow_replace
            else None
        )
        if balanced is not None:
            text, replace = balanced.text, balanced.replace_chars
            if text == ctx.line_suffix:
                return Edit("")  # nothing but what is already there
        else:
            text = drop_suffix_overlap(text, ctx.line_suffix)
    else:
        text = match_indentation(text, ctx.indent_unit)
        text = cut_at_dedent(text, ctx.block_indent)
        if spec is not None:
            text = cut_at_block_exit(text, spec)
        text = drop_repeated_suffix_lines(text, ctx.suffix)
        text = strip_trailing_blank(text)
        first = text.split("\n", 1)[0]
        if first.strip() and _first_line_indent(ctx.line_prefix, first) < ctx.block_indent:
            return Edit("")  # a first line left of the block would not belong to it
    if not text.strip() or is_degenerate(text):
        return Edit("")
    text = keep_valid_syntax(text, ctx, replace)
    return Edit(text, replace if text else 0)


def clean_completion(raw: str, ctx: CompletionContext) -> str:
    """The cleaned text to insert at the cursor (replacing nothing); "" when nothing
    useful remains."""
    return clean_edit(raw, ctx, allow_replace=False).text
