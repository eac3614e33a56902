"""Rule `no block opened`: a block asked for where one may open (after a header, a
signature) whose first line opens none is that line. Golden: tests/golden/line_opens_block.txt.
"""

from __future__ import annotations

from ..context import CompletionContext
from ..modes import BLOCK_MAY_OPEN
from .blocks import opens_block
from .newline import cut_at_newline
from .rule import Rule, Stream
from .text import language_spec


def block_not_opened(text: str, ctx: CompletionContext) -> bool:
    """Whether `text` (a completion so far) asked for where a block may open has finished a
    first line that opens none: the answer is that line."""
    if ctx.reason != BLOCK_MAY_OPEN or "\n" not in text:
        return False
    spec = language_spec(ctx)
    return not opens_block(text.split("\n", 1)[0], spec)


def _cut(text: str, ctx: CompletionContext) -> str:
    return cut_at_newline(text) if block_not_opened(text, ctx) else text


def _stream(text: str, ctx: CompletionContext) -> Stream | None:
    return Stream.CUT if block_not_opened(text, ctx) else None


NO_BLOCK_OPENED = Rule("no block opened", _cut, stream=_stream)
