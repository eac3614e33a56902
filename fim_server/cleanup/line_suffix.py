"""The completion's copies of the code after the cursor on its line: at its end (the `)` the
model writes again) and at its start. Part of `fit to line`; golden:
tests/golden/duplicates.txt (the trimmed copies).
"""

from __future__ import annotations

from .rule import Edit
from .text import CLOSERS, OPENERS, QUOTES


def _closes_own_opening(kept: str, dropped: str) -> bool:
    """Whether `dropped` closes a bracket or string that `kept` opened.

    Such characters belong to the completion itself; the suffix's copies close what was
    open before the cursor.
    """
    stack: list[str] = []
    for ch in kept:
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS and stack and stack[-1] == CLOSERS[ch]:
            stack.pop()
    for ch in dropped:
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS:
            if stack and stack[-1] == CLOSERS[ch]:
                return True
        elif ch in QUOTES and kept.count(ch) % 2 == 1:
            return True
    return False


def drop_suffix_overlap(text: str, line_suffix: str) -> str:
    """Drop the end of a single-line completion that repeats the start of the rest of the line.

    The model often writes the closing `)` or `:` that already follows the cursor. Only the
    longest overlap that closes nothing the completion itself opened is dropped, so
    `foo(|)` + `bar()` stays `bar()` while `foo(|)` + `x)` becomes `x`.
    """
    for k in range(min(len(text), len(line_suffix)), 0, -1):
        if text.endswith(line_suffix[:k]) and not _closes_own_opening(text[:-k], text[-k:]):
            return text[:-k]
    return text


def _copies_suffix_start(text: str, rest: str) -> int:
    """How many characters of `text` copy the start of `rest`, ending at a token boundary
    of both; 0 when it does not start with such a copy."""
    k = 0
    while k < min(len(text), len(rest)) and text[k] == rest[k]:
        k += 1
    while k and not (
        (k == len(rest) or not (rest[k - 1].isalnum() and rest[k].isalnum()))
        and (k == len(text) or not (text[k - 1].isalnum() and text[k].isalnum()))
    ):
        k -= 1  # back to the end of the last whole token both share
    # A copy of code, not only of punctuation: closers after the cursor are the closer
    # rules' business.
    return k if any(ch.isalnum() for ch in rest[:k]) else 0


def trim_suffix_start(text: str, line_suffix: str) -> Edit | None:
    """A single-line completion that starts by copying the code after the cursor
    (`public |boolean isEmpty()` + `boolean`; `f(| a, b)` + `a, b, c)`): the copy is
    trimmed and what the model wrote after it goes where the copy ends in the line, as an
    edit that rewrites that part of the line unchanged. None when it copies nothing."""
    lead = len(line_suffix) - len(line_suffix.lstrip(" \t"))
    rest = line_suffix[lead:]
    k = _copies_suffix_start(text.lstrip(" \t"), rest)
    if not k:
        return None
    after = text.lstrip(" \t")[k:]
    if k < len(rest) and rest[k] in " \t" and after.startswith((" ", "\t")):
        after = after.lstrip(" \t")  # the line has the blank already
        k += len(rest[k:]) - len(rest[k:].lstrip(" \t"))
    # What the model wrote after its copy may end with the closers that follow it too.
    after = drop_suffix_overlap(after, line_suffix[lead + k :])
    return Edit(line_suffix[: lead + k] + after, lead + k)
