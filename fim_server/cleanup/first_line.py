"""Rule `first line left of the block`: a block whose first line starts left of where the
block is indented would not belong to it: dropped. Not mid-line, where the first line
goes on with the code typed before the cursor.
"""

from __future__ import annotations

from ..context import CompletionContext
from .rule import Rule
from .text import first_line_indent


def first_line_left_of_block(text: str, ctx: CompletionContext) -> bool:
    first = text.split("\n", 1)[0]
    return (
        bool(first.strip())
        and first_line_indent(ctx.line_prefix, first) < ctx.block_indent
        and not ctx.line_prefix.strip()
    )


def _drop(text: str, ctx: CompletionContext) -> str:
    return "" if first_line_left_of_block(text, ctx) else text


FIRST_LINE_LEFT = Rule("first line left of the block", _drop)
