"""Rule `cut at newline`: a single-line completion ends at its first line break."""

from __future__ import annotations

from ..context import CompletionContext
from .rule import Rule, Stream


def cut_at_newline(text: str) -> str:
    """A single-line completion ends at its first line break."""
    return text.split("\n", 1)[0]


def _cut(text: str, ctx: CompletionContext) -> str:
    return cut_at_newline(text)


def _stream(text: str, ctx: CompletionContext) -> Stream | None:
    return Stream.CUT if "\n" in text else None


CUT_AT_NEWLINE = Rule("cut at newline", _cut, stream=_stream)
