"""Context from other files: the chunks of other open (or recently edited) documents that
share the most identifiers with the code around the cursor.

The model sees them in front of the prefix, each under a comment naming its file, the way
llama.vim's ring buffer and Continue's snippets do. Similarity is the Jaccard overlap of
identifier sets: cheap, and for code far better than nothing, since the names a user is
about to type are mostly defined elsewhere.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from .window import CountTokens, encodable

CHUNK_LINES = 16
CHUNK_STRIDE = 8
QUERY_LINES = 12  # lines around the cursor that describe what the user is writing
MIN_SCORE = 0.05
# Memory bounds of the index: documents kept, characters of them in all (about 1.5 bytes
# of index each), and the part of one document that is chunked (a file this long is
# data, not code to draw on).
MAX_INDEXED_DOCUMENTS = 16
MAX_INDEXED_CHARS = 4_000_000
MAX_DOCUMENT_CHARS = 200_000  # about 15 ms to index, on the event loop
# The best-scoring chunks looked at for snippets: a repetitive file has thousands that
# score alike, and each look costs a token count.
MAX_CANDIDATES = 48
# Characters of documents not yet indexed that one request indexes (about 7 ms per
# 100,000 on one core, on the event loop); one document is indexed whatever its size.
MAX_INDEXED_PER_REQUEST = 300_000

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
# Words every file shares: they say nothing about what a chunk is about.
_COMMON = frozenset(
    """and are as assert async await break case catch class const continue def default
    del do elif else end enum except export extends false final finally fn for from func
    function if impl import in int interface let local mut new nil none not null or package
    pass pub public private protected raise return self static str string struct super
    switch then this throw true try type use var void while with yield the fi done esac
    echo local bool char double float long unsigned include define""".split()
)


@dataclass(frozen=True)
class Source:
    """A document offered for cross-file context."""

    uri: str
    text: str
    version: int


@dataclass(frozen=True)
class Snippet:
    path: str  # the file name shown to the model
    text: str
    score: float


def identifiers(text: str, start: int = 0, end: int | None = None) -> frozenset[str]:
    """The names in `text[start:end]`, interned: the index keeps one string per name."""
    found = set(_IDENTIFIER.findall(text, start, len(text) if end is None else end))
    return frozenset(sys.intern(w) for w in found if w.lower() not in _COMMON)


def display_path(uri: str) -> str:
    """The last two parts of a file's path: enough to tell files apart, short to read."""
    path = unquote(urlparse(uri).path) if "://" in uri else uri
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p != "/"]
    return "/".join(parts[-2:]) if parts else uri


