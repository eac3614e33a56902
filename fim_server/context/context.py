"""What the model sees: the window around the cursor (window.py), the kind of completion
the syntax at the cursor calls for (modes.py) and chunks of other files (crossfile.py),
put together within one token budget."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import tree_sitter

from ..config import defaults
from .crossfile import CrossFileIndex, Source, format_snippets, query_text
from .documents import line_start_at
from .languages import parse
from .modes import LanguageArg, Literal, Mode, ModeDecision, decide_mode, spec_of
from .window import (
    LONG_LINE_CHARS,
    CountTokens,
    around_cursor,
    build_window,
    cursor_line_chars,
    encodable,
)

__all__ = [
    "CompletionContext",
    "ContextSettings",
    "CrossFileIndex",
    "CountTokens",
    "DocumentSyntax",
    "Literal",
    "Source",
    "Mode",
    "ModeDecision",
    "build_context",
    "decide_mode",
    "detect_indent_unit",
    "text_for_context",
]


@dataclass(frozen=True)
class ContextSettings:
    # A window longer than the contexts the model trained on puts positions it has never
    # seen in front of it: `sized_for` fits the window to the model.
    prefix_tokens: int = 320
    suffix_tokens: int = 128
    single_line_tokens: int = defaults.LINE_TOKENS
    multi_line_tokens: int = defaults.BLOCK_TOKENS
    literal_tokens: int = defaults.LITERAL_TOKENS
    # At most this many of the prefix's tokens go to chunks of other files.
    cross_file_tokens: int = 112
    # The backend's `middle_lines` (window.py): the lines since the last row that is a
    # multiple of it are the middle written so far; 0: none are.
    middle_lines: int = 0

    @classmethod
    def sized_for(cls, context_tokens: int, **kw: int) -> ContextSettings:
        """Split a model's trained context length: 3/4 prefix, 1/4 suffix (the cursor's
        own line and what leads to it matter most), a quarter of it for other files."""
        prefix = context_tokens * 3 // 4
        kw.setdefault("cross_file_tokens", context_tokens // 4)
        return cls(prefix_tokens=prefix, suffix_tokens=context_tokens - prefix, **kw)

    def max_tokens(self, mode: Mode, literal: Literal = Literal.NONE) -> int:
        if mode is Mode.MULTI_LINE:
            return self.multi_line_tokens
        if mode.is_line:
            if literal is not Literal.NONE:
                return min(self.literal_tokens, self.single_line_tokens)
            return self.single_line_tokens
        return 0


@dataclass(frozen=True)
class DocumentSyntax:
    """The whole document as parsed at request time: post-processing judges an edit by the
    parse errors it adds anywhere in it, re-parsing incrementally from `tree`."""

    source: bytes  # the document, UTF-8
    tree: tree_sitter.Tree  # its parse; a copy, since the document store edits its own
    cursor: int  # the cursor's byte offset in `source`


@dataclass(frozen=True)
class CompletionContext:
    prefix: str  # window before the cursor; ends at the cursor
    suffix: str  # window after the cursor; starts at the cursor
    mode: Mode
    max_tokens: int
    line_prefix: str  # the cursor line up to the cursor
    line_suffix: str  # the cursor line after the cursor, without its line break
    # Multi-line only: completion lines after the first that are indented less than this
    # have left the block being written.
    block_indent: int
    reason: str  # why this mode, for logs
    language: str | None = "python"  # a name from languages.LANGUAGES; None: plain text
    # Chunks of other files the model sees before `prefix` (not part of this document:
    # post-processing never parses them).
    extra: str = ""
    # The same chunks one by one, (file name, text), for servers that lay them out in the
    # model's own repository format (llama.cpp's `input_extra`).
    extra_chunks: tuple[tuple[str, str], ...] = ()
    indent_unit: str = "    "  # one level of indentation as this file writes it
    literal: Literal = Literal.NONE
    # Characters at the end of `prefix` that are the middle written so far (window.py's
    # `middle_lines`), for a server that takes them after the FIM middle token.
    middle: int = 0
    document: DocumentSyntax | None = field(default=None, repr=False, compare=False)

    @property
    def model_prefix(self) -> str:
        return self.extra + self.prefix


def detect_indent_unit(text: str) -> str:
    """One indentation level as `text` writes it: a tab, or the most common step between
    the indentation of consecutive lines."""
    tabs = spaces = 0
    steps: Counter[int] = Counter()
    previous = 0
    for line in text.split("\n"):
        # Whitespace-only lines count: the cursor's own line often shows the editor's
        # indentation before any code does.
        lead = line[: len(line) - len(line.lstrip(" \t"))]
        if not lead and not line.strip():
            continue
        if lead.startswith("\t"):
            tabs += 1
        elif lead:
            spaces += 1
            if len(lead) > previous:
                steps[len(lead) - previous] += 1
        previous = len(lead) if not lead.startswith("\t") else previous
    if tabs > spaces:
        return "\t"
    common = [step for step, _ in steps.most_common() if step in (2, 3, 4, 8)]
    return " " * (common[0] if common else 4)


def text_for_context(text: str, offset: int) -> tuple[str, int] | str:
    """The document as its context is built from it, and the cursor in it: lone
    surrogates made encodable, a large document cut to the lines around the cursor (it is
    not parsed whole). A str instead: why no context is built (the cursor's line is too
    long to complete)."""
    if cursor_line_chars(text, offset) > LONG_LINE_CHARS:
        return f"the line is over {LONG_LINE_CHARS} characters"
    text = encodable(text)  # lone surrogates: neither the parsers nor the model take them
    return around_cursor(text, offset)  # a large document is not parsed whole


def build_context(
    text: str,
    offset: int,
    count_tokens: CountTokens,
    settings: ContextSettings | None = None,
    *,
    language: LanguageArg = "python",
    tree: tree_sitter.Tree | None = None,
    neighbours: Iterable[Source] = (),
    index: CrossFileIndex | None = None,
) -> CompletionContext:
    """Everything the engine needs to ask for a completion at `offset` in `text`.

    `language`: a name from languages.LANGUAGES (or its spec), None for plain text.
    `tree`: the current parse of `text` if the caller keeps one. `neighbours`: other
    documents to draw cross-file chunks from (`index` caches their chunks).
    """
    if not 0 <= offset <= len(text):
        raise ValueError(f"offset {offset} is outside the document (length {len(text)})")
    settings = settings or ContextSettings()
    spec = spec_of(language)
    source = text.encode("utf-8") if spec is not None else None
    if spec is not None and tree is None:
        tree = parse(spec, source or b"")
    decision = decide_mode(text, offset, language=spec, tree=tree, source=source)
    line_start = line_start_at(text, offset)
    line_end = text.find("\n", offset)
    line_suffix = text[offset : len(text) if line_end < 0 else line_end].rstrip("\r")
    prefix = suffix = extra = ""
    middle = 0
    chunks: tuple[tuple[str, str], ...] = ()
    if decision.mode is not Mode.NONE:  # otherwise nothing is asked: skip the token work
        budget = settings.prefix_tokens
        if index is not None and settings.cross_file_tokens > 0:
            snippets = index.retrieve(
                query_text(text, offset),
                neighbours,
                min(settings.cross_file_tokens, settings.prefix_tokens // 2),
                count_tokens,
            )
            extra = format_snippets(snippets, spec.line_comment if spec else "#")
            chunks = tuple((s.path, encodable(s.text)) for s in snippets)
            budget -= sum(count_tokens(s.text) + 8 for s in snippets)
        window = build_window(
            text,
            offset,
            count_tokens,
            prefix_tokens=max(budget, 0),
            suffix_tokens=settings.suffix_tokens,
            tree=tree,
            source=source,
            spec=spec,
            middle_lines=settings.middle_lines,
        )
        prefix, suffix, middle = window.prefix, window.suffix, window.middle
    return CompletionContext(
        prefix=prefix,
        suffix=suffix,
        mode=decision.mode,
        max_tokens=settings.max_tokens(decision.mode, decision.literal),
        line_prefix=text[line_start:offset],
        line_suffix=line_suffix,
        block_indent=decision.block_indent,
        reason=decision.reason,
        language=spec.name if spec is not None else None,
        extra=extra,
        extra_chunks=chunks,
        indent_unit=detect_indent_unit(prefix + suffix),
        literal=decision.literal,
        middle=middle,
        document=(
            DocumentSyntax(source, tree.copy(), len(text[:offset].encode("utf-8")))
            if source is not None and tree is not None and decision.mode is not Mode.NONE
            else None
        ),
    )
