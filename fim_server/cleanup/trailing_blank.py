"""Rule `trailing blank`: drop trailing blank lines and spaces."""

from __future__ import annotations

from ..context import CompletionContext
from .rule import Rule


def strip_trailing_blank(text: str) -> str:
    """Drop trailing whitespace-only lines and trailing spaces of the last line."""
    return text.rstrip()


def _strip(text: str, ctx: CompletionContext) -> str:
    return strip_trailing_blank(text)


def _strip_at_line_end(text: str, ctx: CompletionContext) -> str:
    # A single line followed by code keeps its spaces: they may separate it from that code.
    return strip_trailing_blank(text) if not ctx.line_suffix.strip() else text


TRAILING_BLANK = Rule("trailing blank", _strip)
# The line modes' variant: only where nothing follows the cursor on its line.
TRAILING_BLANK_AT_LINE_END = Rule("trailing blank", _strip_at_line_end)
