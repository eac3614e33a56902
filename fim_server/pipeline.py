"""The data path of one completion, in the order the text goes through it:

    cache (typing-through) -> context -> cache -> backend -> post-processing -> gate -> answer

`Pipeline.prepare` answers from the cache or builds the context (context/, which
holds the window and the other files' chunks) and the request for the backend;
`Pipeline.infill` runs the backend on its worker thread, cleans each middle up
(cleanup/) and scores it (cleanup/gate.py); `Pipeline.answer` applies the confidence gate
and hands the answer out. The engine (engine.py) decides when each step runs: the
session, its backend, supersession and the debounce.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .backends import Backend, BackendError, Infill, InfillCancelled, InfillRequest
from .cache import CompletionCache
from .cleanup import Edit, clean_edit, completion_done, gate
from .completion import Candidate, Completion
from .config.settings import UserSettings
from .context import (
    CompletionContext,
    ContextSettings,
    CountTokens,
    CrossFileIndex,
    Mode,
    Source,
    build_context,
    text_for_context,
)
from .context.documents import DocumentStore
from .context.languages import LANGUAGES, LanguageSpec, language_from_path, resolve_language
from .stats import EngineStats

logger = logging.getLogger(__name__)

# Other documents searched for cross-file context, most recently used first.
CROSS_FILE_DOCUMENTS = 10


@dataclass(frozen=True)
class ModelRequest:
    """A request the cache could not answer: its context, for the backend."""

    text: str
    ctx: CompletionContext
    key: tuple[object, ...]
    candidates: int  # completions to ask the backend for
    block_ms: int = 0  # a block's time limit (InfillRequest.block_ms); 0: none


def candidates_for(backend: Backend | None, user: UserSettings) -> int:
    """How many completions to ask for: the user's `candidates` setting, else the
    backend's default; one from a backend that cannot decode several at once."""
    if backend is None or not backend.batches:
        return 1
    return user.candidates if user.candidates is not None else backend.candidates


def infill_request(
    ctx: CompletionContext,
    *,
    should_cancel: Callable[[], bool],
    seed: int,
    count: int,
    block_ms: int = 0,
) -> InfillRequest:
    """What the backend is asked for the context `ctx`: the code around the cursor, other
    files' chunks, and when post-processing would cut a streamed answer anyway."""
    return InfillRequest(
        ctx.prefix,
        ctx.suffix,
        max_tokens=ctx.max_tokens,
        single_line=ctx.mode.is_line,
        should_cancel=should_cancel,
        seed=seed,
        count=count,
        extra=ctx.extra,
        extra_chunks=ctx.extra_chunks,
        middle=ctx.middle,
        done=lambda text: completion_done(text, ctx),
        block_ms=block_ms,
    )


def _document_newlines(text: str, document: str) -> str:
    # Postprocessing works on "\n"; hand back the document's own line breaks.
    return text.replace("\n", "\r\n") if "\r\n" in document else text


def _scored(
    request: ModelRequest, infills: list[Infill], edits: list[Edit], model_ms: float
) -> Completion:
    """The completion of the backend's middles after post-processing (`edits`), each
    scored by the gate."""
    ctx = request.ctx
    # Scored here, with the backend's confidence at hand; hidden or shown in `answer`,
    # against the setting in force then (the cache keeps the scored completion, so a
    # changed minConfidence applies to cached answers too). Candidates that come out
    # of post-processing empty or the same as an earlier one are dropped.
    offered: list[tuple[Candidate, float | None]] = []
    for infill, edit in zip(infills, edits, strict=True):
        text = _document_newlines(edit.text, request.text)
        candidate = Candidate(
            text, edit.replace_chars, gate.score(gate.signals(edit.text, infill.confidence))
        )
        if text and all(
            (c.text, c.replace_chars) != (text, edit.replace_chars) for c, _ in offered
        ):
            offered.append((candidate, infill.confidence))
    first = infills[0]  # the passes are shared; its tokens are the answer's
    if offered:
        (best, model_confidence), *others = offered
        completion = Completion(
            best.text,
            ctx.mode,
            ctx.reason,
            first.tokens,
            first.forward_passes,
            first.ended,
            model_ms=model_ms,
            replace_chars=best.replace_chars,
            confidence=best.confidence,
            model_confidence=model_confidence,
            others=tuple(c for c, _ in others),
        )
    else:
        completion = Completion(
            "",
            ctx.mode,
            f"{ctx.reason}; nothing left after cleanup",
            first.tokens,
            first.forward_passes,
            first.ended,
            model_ms=model_ms,
            model_confidence=first.confidence,
        )
    return completion


