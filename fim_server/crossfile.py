"""Context from other files: the chunks of other open (or recently edited) documents that
share the most identifiers with the code around the cursor.

The model sees them in front of the prefix, each under a comment naming its file, the way
llama.vim's ring buffer and Continue's snippets do. Similarity is the Jaccard overlap of
identifier sets: cheap, and for code far better than nothing, since the names a user is
about to type are mostly defined elsewhere.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from .window import CountTokens, encodable

CHUNK_LINES = 16
CHUNK_STRIDE = 8
QUERY_LINES = 12  # lines around the cursor that describe what the user is writing
MIN_SCORE = 0.05
# Memory bounds of the index: documents kept, characters of chunk text in all, and the
# part of one document that is chunked (a file this long is data, not code to draw on).
MAX_INDEXED_DOCUMENTS = 16
MAX_INDEXED_CHARS = 4_000_000
MAX_DOCUMENT_CHARS = 500_000

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


@dataclass(frozen=True)
class _Chunk:
    text: str
    identifiers: frozenset[str]


def identifiers(text: str) -> frozenset[str]:
    return frozenset(w for w in _IDENTIFIER.findall(text) if w.lower() not in _COMMON)


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
    version: int
    length: int
    digest: int  # hash of the text: a reopened document may reuse a version number
    chars: int  # characters of chunk text held
    chunks: list[_Chunk]


class CrossFileIndex:
    """Chunks of other documents with their identifiers, rebuilt only when a document's
    version changes. Bounded: at most MAX_INDEXED_DOCUMENTS documents and
    MAX_INDEXED_CHARS characters of chunks, least recently used dropped first, and a
    document no longer offered (closed, or no longer among the most recent) is dropped at
    the next retrieval."""

    def __init__(self) -> None:
        self._chunks: OrderedDict[str, _Indexed] = OrderedDict()
        self._chars = 0

    @property
    def chars(self) -> int:
        """Characters of chunk text held, for tests and benchmarks."""
        return self._chars

    def __len__(self) -> int:
        return len(self._chunks)

    def _chunks_of(self, source: Source) -> list[_Chunk]:
        cached = self._chunks.get(source.uri)
        if (
            cached is not None
            and cached.version == source.version
            and cached.length == len(source.text)
            and cached.digest == hash(source.text)
        ):
            self._chunks.move_to_end(source.uri)
            return cached.chunks
        lines = source.text[:MAX_DOCUMENT_CHARS].splitlines(keepends=True)
        chunks = []
        for start in range(0, max(len(lines) - CHUNK_LINES + CHUNK_STRIDE, 1), CHUNK_STRIDE):
            text = "".join(lines[start : start + CHUNK_LINES])
            if text.strip():
                chunks.append(_Chunk(text, identifiers(text)))
        chars = sum(len(c.text) for c in chunks)
        self._drop(source.uri)
        self._chunks[source.uri] = _Indexed(
            source.version, len(source.text), hash(source.text), chars, chunks
        )
        self._chars += chars
        while len(self._chunks) > MAX_INDEXED_DOCUMENTS or (
            self._chars > MAX_INDEXED_CHARS and len(self._chunks) > 1
        ):
            self._drop(next(iter(self._chunks)))
        return chunks

    def _drop(self, uri: str) -> None:
        gone = self._chunks.pop(uri, None)
        if gone is not None:
            self._chars -= gone.chars

    def forget(self, keep: Iterable[str]) -> None:
        """Drop every document but those in `keep`."""
        keep = set(keep)
        for uri in [u for u in self._chunks if u not in keep]:
            self._drop(uri)

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
        scored: list[tuple[float, int, str, _Chunk]] = []
        for rank, source in enumerate(sources):
            for chunk in self._chunks_of(source):
                shared = len(wanted & chunk.identifiers)
                if shared:
                    score = shared / len(wanted | chunk.identifiers)
                    if score >= MIN_SCORE:
                        scored.append((score, -rank, source.uri, chunk))
        scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
        snippets: list[Snippet] = []
        used = 0
        taken: dict[str, list[str]] = {}
        for score, _, uri, chunk in scored:
            # Overlapping chunks of one file repeat each other's lines.
            if any(_overlaps(chunk.text, other) for other in taken.get(uri, [])):
                continue
            cost = count_tokens(chunk.text) + 8  # the file-name line
            if used + cost > budget:
                continue
            used += cost
            taken.setdefault(uri, []).append(chunk.text)
            snippets.append(Snippet(display_path(uri), chunk.text, score))
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
