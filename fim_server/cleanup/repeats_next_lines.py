"""Check `repeats next lines`: an edit that only writes the lines the document already has
right below is nothing new. Golden: tests/golden/duplicates.txt.
"""

from __future__ import annotations

from ..context import CompletionContext
from .rule import Edit
from .text import squeeze


def repeats_next_lines(edit: Edit, ctx: CompletionContext) -> bool:
    """Whether accepting `edit` writes lines the document already has right below: every
    non-blank line it completes equals the next non-blank lines, in order (whitespace
    aside)."""
    rest_of_line = ctx.line_suffix[edit.replace_chars :]
    written = (ctx.line_prefix + edit.text + rest_of_line).split("\n")
    written = [squeeze(line) for line in written if line.strip()]
    after_cursor_line = ctx.suffix.split("\n", 1)[1] if "\n" in ctx.suffix else ""
    following = (squeeze(line) for line in after_cursor_line.split("\n") if line.strip())
    return bool(written) and all(w == next(following, None) for w in written)