class Pipeline:
    """One session's data path: its documents, cache and cross-file index, counting into
    its statistics (under `stats_lock`: the worker thread writes them too)."""

    def __init__(
        self,
        documents: DocumentStore,
        cache: CompletionCache,
        cross_file: CrossFileIndex,
        stats: EngineStats,
        stats_lock: threading.Lock,
    ) -> None:
        self.documents = documents
        self.cache = cache
        self.cross_file = cross_file
        self._stats = stats
        self._stats_lock = stats_lock

    # -- 1. cache and context, on the event loop -----------------------------------------

    def prepare(
        self,
        text: str,
        offset: int,
        language: str | None,
        uri: str | None,
        path: str | None,
        *,
        count_tokens: CountTokens,
        user: UserSettings,
        settings: ContextSettings,
        candidates: int,
        invoked: bool = False,
    ) -> Completion | ModelRequest:
        """An immediate answer, or the context to run the model on; `invoked`: the user
        asked for it and waits, so the model may write on past an automatic request's
        time limit (the answer is cached for both: the speculative completion after an
        acceptance is invoked, and the keystroke that reaches it is not)."""
        if not 0 <= offset <= len(text):
            raise ValueError(f"offset {offset} is outside the document (length {len(text)})")
        if not user.enable:
            return Completion("", None, "completions are disabled (setting enable)")
        if (hit := self.cache.typed_through(text, offset, uri)) is not None:
            return hit
        cut = text_for_context(text, offset)
        if isinstance(cut, str):
            return Completion("", Mode.NONE, cut)
        text, offset = cut
        spec = self.language(language, uri, path)
        document = self.documents.get(uri) if uri else None
        tree = None
        if document is not None and document.language is spec and document.text == text:
            tree = self.documents.tree(document)
        neighbours: list[Source] = []
        if user.cross_file and uri is not None:
            for other in self.documents.neighbours(uri):
                neighbours.append(Source(other.uri, other.text, other.version))
                if len(neighbours) >= CROSS_FILE_DOCUMENTS:
                    break
        if not neighbours:
            self.cross_file.forget(())  # the documents it indexed are gone
        ctx = build_context(
            text,
            offset,
            count_tokens,
            settings,
            language=spec,
            tree=tree,
            neighbours=neighbours,
            index=self.cross_file if neighbours else None,
        )
        with self._stats_lock:
            self._stats.last_mode = str(ctx.mode)
            self._stats.last_language = ctx.language
        if ctx.mode is Mode.NONE:
            return Completion("", ctx.mode, ctx.reason)
        key = (
            uri, ctx.language, ctx.extra, ctx.prefix, ctx.suffix, ctx.mode, ctx.max_tokens,
            candidates,
        )  # fmt: skip
        if (hit := self.cache.get(key)) is not None:
            return hit
        return ModelRequest(text, ctx, key, candidates, 0 if invoked else user.block_ms)

    def language(
        self, language: str | None, uri: str | None, path: str | None
    ) -> LanguageSpec | None:
        if language is None and uri is None and path is None:
            return LANGUAGES["python"]  # the original two-argument contract
        if language:
            return resolve_language(language, path or uri)
        document = self.documents.get(uri) if uri else None
        if document is not None:
            return document.language
        return language_from_path(path or uri or "")

    # -- 2. backend, post-processing, the gate's score: on the backend's worker thread ---

    def infill(
        self, backend: Backend, request: ModelRequest, cancel: threading.Event, seed: int
    ) -> Completion:
        """The backend's middles for `request`, cleaned up, scored and cached."""
        ctx = request.ctx
        with self._stats_lock:
            self._stats.busy = True
        try:
            started = time.perf_counter()
            infills = backend.infill(
                infill_request(
                    ctx,
                    should_cancel=cancel.is_set,
                    seed=seed,
                    count=request.candidates,
                    block_ms=request.block_ms,
                )
            )
            model_ms = (time.perf_counter() - started) * 1000
            edits = [clean_edit(infill.text, ctx) for infill in infills]
        except InfillCancelled:
            with self._stats_lock:
                self._stats.interrupted += 1
            raise
        except BackendError as exc:
            # A backend that cannot answer now (a remote server down, a refused key): the
            # request answers empty and names the failure, the server keeps serving.
            with self._stats_lock:
                self._stats.errors += 1
                self._stats.last_error = str(exc)
            return Completion("", ctx.mode, f"backend failed: {exc}", failure=str(exc))
        except Exception:
            with self._stats_lock:
                self._stats.errors += 1
            raise
        finally:
            with self._stats_lock:
                self._stats.busy = False
        completion = _scored(request, infills, edits, model_ms)
        self.cache.put(request.key, completion)
        with self._stats_lock:
            self._stats.model_runs += 1
            self._stats.last_error = None
            self._stats.tokens_generated += completion.tokens
            self._stats.forward_passes += completion.forward_passes
            self._stats.model_ms += model_ms
        return completion

    # -- 3. the gate and the answer, on the event loop -----------------------------------

    def answer(
        self,
        result: Completion,
        text: str,
        offset: int,
        uri: str | None,
        started: float,
        speculative: bool = False,
        *,
        min_confidence: float,
    ) -> Completion:
        """Apply the confidence gate and record the answer about to be handed out (or,
        `speculative`, kept for later: then it counts as neither shown nor hidden)."""
        offered = [Candidate(result.text, result.replace_chars, result.confidence)]
        offered += result.others
        shown = [c for c in offered if c.text and gate.shows(c.confidence, min_confidence)]
        gated = bool(result.text) and not shown
        if gated:
            result = replace(
                result,
                text="",
                replace_chars=0,
                others=(),
                reason=f"{result.reason}; hidden by the confidence gate "
                f"({gate.below(result.confidence or 0.0, min_confidence)})",
            )
        elif len(shown) < len(offered) and shown:
            best, *others = shown
            result = replace(
                result,
                text=best.text,
                replace_chars=best.replace_chars,
                confidence=best.confidence,
                others=tuple(others),
            )
        result = replace(result, latency_ms=(time.perf_counter() - started) * 1000)
        self.cache.shown(uri, text, offset, result)
        with self._stats_lock:
            self._stats.cache_hits += result.cached
            if not speculative:
                self._stats.last_latency_ms = result.latency_ms
                self._stats.completions += bool(result.text)
                self._stats.gated += gated
                self._stats.last_confidence = result.confidence
                self._stats.last_model_confidence = result.model_confidence
        logger.debug(
            "%s (%s): %d tokens, %d passes, %.1f ms%s",
            result.mode,
            result.reason,
            result.tokens,
            result.forward_passes,
            result.latency_ms,
            " (cached)" if result.cached else "",
        )
        return result
