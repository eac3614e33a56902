"""Answers that need no model run: an LRU cache of cleaned completions keyed by their
context, and typing-through (the user types the start of the completion on screen, the
rest of it is the answer).

Both are read on the event loop and written from the model's worker thread, hence the
lock. Bounded in entries and in characters (a key holds the context's prefix, suffix and
cross-file text, which a large context makes long); the entries and the completion shown
of a document that is closed go with it (`forget`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace

from .completion import Candidate, Completion

# Characters of keys and completions kept in all (a few MB).
MAX_CACHE_CHARS = 2_000_000


def _chars(key: Hashable, completion: Completion) -> int:
    """Characters an entry holds: the strings of its key (a tuple) and its texts."""
    items = key if isinstance(key, tuple) else (key,)
    held = sum(len(item) for item in items if isinstance(item, str))
    return held + len(completion.text) + sum(len(c.text) for c in completion.others)


def _uri_of(key: Hashable) -> str | None:
    # The engine's keys start with the document's uri.
    return key[0] if isinstance(key, tuple) and key and isinstance(key[0], str) else None


@dataclass(frozen=True)
class _Shown:
    """The last completion handed out, with the document around it."""

    uri: str | None
    before: str  # the document before the cursor
    after: str  # the document after the cursor
    completion: Completion


class CompletionCache:
    def __init__(self, size: int, max_chars: int = MAX_CACHE_CHARS) -> None:
        self.size = size  # 0: no cache and no typing-through
        self.max_chars = max_chars
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[Completion, int]] = OrderedDict()
        self._chars = 0
        self._shown: _Shown | None = None

    @property
    def chars(self) -> int:
        """Characters the entries hold, for tests and benchmarks."""
        return self._chars

    def __len__(self) -> int:
        return len(self._entries)

    def holds(self, uri: str) -> bool:
        """Anything kept for `uri` (an entry, or the completion shown in it)."""
        with self._lock:
            shown = self._shown is not None and self._shown.uri == uri
            return shown or any(_uri_of(key) == uri for key in self._entries)

    def forget(self, uri: str) -> None:
        """Drop the entries of `uri` and the completion shown in it (it was closed)."""
        with self._lock:
            for key in [k for k in self._entries if _uri_of(k) == uri]:
                self._chars -= self._entries.pop(key)[1]
            if self._shown is not None and self._shown.uri == uri:
                self._shown = None

    def get(self, key: Hashable) -> Completion | None:
        """The completion stored under `key`, marked as cached."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
        return replace(entry[0], cached=True, tokens=0, forward_passes=0, ended=False, model_ms=0.0)

    def put(self, key: Hashable, completion: Completion) -> None:
        if self.size <= 0:
            return
        chars = _chars(key, completion)
        if chars > self.max_chars:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._chars -= old[1]
            self._entries[key] = (completion, chars)
            self._chars += chars
            while len(self._entries) > self.size or self._chars > self.max_chars:
                self._chars -= self._entries.popitem(last=False)[1][1]

    def shown(self, uri: str | None, text: str, offset: int, completion: Completion) -> None:
        """Remember the completion just handed out at `offset` of `text`."""
        if self.size <= 0 or not completion.text:
            return
        with self._lock:
            self._shown = _Shown(uri, text[:offset], text[offset:], completion)

    def after_accepting(self, uri: str | None) -> tuple[str, int] | None:
        """The document and cursor offset once the last completion shown in `uri` is
        accepted whole."""
        with self._lock:
            shown = self._shown
        if shown is None or shown.uri != uri:
            return None
        completion = shown.completion
        text = shown.before + completion.text + shown.after[completion.replace_chars :]
        return text, len(shown.before) + len(completion.text)

    def typed_through(self, text: str, offset: int, uri: str | None) -> Completion | None:
        """The rest of the last completion if the user has since typed its beginning (and
        of each other candidate shown with it that begins the same way)."""
        with self._lock:
            shown = self._shown
        if shown is None or shown.uri != uri:
            return None
        # Cheap tests first: this runs on every keystroke of a long document.
        if text[offset:] != shown.after or not text.startswith(shown.before):
            return None
        typed = text[len(shown.before) : offset]
        if not typed:
            return None
        # Every candidate shown that the typed text begins (the first one first) goes on.
        first = shown.completion
        offered = [Candidate(first.text, first.replace_chars, first.confidence), *first.others]
        going_on = [
            replace(c, text=c.text[len(typed) :])
            for c in offered
            if len(typed) < len(c.text)
            and c.text.startswith(typed)
            and c.text[len(typed) :].strip()
        ]
        if not going_on:
            return None
        best, *others = going_on
        return Completion(
            best.text,
            first.mode,
            "typed through the previous completion",
            cached=True,
            replace_chars=best.replace_chars,
            confidence=best.confidence,
            model_confidence=first.model_confidence,
            others=tuple(others),
        )
