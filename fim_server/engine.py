"""One session's completions: when the data path (pipeline.py: cache -> context ->
backend -> post-processing -> gate -> answer) runs, for which backend, and which request
it still answers.

A backend may keep state across calls (a key/value cache, a connection pool) and is not
thread-safe, so everything that touches it (loading included) runs on its worker thread,
one request at a time (model_host.py: one per loaded backend, shared by the sessions
that chose the same backend). Context building, the completion cache and typing-through run in
the caller (the server's event loop): an answer that needs no model never waits behind a
running one.

Callers on the event loop await `Engine.complete`; cancelling that await stops the
backend at its next step, and so does a newer `complete` call (the older one answers
empty: the user has moved on). Model runs start after a short debounce, so a burst of
keystrokes runs the model once, for the last one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

from .backends import Backend, BackendSpec, InfillCancelled
from .cache import CompletionCache
from .cleanup import gate
from .completion import Completion
from .config import defaults
from .config.settings import UserSettings
from .context import CompletionContext, ContextSettings, CrossFileIndex
from .context.documents import DocumentStore
from .debounce import AdaptiveDebounce
from .model_host import LoadedBackend, ModelHost
from .pipeline import ModelRequest, Pipeline, candidates_for
from .stats import EngineStats


@dataclass(frozen=True)
class EngineSettings:
    backend: BackendSpec = field(default_factory=BackendSpec)
    context: ContextSettings | None = None  # None: a window sized for the loaded model
    cache_size: int = defaults.CACHE_SIZE  # 0 disables the cache and typing-through
    seed: int = 0


@dataclass
class _Call:
    """One `complete` call on the event loop, which a newer call supersedes."""

    cancel: threading.Event = field(default_factory=threading.Event)
    superseded: bool = False

    def supersede(self) -> None:
        self.superseded = True
        self.cancel.set()  # a running model stops at its next step


class Engine:
    """One client's completion pipeline: its documents, settings, backend choice, cache,
    supersession and counters. Sessions of one server (`session()`) share a ModelHost,
    so sessions that choose the same backend share the one loaded copy of it."""

    def __init__(
        self, settings: EngineSettings | None = None, *, host: ModelHost | None = None
    ) -> None:
        self._settings = settings or EngineSettings()
        self._owns_host = host is None  # False for a session: closing it leaves the others
        self._host = host if host is not None else ModelHost()
        self._loaded: LoadedBackend | None = None  # the backend this engine holds
        self._cross_file = CrossFileIndex()
        # A document the store lets go of leaves the cross-file index and the cache too.
        self.documents = DocumentStore(on_forget=self._forget_document)
        self._user: UserSettings | None = None  # None until a client configures us
        self._cache = CompletionCache(self.settings.cache_size)
        self._latest: _Call | None = None  # event loop only
        self._debounce = AdaptiveDebounce()
        self._stats = EngineStats()  # this engine's own; guarded by _stats_lock
        self._stats_lock = threading.Lock()
        self._pipeline = Pipeline(
            self.documents, self._cache, self._cross_file, self._stats, self._stats_lock
        )
        # Cancel flags of submitted requests, so that close() can stop a running infill.
        self._pending: set[threading.Event] = set()
        self._closed = False

    def _forget_document(self, uri: str) -> None:
        self._cross_file.forget(self.documents.uris())
        self._cache.forget(uri)

    def session(self) -> Engine:
        """A new Engine (one per client connection) with its own documents, settings,
        backend choice and counters, starting with this engine's backend and sharing the
        loaded copy of it."""
        session = Engine(self.settings, host=self._host)
        session.start_loading()  # shares this engine's backend when it holds one
        return session

    @property
    def settings(self) -> EngineSettings:
        return self._settings

    @property
    def host(self) -> ModelHost:
        """The loaded backends of every session of this server."""
        return self._host

    # -- settings --------------------------------------------------------------------

    @property
    def user_settings(self) -> UserSettings:
        return self._user or UserSettings()

    def configure(self, user: UserSettings) -> None:
        """Apply the client's settings (token budgets take effect at the next request)."""
        self._user = user

    def _context_settings(self) -> ContextSettings:
        user = self._user
        backend = self.backend
        trained = backend.context_tokens if backend is not None else None
        if user is not None and user.context_tokens is not None:
            base = ContextSettings.sized_for(user.context_tokens)
        elif self.settings.context is not None:
            base = self.settings.context
        elif trained:
            base = ContextSettings.sized_for(trained)
        else:
            base = ContextSettings()
        if backend is not None and backend.middle_lines != base.middle_lines:
            base = replace(base, middle_lines=backend.middle_lines)
        if user is not None:
            base = replace(
                base, single_line_tokens=user.line_tokens, multi_line_tokens=user.block_tokens
            )
        return base

    @property
    def context_settings(self) -> ContextSettings:
        return self._context_settings()

    # -- the backend -----------------------------------------------------------------

    def start_loading(self) -> Future[None]:
        """Load the backend on its worker thread (or share it with the sessions that
        hold it already); idempotent. The future never raises: a failure is kept in
        `load_error`."""
        if self._loaded is None:
            self._loaded = self._host.acquire(self.settings.backend)
        return self._host.start(self._loaded)

    def switch_backend(self, spec: BackendSpec) -> Future[None]:
        """Use the backend `spec` names in place of the current one (a client changed the
        `backend` setting), loading it unless another session holds it already. Until it
        is ready, requests answer empty ("model is loading"). Only this engine's requests
        are stopped; the old backend is closed, after its running infill, once no session
        uses it."""
        if self._loaded is not None and spec == self.settings.backend:
            return self._host.start(self._loaded)
        self._settings = replace(self.settings, backend=spec)
        with self._stats_lock:
            pending = list(self._pending)
        for cancel in pending:
            cancel.set()
        old, self._loaded = self._loaded, self._host.acquire(spec)
        future = self._host.start(self._loaded)
        if old is not None:
            self._host.release(old)
        return future

    def use_backend(self, backend: Backend) -> None:
        """Serve with a backend the caller already holds (evaluation, tests) instead of
        loading one; call before any request. Sessions of this engine share it."""
        if self._loaded is None:
            self._loaded = self._host.acquire(self.settings.backend)
        self._host.install(self._loaded, backend)

    @property
    def backend(self) -> Backend | None:
        loaded = self._loaded
        return loaded.backend if loaded is not None and not loaded.closed else None

    @property
    def ready(self) -> bool:
        return self._loaded is not None and self._loaded.ready

    @property
    def load_error(self) -> BaseException | None:
        return self._loaded.load_error if self._loaded is not None else None

    async def wait_loaded(self) -> None:
        """Wait for the backend load to finish, successfully or not."""
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
        invoked: bool = False,
        speculative: bool = False,
    ) -> Completion:
        """Complete `text` at `offset` (a code-point index).

        `language`: an LSP languageId (or a name from languages.LANGUAGES); `uri` names an
        open document of `documents` (its parse tree is reused, its language known, other
        documents give cross-file context); `path`: a file name, for its extension. With
        none of them the text is Python. `invoked`: the user asked explicitly, so the
        model runs without a debounce. `speculative`: computed ahead for the cache, not
        shown (so not counted as shown in the stats). Cancelling the awaiting task stops
        the model at its next step; a newer call supersedes this one, which then answers
        empty.
        """
        started = time.perf_counter()
        call = _Call()
        previous, self._latest = self._latest, call
        if previous is not None:
            previous.supersede()
        if not invoked:
            self._debounce.request()
        try:
            document = self.documents.get(uri) if uri else None
            if document is not None and document.text == text and document.needs_long_parse():
                # A large first parse runs in slices: other requests, of this session
                # and the others, are answered in between.
                await document.parse_without_blocking()
                if call.superseded:
                    return self._superseded(None)
            prepared = self._prepare(text, offset, language, uri, path, invoked)
            if isinstance(prepared, Completion):
                return self._pipeline.answer(
                    prepared,
                    text,
                    offset,
                    uri,
                    started,
                    speculative,
                    min_confidence=self.min_confidence(),
                )
            wait_ms = 0.0 if invoked else self._debounce.wait_ms(self.user_settings.debounce_ms)
            if wait_ms > 0:
                await asyncio.sleep(wait_ms / 1000)
            if call.superseded:
                return self._superseded(prepared.ctx)
            job = self._submit(prepared, call.cancel, started)
            try:
                result = await asyncio.wrap_future(job)
            except InfillCancelled:
                if call.superseded:
                    return self._superseded(prepared.ctx)
                if speculative:
                    # Nobody waits for it (the session closed, or switched its backend):
                    # an exception would only be logged as never retrieved.
                    return Completion("", prepared.ctx.mode, "computed ahead; cancelled")
                raise
            self._debounce.model_ran(result.model_ms)
            return self._pipeline.answer(
                result,
                text,
                offset,
                uri,
                started,
                speculative,
                min_confidence=self.min_confidence(),
            )
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
        waits for the backend load first; no debounce, nothing superseded."""
        self.start_loading().result()
        started = time.perf_counter()
        prepared = self._prepare(text, offset, language, uri, path, invoked=True)
        if not isinstance(prepared, Completion):
            prepared = self._submit(prepared, threading.Event(), started).result()
        return self._pipeline.answer(
            prepared, text, offset, uri, started, min_confidence=self.min_confidence()
        )

    def accepted(self, uri: str | None, chars: int, partial: bool) -> asyncio.Task | None:
        """The editor reports that the user accepted `chars` characters of the completion
        last shown in `uri`. After a whole completion is accepted, the next one is
        computed in the background for the position the accepted text leads to
        (speculative FIM), so that it is in the cache when the user gets there; it runs
        only while no request is, and any request supersedes it. Returns its task."""
        with self._stats_lock:
            self._stats.accepted += 1
            self._stats.accepted_chars += max(chars, 0)
        after = self._cache.after_accepting(uri)
        if partial or after is None or self._latest is not None or not self.ready:
            return None
        text, offset = after
        with self._stats_lock:
            self._stats.speculative += 1
        return asyncio.ensure_future(
            self.complete(text, offset, uri=uri, invoked=True, speculative=True)
        )

    def _superseded(self, ctx: CompletionContext | None) -> Completion:
        with self._stats_lock:
            self._stats.superseded += 1
        return Completion("", ctx.mode if ctx else None, "superseded by a newer request")

    def _prepare(
        self,
        text: str,
        offset: int,
        language: str | None,
        uri: str | None,
        path: str | None,
        invoked: bool = False,
    ) -> Completion | ModelRequest:
        """An immediate answer, or the context to run the model on (pipeline.py)."""
        with self._stats_lock:
            self._stats.requests += 1
        loaded = self._loaded
        count_tokens = loaded.count_tokens if loaded is not None else None
        if not self.ready or count_tokens is None:
            reason = "model failed to load" if self.load_error else "model is loading"
            return Completion("", None, reason)
        user = self.user_settings
        return self._pipeline.prepare(
            text,
            offset,
            language,
            uri,
            path,
            count_tokens=count_tokens,
            user=user,
            settings=self._context_settings(),
            candidates=candidates_for(self.backend, user),
            invoked=invoked,
        )

    def _submit(
        self, request: ModelRequest, cancel: threading.Event, submitted: float
    ) -> Future[Completion]:
        loaded = self._loaded
        assert loaded is not None, "requests are only submitted once the model is ready"
        with self._stats_lock:
            self._pending.add(cancel)
        job = loaded.worker.submit(self._run, request, cancel, loaded)
        job.add_done_callback(lambda _: self._forget(cancel))
        return job

    def _forget(self, cancel: threading.Event) -> None:
        with self._stats_lock:
            self._pending.discard(cancel)

    def _run(
        self, request: ModelRequest, cancel: threading.Event, loaded: LoadedBackend
    ) -> Completion:
        # The backend it was submitted to: this session may have switched since (and
        # then cancelled it), the backend closed once no session uses it.
        backend = loaded.backend
        if cancel.is_set() or backend is None:
            raise InfillCancelled("cancelled while queued")
        return self._pipeline.infill(backend, request, cancel, self.settings.seed)

    def min_confidence(self) -> float:
        """The gate in force: the user's minConfidence, else the backend's own default."""
        chosen = self.user_settings.min_confidence
        backend = self._loaded.name if self._loaded is not None else None
        return chosen if chosen is not None else gate.default_min_confidence(backend)

    def stats(self) -> EngineStats:
        with self._stats_lock:
            stats = replace(self._stats)
        loaded = self._loaded  # what this engine's backend is, as the host holds it
        if loaded is not None:
            stats.model_ready = loaded.ready
            stats.model_error = loaded.model_error
            stats.load_ms = loaded.load_ms
            stats.backend = loaded.name
            stats.backend_description = loaded.description
        stats.min_confidence = self.min_confidence()
        if stats.accepted:
            stats.acceptance_rate = stats.accepted / max(stats.completions, 1)
        return stats

    def close(self) -> None:
        """Drop queued work, stop a running infill at its next step, let go of the
        backend (closed once no other session uses it; the engine that made the sessions
        closes every backend). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._stats_lock:
            pending = list(self._pending)
        for cancel in pending:
            cancel.set()
        if self._loaded is not None:
            self._host.release(self._loaded)  # kept: its name and load error stay readable
        if self._owns_host:
            self._host.close()
