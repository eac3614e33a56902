"""Keep the `;` or `,` the model wrote after the closers a block edit replaced (part of
`fit to line`). Golden: tests/golden/closers.txt.
"""

from __future__ import annotations

from ..context import CompletionContext
from ..modes import only_closers
from .rule import Edit
from .text import indent_of, squeeze


def _statement_end(text: str, line_prefix: str, line_suffix: str) -> str:
    """The `;` or `,` the model wrote right after its copy of the line's closers (`});` for
    the suffix `})`) at the cursor line's indentation, which ends the statement the closers
    belong to; "" when none."""
    if not only_closers(line_suffix):
        return ""
    closers = squeeze(line_suffix)
    for line in text.split("\n")[1:]:
        if indent_of(line) != indent_of(line_prefix):
            continue
        squeezed = squeeze(line)
        if squeezed[:-1] == closers and squeezed[-1:] in (";", ","):
            return squeezed[-1]
    return ""


def keep_statement_end(edit: Edit, text: str, ctx: CompletionContext) -> Edit:
    """A block edit that replaced the line's closers with its own line of them, given back
    the `;` or `,` the model wrote after them (the suffix had none)."""
    end = _statement_end(text, ctx.line_prefix, ctx.line_suffix)
    suffix = ctx.line_suffix.rstrip()
    if (
        end
        and "\n" in edit.text
        and edit.replace_chars == len(ctx.line_suffix)
        and edit.text.endswith(suffix.strip())
        and not suffix.endswith(end)
    ):
        return Edit(edit.text + end, edit.replace_chars)
    return edit
