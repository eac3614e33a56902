"""Rule `cut at block exit`: a block ends where it closes the block it was asked to fill
(a `}`, `end`, `fi` it did not open). Golden: tests/golden/blocks.txt, tests/golden/closers.txt.
"""

from __future__ import annotations

from ..context import CompletionContext
from ..languages import LanguageSpec
from .blocks import continues_statement, nesting_tokens
from .rule import Rule, Stream
from .text import language_spec


def cut_at_block_exit(text: str, spec: LanguageSpec) -> str:
    """Stop a multi-line completion where it closes the block it was asked to fill: a `}`
    (or `end`, `fi`, `done`, ...) with no opening of its own in the completion belongs to
    the enclosing code, which the suffix already has."""
    if spec.indented_blocks:
        return text
    depth = 0
    skip_to = -1  # the `{` that opens a continuation (`} else {`) nests nothing new
    for at, step in nesting_tokens(text, spec):
        if at <= skip_to:
            continue
        depth += step
        if depth < 0:
            line_end = text.find("\n", at)
            line = text[at : len(text) if line_end < 0 else line_end]
            if continues_statement(line, spec):
                # The block's `}` and the same statement going on: `} else {`.
                depth, skip_to = 0, at + line.rindex("{")
                continue
            cut = text[:at]
            # Keep whole lines: cut before the closer's line if only blanks precede it.
            line_start = cut.rfind("\n") + 1
            if not cut[line_start:].strip():
                cut = cut[:line_start]
            return cut.rstrip()
    return text


def _cut(text: str, ctx: CompletionContext) -> str:
    spec = language_spec(ctx)
    return cut_at_block_exit(text, spec) if spec is not None else text


def _stream(text: str, ctx: CompletionContext) -> Stream | None:
    lines = text[: text.rfind("\n") + 1]  # whole lines: `en` may become `end` or `enumerate`
    return Stream.CUT if _cut(lines, ctx) != lines else None


CUT_AT_BLOCK_EXIT = Rule("cut at block exit", _cut, stream=_stream)
