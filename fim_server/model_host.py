"""The loaded backends of one server, shared by the sessions that ask for the same one.

A TCP server runs one Engine per connection, each with its own backend choice (the
client's `backend`, `endpoint`, ... settings). Sessions whose `BackendSpec`s are equal
share one loaded backend: one copy of the model in memory, one connection pool, one
llama-server child. Each loaded backend has its own worker thread, which serialises
every call into it (backends are not thread-safe) and its load; it is closed, on that
thread and after the call it may be running, once no session uses it any more.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from .backends import Backend, BackendError, BackendSpec, load_backend
from .context.window import LineTokenCounter

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class LoadedBackend:
    """One backend as the host holds it: loading, ready, failed or closed."""

    spec: BackendSpec
    worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="fim-model")
    )
    users: int = 0  # sessions holding it (guarded by the host's lock)
    backend: Backend | None = None  # set once loaded, None again once closed
    count_tokens: LineTokenCounter | None = None
    load_future: Future[None] | None = None
    load_error: BaseException | None = None
    load_ms: float = 0.0
    # What `fim/stats` shows of it; kept after it is closed (the command line reports
    # them after closing its engine).
    name: str | None = None
    description: str | None = None
    closed: bool = False

    @property
    def ready(self) -> bool:
        return self.backend is not None and not self.closed

    @property
    def model_error(self) -> str | None:
        error = self.load_error
        return None if error is None else f"{type(error).__name__}: {error}"


class ModelHost:
    """Loaded backends keyed by their spec, counted by the sessions that use them."""

    def __init__(self, load: Callable[[BackendSpec], Backend] = load_backend) -> None:
        self._load = load  # tests load scripted backends through this seam
        self._lock = threading.Lock()
        self._loaded: dict[BackendSpec, LoadedBackend] = {}

    def acquire(self, spec: BackendSpec) -> LoadedBackend:
        """The backend `spec` names, shared with every session that holds it already
        (not loaded yet: `start` does that). Each acquire needs its `release`."""
        with self._lock:
            loaded = self._loaded.get(spec)
            if loaded is None:
                loaded = self._loaded[spec] = LoadedBackend(spec)
            loaded.users += 1
            return loaded

    def start(self, loaded: LoadedBackend) -> Future[None]:
        """Load it on its worker thread; idempotent. The future never raises: a failure
        is kept in `load_error`."""
        with self._lock:
            if loaded.load_future is None:
                if loaded.closed:
                    raise RuntimeError("the backend was released")
                loaded.load_future = loaded.worker.submit(self._load_on_worker, loaded)
            return loaded.load_future

    def install(self, loaded: LoadedBackend, backend: Backend) -> None:
        """Serve `loaded` with a backend the caller already holds instead of loading one."""
        with self._lock:
            if loaded.load_future is not None:
                raise RuntimeError("the engine is already loading or serving a model")
            future: Future[None] = Future()
            future.set_result(None)
            loaded.load_future = future
        self._ready(loaded, backend, time.perf_counter())

    def release(self, loaded: LoadedBackend) -> None:
        """A session stopped using `loaded`; the last one to do so closes it."""
        with self._lock:
            loaded.users -= 1
            if loaded.users > 0 or loaded.closed:
                return
            if self._loaded.get(loaded.spec) is loaded:
                del self._loaded[loaded.spec]
            loaded.closed = True  # a load still queued will not start
        self._close(loaded)

    def close(self) -> None:
        """Close every backend, whoever still holds it (the server is going away)."""
        with self._lock:
            everything = list(self._loaded.values())
            self._loaded.clear()
            for loaded in everything:
                loaded.closed = True
        for loaded in everything:
            self._close(loaded)

    def loaded(self) -> list[LoadedBackend]:
        """The backends held now, in the order they were first asked for."""
        with self._lock:
            return list(self._loaded.values())

    def _close(self, loaded: LoadedBackend) -> None:
        # On the worker, so after the call it may be running (its session's cancel flag
        # is set, so that ends at the model's next step).
        try:
            loaded.worker.submit(self._close_on_worker, loaded)
        except RuntimeError:
            pass  # the worker is already shut down: nothing left to close
        loaded.worker.shutdown(wait=False)

    @staticmethod
    def _close_on_worker(loaded: LoadedBackend) -> None:
        backend, loaded.backend, loaded.count_tokens = loaded.backend, None, None
        if backend is None:
            return
        try:
            backend.close()
        except Exception:
            logger.exception("closing the %s backend failed", loaded.name)

    def _load_on_worker(self, loaded: LoadedBackend) -> None:
        if loaded.closed:
            return  # every session let go of it while this load was queued
        started = time.perf_counter()
        try:
            backend = self._load(loaded.spec)
        except Exception as exc:
            if isinstance(exc, BackendError):
                logger.error("loading the model failed: %s", exc)
            else:
                logger.exception("loading the model failed")
            loaded.load_error = exc
            return
        # Released while it loaded: the close queued behind this load closes it.
        self._ready(loaded, backend, started)

    @staticmethod
    def _ready(loaded: LoadedBackend, backend: Backend, started: float) -> None:
        loaded.load_ms = (time.perf_counter() - started) * 1000
        loaded.name, loaded.description = backend.name, backend.description
        loaded.count_tokens = LineTokenCounter(backend.count_tokens)
        loaded.backend = backend  # last: `ready` means everything above is set
        logger.info("%s ready in %.0f ms", backend.description, loaded.load_ms)
