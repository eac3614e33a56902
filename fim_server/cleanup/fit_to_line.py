"""Step `fit to line`: the edit that puts a candidate at the cursor, given what follows it on
its line (closers replaced, copies of the line's rest dropped).
"""

from __future__ import annotations

from ..context import CompletionContext
from .closers import replace_closers
from .line_suffix import drop_suffix_overlap, trim_suffix_start
from .rule import Edit


def fit_to_line(text: str, ctx: CompletionContext) -> Edit:
    """The edit that puts `text` at the cursor, given what follows it on its line."""
    replaced = replace_closers(text, ctx)
    if replaced is not None:
        return replaced
    if "\n" in text or not ctx.line_suffix.strip():
        return Edit(text)
    trimmed = drop_suffix_overlap(text, ctx.line_suffix)
    if trimmed == text:
        # No copy of the suffix at its end; one at its start is trimmed the same way.
        copied = trim_suffix_start(text, ctx.line_suffix)
        if copied is not None:
            return copied
    return Edit(trimmed)
