"""The completion pipeline: context -> model -> postprocess, with a cache and statistics.

The model keeps a key/value cache across calls and is not thread-safe, so everything that
touches it (loading included) runs on one worker thread, one request at a time. Callers on
the event loop await `Engine.complete`; cancelling that await stops the model at its next
denoising step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import torch

from fim_model import InfillCancelled, InfillModel

from .context import CompletionContext, ContextSettings, Mode, build_context
from .postprocess import clean_completion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    model_path: str | None = None  # None: the checkpoint shipped inside fim_model
    device: str = "cpu"
    context: ContextSettings | None = None  # None: a window sized for the loaded model
    cache_size: int = 256  # 0 disables the cache (benchmarks)
    seed: int = 0
    # Torch intra-op threads. The embedded model's matrices are small, so extra threads
    # mostly add synchronisation, and under load from other processes (the editor, a
    # build) they stall each other: one thread was ~40x faster per step on a busy
    # 2-core machine. None keeps torch's default.
    threads: int | None = 1


@dataclass(frozen=True)
class Completion:
    text: str  # what to insert at the cursor; "" when there is nothing to offer
    mode: Mode | None  # None when no context was built (model not ready)
    reason: str
    tokens: int = 0
    forward_passes: int = 0
    model_ms: float = 0.0
    latency_ms: float = 0.0
    cached: bool = False


@dataclass
class EngineStats:
    requests: int = 0
    completions: int = 0  # requests answered with non-empty text
    tokens_generated: int = 0
    forward_passes: int = 0
    model_ms: float = 0.0
    last_latency_ms: float = 0.0
    cache_hits: int = 0
    cancelled: int = 0  # requests cancelled by the caller, queued or running
    interrupted: int = 0  # model runs stopped mid-way by a cancellation
    errors: int = 0
    busy: bool = False  # the worker is running a request right now
    model_ready: bool = False
    model_error: str | None = None
    load_ms: float = 0.0


@dataclass(frozen=True)
class _Cached:
    text: str
    reason: str


@dataclass(frozen=True)
class _Shown:
    """The last completion handed out, so that typing its first characters is answered
    with the rest of it instead of a new model run."""

    before: str  # the document before the cursor
    after: str  # the document after the cursor
    completion: Completion


def _document_newlines(text: str, document: str) -> str:
    # Postprocessing works on "\n"; hand back the document's own line breaks.
    return text.replace("\n", "\r\n") if "\r\n" in document else text


def _context_for(model: InfillModel) -> ContextSettings:
    trained = model.model.cfg.context_tokens
    return ContextSettings.sized_for(trained) if trained else ContextSettings()


class Engine:
    def __init__(self, settings: EngineSettings | None = None) -> None:
        self.settings = settings or EngineSettings()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fim-model")
        self._model: InfillModel | None = None
        self._context = self.settings.context or ContextSettings()
        self._load_future: Future[None] | None = None
        self._load_error: BaseException | None = None
        self._cache: OrderedDict[tuple[str, str, Mode], _Cached] = OrderedDict()
        self._shown: _Shown | None = None  # worker thread only, like the cache
        self._stats = EngineStats()
        self._stats_lock = threading.Lock()
        # Cancel flags of submitted requests, so that close() can stop a running infill.
        self._pending: set[threading.Event] = set()

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
            model = InfillModel.load(self.settings.model_path, device=self.settings.device)
            # The first forward pass pays for lazy initialisation inside torch; pay it here
            # rather than in the user's first completion.
            model.infill("def f(", "):\n    pass\n", max_tokens=4, seed=self.settings.seed)
        except Exception as exc:
            logger.exception("loading the model failed")
            self._load_error = exc
            with self._stats_lock:
                self._stats.model_error = f"{type(exc).__name__}: {exc}"
            return
        load_ms = (time.perf_counter() - started) * 1000
        self._context = self.settings.context or _context_for(model)
        self._model = model
        with self._stats_lock:
            self._stats.model_ready = True
            self._stats.load_ms = load_ms
        logger.info("model ready in %.0f ms", load_ms)

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

    async def complete(self, text: str, offset: int) -> Completion:
        """Complete `text` at `offset` (a code-point index). Cancelling the awaiting task
        stops the model at its next step."""
        if not self.ready:
            return self._not_ready()
        cancel = threading.Event()
        job = self._submit(text, offset, cancel)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            cancel.set()  # the worker sees it at the model's next step
            with self._stats_lock:
                self._stats.cancelled += 1
            raise

    def complete_blocking(self, text: str, offset: int) -> Completion:
        """`complete` for callers without an event loop (the command line); waits for the
        model load first."""
        self.start_loading().result()
        if not self.ready:
            return self._not_ready()
        return self._submit(text, offset, threading.Event()).result()

    def _not_ready(self) -> Completion:
        with self._stats_lock:
            self._stats.requests += 1
        reason = "model failed to load" if self._load_error else "model is loading"
        return Completion("", None, reason)

    def _submit(self, text: str, offset: int, cancel: threading.Event) -> Future[Completion]:
        if not 0 <= offset <= len(text):
            raise ValueError(f"offset {offset} is outside the document (length {len(text)})")
        with self._stats_lock:
            self._stats.requests += 1
            self._pending.add(cancel)
        job = self._worker.submit(self._run, text, offset, cancel, time.perf_counter())
        job.add_done_callback(lambda _: self._forget(cancel))
        return job

    def _forget(self, cancel: threading.Event) -> None:
        with self._stats_lock:
            self._pending.discard(cancel)

    def _run(self, text: str, offset: int, cancel: threading.Event, submitted: float) -> Completion:
        model = self._model
        assert model is not None, "requests are only submitted once the model is ready"
        if cancel.is_set():
            raise InfillCancelled("cancelled while queued")
        with self._stats_lock:
            self._stats.busy = True
        try:
            result = self._typed_through(text, offset)
            if result is None:
                ctx = build_context(text, offset, model.count_tokens, self._context)
                result = self._infill(model, ctx, cancel)
                result = replace(result, text=_document_newlines(result.text, text))
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
        result = replace(result, latency_ms=(time.perf_counter() - submitted) * 1000)
        if result.text and self.settings.cache_size > 0:
            self._shown = _Shown(text[:offset], text[offset:], result)
        with self._stats_lock:
            self._stats.last_latency_ms = result.latency_ms
            self._stats.completions += bool(result.text)
            self._stats.cache_hits += result.cached
            self._stats.tokens_generated += result.tokens
            self._stats.forward_passes += result.forward_passes
            self._stats.model_ms += result.model_ms
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

    def _typed_through(self, text: str, offset: int) -> Completion | None:
        """The rest of the last completion if the user has since typed its beginning."""
        shown = self._shown
        if shown is None or self.settings.cache_size == 0:
            return None
        before = text[:offset]
        if not before.startswith(shown.before) or text[offset:] != shown.after:
            return None
        typed = before[len(shown.before) :]
        full = shown.completion.text
        if not typed or len(typed) >= len(full) or not full.startswith(typed):
            return None
        rest = full[len(typed) :]
        if not rest.strip():
            return None
        return Completion(
            rest, shown.completion.mode, "typed through the previous completion", cached=True
        )

    def _infill(
        self, model: InfillModel, ctx: CompletionContext, cancel: threading.Event
    ) -> Completion:
        if ctx.mode is Mode.NONE:
            return Completion("", ctx.mode, ctx.reason)
        key = (ctx.prefix, ctx.suffix, ctx.mode)
        if (hit := self._cache.get(key)) is not None:
            self._cache.move_to_end(key)
            return Completion(hit.text, ctx.mode, hit.reason, cached=True)
        started = time.perf_counter()
        infill = model.infill(
            ctx.prefix,
            ctx.suffix,
            max_tokens=ctx.max_tokens,
            single_line=ctx.mode is Mode.SINGLE_LINE,
            should_cancel=cancel.is_set,
            seed=self.settings.seed,
        )
        model_ms = (time.perf_counter() - started) * 1000
        text = clean_completion(infill.text, ctx)
        reason = ctx.reason if text else f"{ctx.reason}; nothing left after cleanup"
        if self.settings.cache_size > 0:
            self._cache[key] = _Cached(text, reason)
            while len(self._cache) > self.settings.cache_size:
                self._cache.popitem(last=False)
        return Completion(
            text, ctx.mode, reason, infill.tokens, infill.forward_passes, model_ms=model_ms
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
