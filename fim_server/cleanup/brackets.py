"""Following a completion's brackets and quotes: what it leaves open, what it closes of the
code before the cursor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..context import CompletionContext, Literal
from .text import CLOSERS, OPENERS, QUOTES, language_spec


@dataclass
class Brackets:
    """What a completion leaves open and what it closes that was open before it."""

    open_brackets: list[str] = field(default_factory=list)  # opened and left open, in order
    open_quote: str = ""  # a string it opened and left open
    # Closers (brackets, and the quote of a string the cursor was in) of things opened
    # before the completion, each with the index just after it.
    closed_outer: list[tuple[str, int]] = field(default_factory=list)
    mismatched: bool = False  # a closer of the wrong kind: `(]`


def scan_brackets(
    text: str,
    *,
    outer: str = "",
    in_string: str = "",
    line_comment: str = "",
    char_quotes: bool = True,
) -> Brackets:
    """Follow the brackets and quotes of `text`, a completion inserted at the cursor.

    `outer`: the closers that follow the cursor on its line, in order; a quote among them
    that comes up next, with no bracket of the completion open, closes the outer string
    rather than opening one. `in_string`: the quote of the string the cursor is inside.
    `line_comment` starts a comment to the end of the line (its apostrophes open nothing);
    `char_quotes` False for languages where `'` is mostly a lifetime (Rust).
    """
    state = Brackets()
    quote = in_string
    escaped = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                if quote == in_string:
                    state.closed_outer.append((ch, i + 1))
                    in_string = ""
                quote = ""
        elif line_comment and text.startswith(line_comment, i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch in QUOTES:
            expected = (
                outer[len(state.closed_outer)] if len(state.closed_outer) < len(outer) else ""
            )
            if not state.open_brackets and ch == expected:
                state.closed_outer.append((ch, i + 1))
            elif (
                ch != "'"
                or char_quotes
                or text[i + 2 : i + 3] == "'"
                or text[i + 1 : i + 2] == "\\"
            ):
                quote = ch
        elif ch in OPENERS:
            state.open_brackets.append(ch)
        elif ch in CLOSERS:
            if state.open_brackets:
                if state.open_brackets[-1] != CLOSERS[ch]:
                    state.mismatched = True
                    return state
                state.open_brackets.pop()
            else:
                state.closed_outer.append((ch, i + 1))
        i += 1
    state.open_quote = quote if quote != in_string else ""
    return state


def scan_for(text: str, ctx: CompletionContext, outer: str = "") -> Brackets:
    spec = language_spec(ctx)
    in_string = ""
    if ctx.literal is Literal.STRING and outer[:1] in tuple(QUOTES):
        in_string = outer[0]  # the quote after the cursor closes the string it is in
    return scan_brackets(
        text,
        outer=outer,
        in_string=in_string,
        line_comment=spec.line_comment if spec is not None and not in_string else "",
        char_quotes=ctx.language != "rust",
    )
