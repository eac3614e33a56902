"""Rule `body below`: a block asked for on a blank line whose first line opens a block
that already has its body below is that header line. Golden: tests/golden/line_opens_block.txt.
"""

from __future__ import annotations

from ..context import CompletionContext
from .blocks import opens_block
from .newline import cut_at_newline
from .rule import Rule
from .text import first_line_indent, indent_of, language_spec


def body_exists_below(text: str, ctx: CompletionContext) -> bool:
    """Whether `text` (a block asked for on a blank line) opens a block on its first line
    while the code right below the cursor's line is indented deeper than that line: the
    body is already there (`for j in ...:` / `|` / `        largest = ...`), so the answer
    is the header. Unless the text ends with a header that code owns: then the text is
    several lines in front of that body (`elif a:` / its body / `elif b:`)."""
    spec = language_spec(ctx)
    first = text.split("\n", 1)[0]
    if ctx.line_prefix.strip() or "\n" not in text or "\n" not in ctx.suffix:
        return False  # (mid-line the first line goes on with code, not a header of its own)
    if not opens_block(first, spec):
        return False
    below = next((line for line in ctx.suffix.split("\n")[1:] if line.strip()), None)
    if below is None or indent_of(below) <= first_line_indent(ctx.line_prefix, first):
        return False
    # Lines that end with a header of their own whose body is that code (`elif a:` / body
    # / `elif b:` above `    body of b`): the code below is the last header's.
    last = text.rstrip().rsplit("\n", 1)[-1]
    return not (opens_block(last, spec) and indent_of(below) > indent_of(last))


def _cut(text: str, ctx: CompletionContext) -> str:
    return cut_at_newline(text) if body_exists_below(text, ctx) else text


BODY_BELOW = Rule("body below", _cut)
