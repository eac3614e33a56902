"""Rule `doubled space`: no second space after the one typed before the cursor. Golden:
tests/golden/closers.txt (`no second space after the one typed in a list`).
"""

from __future__ import annotations

from ..context import CompletionContext, Literal
from .rule import Rule


def drop_doubled_space(text: str, ctx: CompletionContext) -> str:
    """Drop the spaces a completion starts with when the code before the cursor already
    ends with one (`[1, 2, |]` + ` 3]`): code is not written with two there. Not inside
    comments and strings, whose spacing is the writer's."""
    prefix = ctx.line_prefix
    if ctx.literal is not Literal.NONE or not prefix.strip() or not prefix.endswith((" ", "\t")):
        return text
    return text.lstrip(" \t") if not text.startswith("\n") else text


DOUBLED_SPACE = Rule("doubled space", drop_doubled_space)