def query_text(text: str, offset: int) -> str:
    """The lines around the cursor, mostly before it."""
    start = offset
    for _ in range(QUERY_LINES * 3 // 4):
        start = text.rfind("\n", 0, max(start - 1, 0))
        if start < 0:
            start = 0
            break
    end = offset
    for _ in range(QUERY_LINES // 4):
        end = text.find("\n", end + 1)
        if end < 0:
            end = len(text)
            break
    return text[start:end]


@dataclass(frozen=True)
class _Indexed:
    """One document's chunks: their spans in its text and their identifiers. No text is
    copied (a chunk's text is cut from the document's own when it is chosen), and each
    chunk's identifiers are a tuple of interned names (one string per distinct name,
    shared by every chunk that uses it): about 1.5 bytes per character of document
    (measured on code with many distinct names), where copied chunk texts and
    per-chunk frozensets of new strings took about 14."""

    version: int
    length: int
    digest: int  # hash of the text: a reopened document may reuse a version number
    chars: int  # characters of the document chunked
    spans: array[int]  # start and end offset of each chunk, one after the other
    names: list[tuple[str, ...]]  # identifiers of each chunk

    def chunk_text(self, text: str, chunk: int) -> str:
        return text[self.spans[2 * chunk] : self.spans[2 * chunk + 1]]


def _index(source: Source) -> _Indexed:
    """Chunks of CHUNK_LINES lines every CHUNK_STRIDE lines: blocks of CHUNK_STRIDE lines,
    each chunk two neighbouring blocks, so each line's identifiers are found once."""
    text = source.text
    chars = min(len(text), MAX_DOCUMENT_CHARS)
    starts = [0]  # of each block
    position = 0
    while position < chars:
        for _ in range(CHUNK_STRIDE):
            newline = text.find("\n", position, chars)
            position = chars if newline < 0 else newline + 1
            if position == chars:
                break
        starts.append(position)
    blocks = [identifiers(text, a, b) for a, b in zip(starts, starts[1:], strict=False)]
    spans: array[int] = array("q")
    names: list[tuple[str, ...]] = []
    per_chunk = CHUNK_LINES // CHUNK_STRIDE
    for first in range(max(len(blocks) - per_chunk + 1, 1 if blocks else 0)):
        last = min(first + per_chunk, len(blocks))
        found = set().union(*blocks[first:last])
        if found:  # a chunk without identifiers never scores
            spans.extend((starts[first], starts[last]))
            names.append(tuple(found))
    return _Indexed(source.version, len(text), hash(text), chars, spans, names)


class CrossFileIndex:
    """Chunks of other documents with their identifiers, rebuilt only when a document's
    version changes. Bounded: at most MAX_INDEXED_DOCUMENTS documents and
    MAX_INDEXED_CHARS characters of them; the sources offered are taken most recent
    first until those are reached, the rest left out (rather than evicting and rebuilding
    in turn, which cost every request a rebuild of every document when more were offered
    than fit); a document no longer offered (closed, or no longer among the most recent)
    is dropped at the next retrieval. A retrieval indexes at most MAX_INDEXED_PER_REQUEST
    characters of new documents (the rest wait for later requests), so no request waits
    long for documents just opened."""

    def __init__(self) -> None:
        self._indexed: dict[str, _Indexed] = {}
        self._chars = 0

    @property
    def chars(self) -> int:
        """Characters of documents indexed, for tests and benchmarks."""
        return self._chars

    def __len__(self) -> int:
        return len(self._indexed)

    def _current(self, source: Source) -> _Indexed | None:
        indexed = self._indexed.get(source.uri)
        if (
            indexed is not None
            and indexed.version == source.version
            and indexed.length == len(source.text)
            and indexed.digest == hash(source.text)
        ):
            return indexed
        return None

    def _drop(self, uri: str) -> None:
        gone = self._indexed.pop(uri, None)
        if gone is not None:
            self._chars -= gone.chars

    def forget(self, keep: Iterable[str]) -> None:
        """Drop every document but those in `keep`."""
        keep = set(keep)
        for uri in [u for u in self._indexed if u not in keep]:
            self._drop(uri)

    def _indexed_sources(self, sources: list[Source]) -> list[tuple[int, Source, _Indexed]]:
        """The sources that fit, most recent first, each with its rank and chunks (built
        now where missing or out of date, within the per-request limit)."""
        chosen: list[tuple[int, Source, _Indexed | None]] = []
        chars = 0
        for rank, source in enumerate(sources):
            if len(chosen) >= MAX_INDEXED_DOCUMENTS:
                break
            indexed = self._current(source)
            cost = indexed.chars if indexed else min(len(source.text), MAX_DOCUMENT_CHARS)
            if chars + cost > MAX_INDEXED_CHARS and chosen:
                continue
            chosen.append((rank, source, indexed))
            chars += cost
        self.forget(source.uri for _, source, indexed in chosen if indexed is not None)
        built = 0
        ready: list[tuple[int, Source, _Indexed]] = []
        for rank, source, indexed in chosen:
            if indexed is None:
                cost = min(len(source.text), MAX_DOCUMENT_CHARS)
                if built and built + cost > MAX_INDEXED_PER_REQUEST:
                    continue
                indexed = self._indexed[source.uri] = _index(source)
                self._chars += indexed.chars
                built += indexed.chars
            ready.append((rank, source, indexed))
        return ready

    def retrieve(
        self,
        query: str,
        sources: Iterable[Source],
        budget: int,
        count_tokens: CountTokens,
        max_snippets: int = 3,
    ) -> list[Snippet]:
        """The best chunks that fit in `budget` tokens together, best first."""
        sources = list(sources)
        self.forget(source.uri for source in sources)
        wanted = identifiers(query)
        if not wanted or budget <= 0:
            return []
        scored: list[tuple[float, int, Source, _Indexed, int]] = []
        for rank, source, indexed in self._indexed_sources(sources):
            for chunk, names in enumerate(indexed.names):
                shared = len(wanted.intersection(names))
                if shared:
                    score = shared / (len(wanted) + len(names) - shared)
                    if score >= MIN_SCORE:
                        scored.append((score, -rank, source, indexed, chunk))
        scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
        snippets: list[Snippet] = []
        used = 0
        taken: dict[str, list[str]] = {}
        for score, _, source, indexed, chunk in scored[:MAX_CANDIDATES]:
            text = indexed.chunk_text(source.text, chunk)
            # Overlapping chunks of one file repeat each other's lines.
            if any(_overlaps(text, other) for other in taken.get(source.uri, [])):
                continue
            cost = count_tokens(text) + 8  # the file-name line
            if used + cost > budget:
                continue
            used += cost
            taken.setdefault(source.uri, []).append(text)
            snippets.append(Snippet(display_path(source.uri), text, score))
            if len(snippets) >= max_snippets:
                break
        return snippets


def _overlaps(a: str, b: str) -> bool:
    a_lines, b_lines = set(a.splitlines()), set(b.splitlines())
    return len(a_lines & b_lines) > min(len(a_lines), len(b_lines)) // 2


def format_snippets(snippets: list[Snippet], line_comment: str) -> str:
    """The snippets as the model sees them: each under a comment naming its file."""
    parts = []
    for snippet in snippets:
        body = snippet.text if snippet.text.endswith("\n") else snippet.text + "\n"
        parts.append(f"{line_comment} {snippet.path}\n{body}")
    return encodable("".join(parts))  # the model cannot take lone surrogates
