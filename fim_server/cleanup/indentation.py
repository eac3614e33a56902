"""Rule `indentation`: re-indent a block's lines in the file's style (tabs or spaces)."""

from __future__ import annotations

from ..context import CompletionContext
from .rule import Rule


def match_indentation(text: str, unit: str) -> str:
    """Re-indent the lines after the first in the file's style: tabs where the file uses
    tabs, spaces where it uses spaces (a model trained mostly on one style drifts to it)."""
    lines = text.split("\n")
    if len(lines) < 2:
        return text
    if unit == "\t":
        widths = [
            len(line) - len(line.lstrip(" "))
            for line in lines[1:]
            if line.strip() and line.startswith(" ")
        ]
        if not widths:
            return text
        step = 2 if any(w % 4 for w in widths) and all(w % 2 == 0 for w in widths) else 4
        for i in range(1, len(lines)):
            line = lines[i]
            lead = line[: len(line) - len(line.lstrip(" \t"))]
            if " " in lead:
                width = len(lead.expandtabs(step))
                lines[i] = "\t" * (width // step) + " " * (width % step) + line[len(lead) :]
    else:
        for i in range(1, len(lines)):
            line = lines[i]
            lead = line[: len(line) - len(line.lstrip(" \t"))]
            if "\t" in lead:
                lines[i] = lead.expandtabs(len(unit)) + line[len(lead) :]
    return "\n".join(lines)


def _match(text: str, ctx: CompletionContext) -> str:
    return match_indentation(text, ctx.indent_unit)


INDENTATION = Rule("indentation", _match, reshapes_stream=True)
