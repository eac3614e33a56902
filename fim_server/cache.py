"""Answers that need no model run: an LRU cache of cleaned completions keyed by their
context, and typing-through (the user types the start of the completion on screen, the
rest of it is the answer).

Both are read on the event loop and written from the model's worker thread, hence the
lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace

from .completion import Completion


@dataclass(frozen=True)
class _Shown:
    """The last completion handed out, with the document around it."""

    uri: str | None
    before: str  # the document before the cursor
    after: str  # the document after the cursor
    completion: Completion


class CompletionCache:
    def __init__(self, size: int) -> None:
        self.size = size  # 0: no cache and no typing-through
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Completion] = OrderedDict()
        self._shown: _Shown | None = None

    def get(self, key: Hashable) -> Completion | None:
        """The completion stored under `key`, marked as cached."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
        return replace(hit, cached=True, tokens=0, forward_passes=0, ended=False, model_ms=0.0)

    def put(self, key: Hashable, completion: Completion) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = completion
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

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
        """The rest of the last completion if the user has since typed its beginning."""
        with self._lock:
            shown = self._shown
        if shown is None or shown.uri != uri:
            return None
        # Cheap tests first: this runs on every keystroke of a long document.
        if text[offset:] != shown.after or not text.startswith(shown.before):
            return None
        typed = text[len(shown.before) : offset]
        full = shown.completion.text
        if not typed or len(typed) >= len(full) or not full.startswith(typed):
            return None
        rest = full[len(typed) :]
        if not rest.strip():
            return None
        return Completion(
            rest,
            shown.completion.mode,
            "typed through the previous completion",
            cached=True,
            replace_chars=shown.completion.replace_chars,
            confidence=shown.completion.confidence,
            model_confidence=shown.completion.model_confidence,
        )
