"""Text helpers the cleanup rules share: bracket and quote characters, indentation, the
language of a completion.
"""

from __future__ import annotations

import re

from ..context import CompletionContext
from ..languages import LANGUAGES, LanguageSpec

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}
QUOTES = "'\"`"
# A word or a single non-blank character: the first token of a line that may only close.
CLOSER_TOKEN = re.compile(r"[A-Za-z_]\w*|\S")


def language_spec(ctx: CompletionContext) -> LanguageSpec | None:
    """The language of the completion's document; None when it has none fim-server knows."""
    return LANGUAGES.get(ctx.language) if ctx.language else None


def first_line_indent(line_prefix: str, first: str) -> int:
    # The first line continues the cursor line, so its indentation includes what was typed
    # before the cursor when that was only whitespace.
    lead = len(first) - len(first.lstrip(" \t"))
    return (len(line_prefix) if not line_prefix.strip() else 0) + lead


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def squeeze(line: str) -> str:
    return "".join(line.split())
