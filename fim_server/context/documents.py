"""Open documents with their parse trees, kept up to date edit by edit.

Each LSP change is applied to our copy of the text and to the old tree (`Tree.edit`), and
the tree is re-parsed lazily, reusing everything the edit did not touch: a keystroke in a
5,000-line file costs a fraction of a millisecond instead of a full parse. Closed documents
that were edited stay a while as "recently edited" for cross-file context.

Parse state has a ceiling: a tree costs about 49 bytes per character of text, so trees
are kept for the documents used most recently only, TREE_BUDGET_CHARS of text in all; the
others drop theirs and parse again when next asked (closed documents kept for cross-file
context keep their text only). A first parse of a large document can run in slices of a
few milliseconds (`parse_without_blocking`: tree-sitter resumes a parse it was asked to
stop), so that the event loop answers other requests in between; parsing holds the GIL,
so a thread would not free it.

Not thread-safe: the server uses it from its event loop only.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import tree_sitter

from .languages import LanguageSpec, parse, resolve_language

# Closed documents kept for cross-file context, at most this many and this many
# characters of text in all; beyond either the oldest goes.
RECENT_CLOSED = 8
RECENT_CLOSED_CHARS = 2_000_000
# Characters of text whose trees are kept (about 30 MB of parse state): two large files,
# or dozens of ordinary ones. Trees are many small blocks from Python's allocator, whose
# 1 MiB arenas go back to the system only once empty, so after trees are freed a part of
# the peak stays with the process: the budget bounds that too (the soak's 40 documents
# of 316 KB kept RSS +12-16% above its start with 1,500,000, results/soak/).
TREE_BUDGET_CHARS = 600_000
# A first parse of a document this long (about 50 ms on one core) runs in slices when
# the caller can wait for it without blocking (Engine.complete).
BACKGROUND_PARSE_CHARS = 100_000
# The longest the event loop is held by one slice of such a parse.
PARSE_SLICE_S = 0.01
# A sliced parse reads its source in chunks of this size, through a buffer that is
# reused (see _Reader); one buffer per sliced parse running at once.
READ_CHUNK_BYTES = 16_384
_READ_BUFFERS: list[bytearray] = []

# (start_byte, old_end_byte, new_end_byte, start_point, old_end_point, new_end_point)
_Edit = tuple[int, int, int, tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class Position:
    line: int
    character: int  # in units of the negotiated position encoding


@dataclass(frozen=True)
class TextChange:
    """One LSP content change: a range replaced by `text`, or the whole text (range None)."""

    text: str
    start: Position | None = None
    end: Position | None = None


class _Reader:
    """The read callback of a sliced parse, handing tree-sitter the source in chunks.

    py-tree-sitter (0.25 to 0.26 at least) keeps a reference to every object the
    callback returns and never lets it go, so returning slices of the source (bytes)
    leaks them all: about 1.5 bytes per byte of source per parse, more when the parse
    stops and resumes often. Each chunk is therefore copied into one buffer, reused
    from a pool for the next sliced parse (the buffer can never be freed once handed
    out, so it must not be made per parse); a short last chunk is a small view of it.
    tree-sitter needs a chunk only until its next read, so overwriting it is safe. The
    reader refers to neither the tree nor the parse: a Tree keeps its read callback and
    is invisible to the garbage collector, so a reference back would make a cycle never
    freed (a leaked tree and source per parse, about 10 MB per 316 KB document)."""

    def __init__(self, source: bytes) -> None:
        self._source = source
        self._buffer = _READ_BUFFERS.pop() if _READ_BUFFERS else bytearray(READ_CHUNK_BYTES)
        self._view = memoryview(self._buffer)
        self._short: dict[int, memoryview] = {}  # views of the buffer, by length

    def __call__(self, byte: int, _point: object) -> bytes | memoryview:
        chunk = memoryview(self._source)[byte : byte + READ_CHUNK_BYTES]
        size = len(chunk)
        if size == 0:
            return b""  # a shared constant: its leaked references cost nothing
        self._buffer[:size] = chunk
        if size == READ_CHUNK_BYTES:
            return self._buffer
        if size not in self._short:
            self._short[size] = self._view[:size]
        return self._short[size]

    def release(self) -> None:
        """The parse is done or abandoned: the buffer goes back to the pool, the source
        is let go (the tree keeps this reader)."""
        if self._source:
            self._source = b""
            self._short.clear()
            _READ_BUFFERS.append(self._buffer)

    def __del__(self) -> None:
        self.release()


class _SlicedParse:
    """A first parse that can stop after a given time and resume where it stopped."""

    def __init__(self, language: LanguageSpec, source: bytes) -> None:
        self._parser = tree_sitter.Parser(language.tree_sitter_language)  # its own state
        self._language = language
        self._source = source
        self._read = _Reader(source)
        self.tree: tree_sitter.Tree | None = None

    def step(self, seconds: float) -> bool:
        """Parse for at most about `seconds`; True once the tree is done."""
        if self.tree is None:
            deadline = time.perf_counter() + seconds
            try:
                self.tree = self._parser.parse(
                    self._read, progress_callback=lambda _o, _e: time.perf_counter() > deadline
                )
            except ValueError:
                pass  # stopped by the callback: the next call resumes
            else:
                self._read.release()
        return self.tree is not None

    def finish(self) -> tree_sitter.Tree:
        if self.tree is None:
            try:
                self.tree = self._parser.parse(self._read)  # the rest, without stopping
            except ValueError:
                self.tree = parse(self._language, self._source)
            self._read.release()
        return self.tree


class PositionError(ValueError):
    """An LSP position outside the document."""


def units_of(text: str, encoding: str) -> int:
    """Length of `text` in position units of `encoding` (utf-8, utf-16 or utf-32)."""
    if encoding == "utf-32":
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def units_to_chars(line: str, units: int, encoding: str) -> int:
    """Code points in `line` covering its first `units` position units (clamped; a unit
    inside a character counts the whole character)."""
    if encoding == "utf-32" or line.isascii():
        return min(units, len(line))
    if units >= units_of(line, encoding):
        return len(line)
    # The fewest code points whose units reach `units`: a binary search over prefixes,
    # encoded in C, so a position on a 200,000-character line costs microseconds.
    low, high = 0, min(units, len(line))  # a code point is at least one unit
    while low < high:
        middle = (low + high) // 2
        if units_of(line[:middle], encoding) >= units:
            high = middle
        else:
            low = middle + 1
    return low


def _utf8(text: str) -> bytes:
    # Lone surrogates (JSON can carry them) take 3 bytes, as the U+FFFD the parsers and
    # the model are given in their place does, so byte offsets agree everywhere.
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class _Located:
    offset: int  # code-point offset into the text
    row: int
    line_start: int  # code-point offset of the row's start


def line_start_at(text: str, offset: int) -> int:
    """Offset of the start of the line holding `offset` (its first character)."""
    return text.rfind("\n", 0, offset) + 1


def _line_start(text: str, line: int, hint: tuple[int, int]) -> int:
    """Offset of the start of `line`, walking from `hint` (a row and its start offset):
    successive edits are close to each other, so this is short."""
    row, start = hint
    while row < line:
        newline = text.find("\n", start)
        if newline < 0:
            return len(text)
        start, row = newline + 1, row + 1
    while row > line:
        start, row = line_start_at(text, start - 1), row - 1
    return start


def _locate(text: str, position: Position, encoding: str, hint: tuple[int, int]) -> _Located:
    start = _line_start(text, position.line, hint)
    end = text.find("\n", start)
    line = text[start : len(text) if end < 0 else end].removesuffix("\r")
    row = min(position.line, text.count("\n")) if start == len(text) else position.line
    return _Located(start + units_to_chars(line, position.character, encoding), row, start)


def _byte_column(text: str, at: _Located) -> int:
    return len(_utf8(text[at.line_start : at.offset]))


@dataclass
class Document:
    uri: str
    text: str
    language: LanguageSpec | None
    version: int = 0
    edited: bool = False
    last_used: float = field(default_factory=time.monotonic)
    _tree: tree_sitter.Tree | None = field(default=None, repr=False)
    _tree_current: bool = field(default=False, repr=False)
    _hint: tuple[int, int] = field(default=(0, 0), repr=False)  # a row and its start
    # A first parse running in slices, and the edits made since it started (applied to
    # its tree when it is taken).
    _parsing: _SlicedParse | None = field(default=None, repr=False)
    _edits_since: list[_Edit] = field(default_factory=list, repr=False)
    full_parses: int = 0  # parses from scratch, for tests and benchmarks
    incremental_parses: int = 0

    def tree(self) -> tree_sitter.Tree | None:
        """The parse tree of the current text; None for plain text. Finishes a sliced
        parse, if one is under way."""
        if self.language is None:
            return None
        if self._parsing is not None:
            parsing, edits = self._parsing, self._edits_since
            self._parsing, self._edits_since = None, []
            tree = parsing.finish()
            for edit in edits:
                tree.edit(*edit)
            self._tree, self._tree_current = tree, not edits
            self.full_parses += 1
        if not self._tree_current:
            source = _utf8(self.text)
            if self._tree is None:
                self.full_parses += 1
            else:
                self.incremental_parses += 1
            self._tree = parse(self.language, source, self._tree)
            self._tree_current = True
        return self._tree

    @property
    def has_tree(self) -> bool:
        """A tree is kept (or being built) for this document."""
        return self._tree is not None or self._parsing is not None

    def needs_long_parse(self) -> bool:
        """Its tree would be a first parse of a large text: worth a thread of its own."""
        return (
            self.language is not None
            and self._tree is None
            and self._parsing is None
            and len(self.text) >= BACKGROUND_PARSE_CHARS
        )

    async def parse_without_blocking(self) -> None:
        """The first parse, in slices of PARSE_SLICE_S with the event loop free in
        between (`tree()` takes its result)."""
        if self._parsing is None:
            assert self.language is not None
            self._parsing, self._edits_since = _SlicedParse(self.language, _utf8(self.text)), []
        parsing = self._parsing
        while not parsing.step(PARSE_SLICE_S):
            await asyncio.sleep(0)

    def drop_tree(self) -> None:
        """Forget the parse tree (rebuilt by the next `tree()`)."""
        if self._parsing is None:
            self._tree, self._tree_current = None, False

    def offset_at(self, position: Position, encoding: str) -> int:
        """Code-point offset of an LSP position given in `encoding` units. A character
        past the end of its line means the end of the line (as LSP says); a line past the
        last raises PositionError."""
        last_line = self.text.count("\n")  # the empty line after a final break counts
        if position.line < 0 or position.character < 0 or position.line > last_line:
            raise PositionError(
                f"position {position.line}:{position.character} is outside {self.uri} "
                f"(lines 0-{last_line})"
            )
        return _locate(self.text, position, encoding, self._hint).offset

    def apply(self, change: TextChange, encoding: str) -> None:
        if change.start is None or change.end is None:
            self.text = change.text
            self._tree = None  # nothing to reuse
            self._parsing, self._edits_since = None, []
            self._tree_current = False
            self._hint = (0, 0)
            return
        text = self.text
        start = _locate(text, change.start, encoding, self._hint)
        end = _locate(text, change.end, encoding, (start.row, start.line_start))
        if end.offset < start.offset:
            end = start
        if self._tree is not None or self._parsing is not None:
            start_byte = len(_utf8(text[: start.line_start])) + _byte_column(text, start)
            old_end_byte = start_byte + len(_utf8(text[start.offset : end.offset]))
            new_end_byte = start_byte + len(_utf8(change.text))
            start_point = (start.row, _byte_column(text, start))
            old_end_point = (end.row, _byte_column(text, end))
            if "\n" in change.text:
                last = change.text[change.text.rfind("\n") + 1 :]
                new_end_point = (start.row + change.text.count("\n"), len(_utf8(last)))
            else:
                new_end_point = (start.row, start_point[1] + len(_utf8(change.text)))
            edit = (
                start_byte,
                old_end_byte,
                new_end_byte,
                start_point,
                old_end_point,
                new_end_point,
            )
            if self._parsing is not None:
                self._edits_since.append(edit)  # for the tree the sliced parse is building
            else:
                assert self._tree is not None
                self._tree.edit(*edit)
        self.text = text[: start.offset] + change.text + text[end.offset :]
        self._tree_current = False
        self._hint = (start.row, start.line_start)  # still right: the edit starts there


class DocumentStore:
    def __init__(
        self,
        tree_budget_chars: int = TREE_BUDGET_CHARS,
        on_forget: Callable[[str], None] | None = None,
    ) -> None:
        self._open: dict[str, Document] = {}
        self._recent: OrderedDict[str, Document] = OrderedDict()
        self.tree_budget_chars = tree_budget_chars
        # Told the uri of a document the store no longer holds at all (the cross-file
        # index drops its chunks).
        self._on_forget = on_forget

    def tree(self, document: Document) -> tree_sitter.Tree | None:
        """`document.tree()`, keeping parse state within the budget: the trees of the
        documents used least recently are dropped."""
        tree = document.tree()
        document.last_used = time.monotonic()
        kept = [d for d in self._open.values() if d.has_tree]
        chars = sum(len(d.text) for d in kept)
        dropped = 0
        for other in sorted(kept, key=lambda d: d.last_used):
            if chars <= self.tree_budget_chars:
                break
            if other is not document:
                other.drop_tree()
                chars -= len(other.text)
                dropped += len(other.text)
        if dropped:
            _release_freed_memory()
        return tree

    def held_tree_chars(self) -> int:
        """Characters of text whose trees are kept now."""
        return sum(len(d.text) for d in self._open.values() if d.has_tree)

    def open(self, uri: str, text: str, language_id: str | None = None, version: int = 0) -> None:
        language = resolve_language(language_id, uri)
        self._recent.pop(uri, None)
        self._open[uri] = Document(uri, text, language, version)

    def change(
        self, uri: str, version: int, changes: list[TextChange], encoding: str = "utf-16"
    ) -> Document:
        document = self._open.get(uri)
        if document is None:
            raise KeyError(f"document is not open: {uri}")
        for change in changes:
            document.apply(change, encoding)
        document.version = version
        document.edited = True
        document.last_used = time.monotonic()
        return document

    def close(self, uri: str) -> None:
        document = self._open.pop(uri, None)
        if document is None:
            return
        had_tree = document.has_tree
        document._parsing, document._edits_since = None, []
        document.drop_tree()  # cross-file context needs its text only
        if document.edited:
            self._recent[uri] = document
            while len(self._recent) > RECENT_CLOSED or (
                sum(len(d.text) for d in self._recent.values()) > RECENT_CLOSED_CHARS
            ):
                gone, _ = self._recent.popitem(last=False)
                self._forget(gone)
        else:
            self._forget(uri)
        if had_tree and len(document.text) >= BACKGROUND_PARSE_CHARS:
            _release_freed_memory()

    def _forget(self, uri: str) -> None:
        if self._on_forget is not None and uri not in self._open:
            self._on_forget(uri)

    def uris(self) -> set[str]:
        """Every document held: open, and closed ones kept for cross-file context."""
        return {*self._open, *self._recent}

    def get(self, uri: str) -> Document | None:
        return self._open.get(uri)

    def neighbours(self, uri: str | None) -> Iterator[Document]:
        """Other open documents and recently edited closed ones, most recently used first."""
        others = [d for d in (*self._open.values(), *self._recent.values()) if d.uri != uri]
        yield from sorted(others, key=lambda d: d.last_used, reverse=True)


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def _release_freed_memory() -> None:
    """Hand the memory of dropped trees back to the system: tree-sitter allocates a tree
    in many small pieces, which glibc keeps in its heap once they are freed (RSS stays
    up); malloc_trim returns the free pages (under a millisecond with 40 trees held)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
