"""The completion pipeline: context -> model -> postprocess, with a cache and statistics.

The model keeps a key/value cache across calls and is not thread-safe, so everything that
touches it (loading included) runs on one worker thread, one request at a time. Context
building, the completion cache and typing-through run in the caller (the server's event
loop): an answer that needs no model never waits behind a running one.

Callers on the event loop await `Engine.complete`; cancelling that await stops the model
at its next denoising step, and so does a newer `complete` call (the older one answers
empty: the user has moved on). Model runs start after a short debounce, so a burst of
keystrokes runs the model once, for the last one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import torch

from fim_model import InfillCancelled, InfillModel, SamplerSettings

from .context import CompletionContext, ContextSettings, Mode, build_context
from .crossfile import CrossFileIndex, Source
from .documents import DocumentStore
from .languages import LANGUAGES, LanguageSpec, language_from_path, resolve_language
from .postprocess import clean_edit
from .settings import UserSettings
from .window import LineTokenCounter

logger = logging.getLogger(__name__)

# Other documents searched for cross-file context, most recently used first.
CROSS_FILE_DOCUMENTS = 10


@dataclass(frozen=True)
class EngineSettings:
    model_path: str | None = None  # None: the checkpoint shipped inside fim_model
    device: str = "cpu"
    context: ContextSettings | None = None  # None: a window sized for the loaded model
    cache_size: int = 256  # 0 disables the cache and typing-through (benchmarks)
    seed: int = 0
    # Torch intra-op threads. The embedded model's matrices are small, so extra threads
    # mostly add synchronisation, and under load from other processes (the editor, a
    # build) they stall each other: one thread was ~40x faster per step on a busy
    # 2-core machine. None keeps torch's default.
    threads: int | None = 1
    # Commit every masked position whose confidence clears this; lower: fewer forward
    # passes per token, more mistakes. 1.0 commits one token per pass.
    threshold: float = 0.9


@dataclass(frozen=True)
class Completion:
    text: str  # what to insert at the cursor; "" when there is nothing to offer
    mode: Mode | None  # None when no context was built (model not ready, disabled)
    reason: str
    tokens: int = 0
    forward_passes: int = 0
    model_ms: float = 0.0
    latency_ms: float = 0.0
    cached: bool = False
    # Characters right after the cursor, on its line, that `text` replaces: the closing
    # brackets and quotes that a balanced completion already ends with.
    replace_chars: int = 0


@dataclass
class EngineStats:
    requests: int = 0
    completions: int = 0  # requests answered with non-empty text
    tokens_generated: int = 0
    forward_passes: int = 0
    model_ms: float = 0.0
    last_latency_ms: float = 0.0
    cache_hits: int = 0  # answered from the cache or by typing-through, without the model
    cancelled: int = 0  # requests cancelled by the caller, queued or running
    superseded: int = 0  # requests dropped because a newer one came
    interrupted: int = 0  # model runs stopped mid-way by a cancellation
    errors: int = 0
    last_mode: str | None = None  # the completion mode of the last request, for clients
    last_language: str | None = None  # and the language it was read as (None: plain text)
    busy: bool = False  # the worker is running a request right now
    model_ready: bool = False
    model_error: str | None = None
    load_ms: float = 0.0


@dataclass(frozen=True)
class _Cached:
    text: str
    reason: str
    replace_chars: int


@dataclass(frozen=True)
class _Shown:
    """The last completion handed out, so that typing its first characters is answered
    with the rest of it instead of a new model run."""

    uri: str | None
    before: str  # the document before the cursor
    after: str  # the document after the cursor
    completion: Completion


@dataclass(frozen=True)
class _ModelRequest:
    text: str
    ctx: CompletionContext
    key: tuple[object, ...]


@dataclass
class _Call:
    """One `complete` call on the event loop, which a newer call supersedes."""

    cancel: threading.Event = field(default_factory=threading.Event)
    superseded: bool = False

    def supersede(self) -> None:
        self.superseded = True
        self.cancel.set()  # a running model stops at its next step


def _document_newlines(text: str, document: str) -> str:
    # Postprocessing works on "\n"; hand back the document's own line breaks.
    return text.replace("\n", "\r\n") if "\r\n" in document else text


class Engine:
    def __init__(self, settings: EngineSettings | None = None) -> None:
        self.settings = settings or EngineSettings()
        self.documents = DocumentStore()
        self._cross_file = CrossFileIndex()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fim-model")
        self._model: InfillModel | None = None
        self._count_tokens: LineTokenCounter | None = None
        self._trained_context: int | None = None
        self._user: UserSettings | None = None  # None until a client configures us
        self._context = self.settings.context or ContextSettings()
        self._load_future: Future[None] | None = None
        self._load_error: BaseException | None = None
        # Cache and last shown completion: read by callers, written by callers and the
        # worker.
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[object, ...], _Cached] = OrderedDict()
        self._shown: _Shown | None = None
        self._latest: _Call | None = None  # event loop only
        self._stats = EngineStats()
        self._stats_lock = threading.Lock()
        # Cancel flags of submitted requests, so that close() can stop a running infill.
        self._pending: set[threading.Event] = set()

    # -- settings --------------------------------------------------------------------

    @property
    def user_settings(self) -> UserSettings:
        return self._user or UserSettings()

    def configure(self, user: UserSettings) -> None:
        """Apply the client's settings (token budgets take effect at the next request)."""
        self._user = user
        self._context = self._context_settings()

    def _context_settings(self) -> ContextSettings:
        user = self._user
        if user is not None and user.context_tokens is not None:
            base = ContextSettings.sized_for(user.context_tokens)
        elif self.settings.context is not None:
            base = self.settings.context
        elif self._trained_context:
            base = ContextSettings.sized_for(self._trained_context)
        else:
            base = ContextSettings()
        if user is not None:
            base = replace(
                base, single_line_tokens=user.line_tokens, multi_line_tokens=user.block_tokens
            )
        return base

    @property
    def context_settings(self) -> ContextSettings:
        return self._context

    # -- model loading ---------------------------------------------------------------

    def start_loading(self) -> Future[None]:
        """Load the model on the worker thread; idempotent. The future never raises: a
        failure is kept in `load_error`."""
        if self._load_future is None:
            self._load_future = self._worker.submit(self._load)
        return self._load_future

    def _load(self) -> None:
        started = time.perf_counter()
        if self.settings.threads is not None:
            torch.set_num_threads(self.settings.threads)
        try:
            model = InfillModel.load(
                self.settings.model_path,
                device=self.settings.device,
                settings=SamplerSettings(threshold=self.settings.threshold),
            )
            # The first forward pass pays for lazy initialisation inside torch; pay it here
            # rather than in the user's first completion.
            model.infill("def f(", "):\n    pass\n", max_tokens=4, seed=self.settings.seed)
        except Exception as exc:
            logger.exception("loading the model failed")
            self._load_error = exc
            with self._stats_lock:
                self._stats.model_error = f"{type(exc).__name__}: {exc}"
            return
        self._install(model, model.model.cfg.context_tokens, started)

    def _install(self, model: InfillModel, trained_context: int | None, started: float) -> None:
        load_ms = (time.perf_counter() - started) * 1000
        self._trained_context = trained_context
        self._context = self._context_settings()
        self._count_tokens = LineTokenCounter(model.count_tokens)
        self._model = model
        with self._stats_lock:
            self._stats.model_ready = True
            self._stats.load_ms = load_ms
        logger.info("model ready in %.0f ms", load_ms)

    def use_model(self, model: InfillModel, trained_context: int | None = None) -> None:
        """Serve with a model the caller already holds (evaluation, tests) instead of
        loading one; call before any request."""
        if self._load_future is not None:
            raise RuntimeError("the engine is already loading or serving a model")
        self._install(model, trained_context, time.perf_counter())
        self._load_future = Future()
        self._load_future.set_result(None)

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def load_error(self) -> BaseException | None:
        return self._load_error

    async def wait_loaded(self) -> None:
        """Wait for the model load to finish, successfully or not."""
        await asyncio.wrap_future(self.start_loading())

    # -- completions -----------------------------------------------------------------

    async def complete(
        self,
        text: str,
        offset: int,
        *,
        language: str | None = None,
        uri: str | None = None,
        path: str | None = None,
    ) -> Completion:
        """Complete `text` at `offset` (a code-point index).

        `language`: an LSP languageId (or a name from languages.LANGUAGES); `uri` names an
        open document of `documents` (its parse tree is reused, its language known, other
        documents give cross-file context); `path`: a file name, for its extension. With
        none of them the text is Python. Cancelling the awaiting task stops the model at
        its next step; a newer call supersedes this one, which then answers empty.
        """
        started = time.perf_counter()
        call = _Call()
        previous, self._latest = self._latest, call
        if previous is not None:
            previous.supersede()
        try:
            prepared = self._prepare(text, offset, language, uri, path)
            if isinstance(prepared, Completion):
                return self._answered(prepared, text, offset, uri, started)
            debounce_ms = self.user_settings.debounce_ms
            if debounce_ms > 0:
                await asyncio.sleep(debounce_ms / 1000)
            if call.superseded:
                return self._superseded(prepared.ctx)
            job = self._submit(prepared, call.cancel, started)
            try:
                result = await asyncio.wrap_future(job)
            except InfillCancelled:
                if call.superseded:
                    return self._superseded(prepared.ctx)
                raise
            return self._answered(result, text, offset, uri, started)
        except asyncio.CancelledError:
            call.cancel.set()  # the worker sees it at the model's next step
            with self._stats_lock:
                self._stats.cancelled += 1
            raise
        finally:
            if self._latest is call:
                self._latest = None

    def complete_blocking(
        self,
        text: str,
        offset: int,
        *,
        language: str | None = None,
        uri: str | None = None,
        path: str | None = None,
    ) -> Completion:
        """`complete` for callers without an event loop (the command line, evaluation);
        waits for the model load first; no debounce, nothing superseded."""
        self.start_loading().result()
        started = time.perf_counter()
        prepared = self._prepare(text, offset, language, uri, path)
        if not isinstance(prepared, Completion):
            prepared = self._submit(prepared, threading.Event(), started).result()
        return self._answered(prepared, text, offset, uri, started)

    def _superseded(self, ctx: CompletionContext) -> Completion:
        with self._stats_lock:
            self._stats.superseded += 1
        return Completion("", ctx.mode, "superseded by a newer request")

    def _language(
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

    def _prepare(
        self, text: str, offset: int, language: str | None, uri: str | None, path: str | None
    ) -> Completion | _ModelRequest:
        """An immediate answer, or the context to run the model on."""
        with self._stats_lock:
            self._stats.requests += 1
        if not self.ready or self._count_tokens is None:
            reason = "model failed to load" if self._load_error else "model is loading"
            return Completion("", None, reason)
        if not 0 <= offset <= len(text):
            raise ValueError(f"offset {offset} is outside the document (length {len(text)})")
        user = self.user_settings
        if not user.enable:
            return Completion("", None, "completions are disabled (setting enable)")
        if (hit := self._typed_through(text, offset, uri)) is not None:
            return hit
        spec = self._language(language, uri, path)
        document = self.documents.get(uri) if uri else None
        tree = None
        if document is not None and document.language is spec and document.text == text:
            tree = document.tree()
        neighbours: list[Source] = []
        if user.cross_file and uri is not None:
            for other in self.documents.neighbours(uri):
                neighbours.append(Source(other.uri, other.text, other.version))
                if len(neighbours) >= CROSS_FILE_DOCUMENTS:
                    break
        ctx = build_context(
            text,
            offset,
            self._count_tokens,
            self._context,
            language=spec,
            tree=tree,
            neighbours=neighbours,
            index=self._cross_file if neighbours else None,
        )
        with self._stats_lock:
            self._stats.last_mode = str(ctx.mode)
            self._stats.last_language = ctx.language
        if ctx.mode is Mode.NONE:
            return Completion("", ctx.mode, ctx.reason)
        key = (uri, ctx.language, ctx.extra, ctx.prefix, ctx.suffix, ctx.mode, ctx.max_tokens)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            return Completion(
                hit.text, ctx.mode, hit.reason, cached=True, replace_chars=hit.replace_chars
            )
        return _ModelRequest(text, ctx, key)

    def _submit(
        self, request: _ModelRequest, cancel: threading.Event, submitted: float
    ) -> Future[Completion]:
        with self._stats_lock:
            self._pending.add(cancel)
        job = self._worker.submit(self._run, request, cancel, submitted)
        job.add_done_callback(lambda _: self._forget(cancel))
        return job

    def _forget(self, cancel: threading.Event) -> None:
        with self._stats_lock:
            self._pending.discard(cancel)

    def _run(self, request: _ModelRequest, cancel: threading.Event, submitted: float) -> Completion:
        model = self._model
        assert model is not None, "requests are only submitted once the model is ready"
        if cancel.is_set():
            raise InfillCancelled("cancelled while queued")
        ctx = request.ctx
        with self._stats_lock:
            self._stats.busy = True
        try:
            started = time.perf_counter()
            infill = model.infill(
                ctx.model_prefix,
                ctx.suffix,
                max_tokens=ctx.max_tokens,
                single_line=ctx.mode.is_line,
                should_cancel=cancel.is_set,
                seed=self.settings.seed,
            )
            model_ms = (time.perf_counter() - started) * 1000
            edit = clean_edit(infill.text, ctx)
        except InfillCancelled:
            with self._stats_lock:
                self._stats.interrupted += 1
            raise
        except Exception:
            with self._stats_lock:
                self._stats.errors += 1
            raise
        finally:
            with self._stats_lock:
                self._stats.busy = False
        text = _document_newlines(edit.text, request.text)
        reason = ctx.reason if text else f"{ctx.reason}; nothing left after cleanup"
        if self.settings.cache_size > 0:
            with self._lock:
                self._cache[request.key] = _Cached(text, reason, edit.replace_chars)
                while len(self._cache) > self.settings.cache_size:
                    self._cache.popitem(last=False)
        with self._stats_lock:
            self._stats.tokens_generated += infill.tokens
            self._stats.forward_passes += infill.forward_passes
            self._stats.model_ms += model_ms
        return Completion(
            text,
            ctx.mode,
            reason,
            infill.tokens,
            infill.forward_passes,
            model_ms=model_ms,
            replace_chars=edit.replace_chars,
        )

    def _answered(
        self, result: Completion, text: str, offset: int, uri: str | None, started: float
    ) -> Completion:
        """Record an answer about to be handed out."""
        result = replace(result, latency_ms=(time.perf_counter() - started) * 1000)
        if result.text and self.settings.cache_size > 0:
            with self._lock:
                self._shown = _Shown(uri, text[:offset], text[offset:], result)
        with self._stats_lock:
            self._stats.last_latency_ms = result.latency_ms
            self._stats.completions += bool(result.text)
            self._stats.cache_hits += result.cached
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

    def _typed_through(self, text: str, offset: int, uri: str | None) -> Completion | None:
        """The rest of the last completion if the user has since typed its beginning."""
        with self._lock:
            shown = self._shown
        if shown is None or self.settings.cache_size == 0 or shown.uri != uri:
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
        )

    def stats(self) -> EngineStats:
        with self._stats_lock:
            return replace(self._stats)

    def close(self) -> None:
        """Drop queued work and stop a running infill at its next step."""
        with self._stats_lock:
            pending = list(self._pending)
        for cancel in pending:
            cancel.set()
        self._worker.shutdown(wait=False, cancel_futures=True)
