"""Block structure the block rules share: what opens a block, what continues a statement
(`elif`, `} else {`), and how deep the braces and block words nest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..languages import LanguageSpec
from .text import CLOSER_TOKEN


def opens_block(line: str, spec: LanguageSpec | None) -> bool:
    """Whether `line` ends by opening a block: Python's `:`, a `{`, or the language's block
    word (`then`, `do`)."""
    end = line.rstrip()
    if spec is None or not end:
        return False
    if spec.indented_blocks:
        return end.endswith(":")
    words = CLOSER_TOKEN.findall(end)
    return end.endswith("{") or (bool(words) and words[-1] in spec.nesting_words[0])


# Clauses that continue a Python compound statement at its own indentation.
CONTINUATIONS = frozenset({"elif", "else", "except", "finally"})


# What continues a brace statement on the line of the `}` that closes its first part:
# `} else {`, `} else if (x) {`, `} catch (e) {`, `} finally {`.
BRACE_CONTINUATION = re.compile(r"\}\s*(?:else|catch|finally)\b")


def continues_statement(line: str, spec: LanguageSpec | None) -> bool:
    """Whether `line`, at the indentation of the statement whose body is being written,
    goes on with that statement rather than leaving it: Python's `elif`/`else`/`except`/
    `finally`, a brace language's `} else {` / `} catch (...) {` / `} finally {`."""
    body = line.lstrip()
    if spec is not None and spec.indented_blocks:
        word = CLOSER_TOKEN.match(body)
        return word is not None and word.group() in CONTINUATIONS
    return bool(BRACE_CONTINUATION.match(body)) and opens_block(body, spec)


_NESTING_TOKEN = re.compile(r"[A-Za-z_]\w*|[{}]|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'")


def nesting_tokens(text: str, spec: LanguageSpec) -> Iterator[tuple[int, int]]:
    """(position, +1 or -1) for each token of `text` that opens or closes a nesting level:
    braces, and the language's block words (`then`, `do` / `end`, `fi`, ...)."""
    openers, closers = spec.nesting_words
    for match in _NESTING_TOKEN.finditer(text):
        token = match.group()
        if token == "{" or token in openers:
            yield match.start(), 1
        elif token == "}" or token in closers:
            yield match.start(), -1


def nesting_depth(text: str, spec: LanguageSpec | None) -> int:
    if spec is None or spec.indented_blocks:
        return 0
    return sum(step for _, step in nesting_tokens(text, spec))
