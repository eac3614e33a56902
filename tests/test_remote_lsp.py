"""End to end: a real LSP client drives `python -m fim_server --stdio` with a remote
backend chosen by the client's settings, against a server speaking Mercury's (and
OpenAI's) wire format on 127.0.0.1: answers, the cache in front, cancellation, a newer
keystroke superseding a request, failures told once, and switching backends."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import pytest_lsp
from lsp_client import get_stats, inline_params, open_document, wait_for
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient
from remote_servers import COMPLETIONS_PATH, FIM_PATH, Plan, WireServer

module_loop = pytest.mark.asyncio(loop_scope="module")

KEY = "sk-remote-test-4242"
# Mercury from the start, at an address nothing listens on: loading a remote backend
# connects nowhere, and the client's settings point it at the test server.
SERVER = [
    sys.executable, "-m", "fim_server", "--stdio", "--log-level", "INFO",
    "--backend", "mercury", "--endpoint", "http://127.0.0.1:9",
]  # fmt: skip
ENV = {"INCEPTION_API_KEY": KEY, "PATH": "/usr/bin:/bin"}
CAPABILITIES = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities()
    ),
)
BODY = "def add(a, b):\n    \n"


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    server = WireServer(key=KEY)
    yield server
    server.close()


@pytest.fixture(autouse=True)
def fresh_plans(wire: WireServer) -> None:
    wire.plans, wire.default = [], Plan()


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=SERVER, server_env=ENV), scope="module"
)
async def client(lsp_client: LanguageClient, wire: WireServer):
    options = {"fim": {"crossFile": False, "backend": "mercury", "endpoint": wire.url}}
    await lsp_client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES, initialization_options=options)
    )
    await wait_for(
        lsp_client,
        lambda s: s["modelReady"] and wire.url in s["backendDescription"],
        60,
        "the backend the settings chose",
    )
    yield
    await lsp_client.shutdown_session()


async def inline(client: LanguageClient, uri: str, line: int, character: int) -> str | None:
    result = await client.text_document_inline_completion_async(inline_params(uri, line, character))
    assert result is not None
    return result.items[0].insert_text if result.items else None  # type: ignore[return-value]


def warnings(client: LanguageClient) -> list[str]:
    return [m.message for m in client.messages if m.type == types.MessageType.Warning]


async def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@module_loop
async def test_mercury_answers_and_the_cache_stays_in_front(
    client: LanguageClient, wire: WireServer
) -> None:
    stats = await get_stats(client)
    assert stats["backend"] == "mercury" and wire.url in stats["backendDescription"]
    before = len(wire.seen)
    uri = open_document(client, BODY)
    assert await inline(client, uri, 1, 4) == "return a + b"
    seen = wire.wait_finished(before + 1)[-1]
    assert seen.path == FIM_PATH and seen.body["prompt"] == BODY[: BODY.index("\n") + 5]
    assert seen.body["suffix"] == "\n" and seen.body["stream"] is True
    # Asked again: answered from the cache, no request.
    assert await inline(client, uri, 1, 4) == "return a + b"
    assert len(wire.seen) == before + 1
    assert (await get_stats(client))["cacheHits"] >= 1


@module_loop
async def test_a_failure_is_told_once_and_the_server_keeps_serving(
    client: LanguageClient, wire: WireServer
) -> None:
    uri = open_document(client, "def mul(a, b):\n    \n\n\ndef sub(a, b):\n    \n")
    told = len(warnings(client))
    wire.default = Plan(status=503, error="overloaded")
    assert await inline(client, uri, 1, 4) is None
    await asyncio.sleep(0.1)  # past the first backoff
    assert await inline(client, uri, 5, 4) is None  # another failure, same cause
    await wait_until(lambda: len(warnings(client)) > told)
    await asyncio.sleep(0.2)
    new = warnings(client)[told:]
    assert len(new) == 1 and "HTTP 503, server error: overloaded" in new[0], new
    stats = await get_stats(client)
    assert "HTTP 503" in stats["lastError"] and stats["errors"] >= 1
    # The server recovers: the next keystroke after the backoff gets an answer.
    wire.default = Plan(pieces=["return a * b"])
    await asyncio.sleep(1.1)
    assert await inline(client, uri, 1, 4) == "return a * b"
    assert (await get_stats(client))["lastError"] is None


@module_loop
async def test_a_refused_key_is_told_without_the_key(
    client: LanguageClient, wire: WireServer
) -> None:
    await asyncio.sleep(1.1)  # any earlier backoff is over
    uri = open_document(client, "def neg(a):\n    \n")
    told = len(warnings(client))
    wire.key = "another-key"
    try:
        assert await inline(client, uri, 1, 4) is None
    finally:
        wire.key = KEY
    await wait_until(lambda: len(warnings(client)) > told)
    message = warnings(client)[told]
    assert "the API key was refused (check $INCEPTION_API_KEY)" in message
    assert KEY not in message
    assert KEY not in str(await get_stats(client))
    assert all(KEY not in m.message for m in client.log_messages)


@module_loop
async def test_cancel_request_closes_the_connection(
    client: LanguageClient, wire: WireServer
) -> None:
    await asyncio.sleep(1.1)
    uri = open_document(client, "def slow(a):\n    \n")
    before = await get_stats(client)
    count = len(wire.seen)
    wire.default = Plan(pieces=["x"] * 400, delay_s=0.05)
    msg_id = f"inline-{uuid.uuid4().hex}"
    future = client.protocol.send_request(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 4), msg_id=msg_id
    )
    await wait_until(lambda: len(wire.seen) > count and wire.seen[count].pieces_sent >= 2)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    with pytest.raises(JsonRpcRequestCancelled):
        await asyncio.wait_for(asyncio.wrap_future(future), 10)
    seen = wire.wait_finished(count + 1, timeout=10)[-1]
    assert seen.hung_up and seen.pieces_sent < 400  # the 20 s answer was not read out
    after = await wait_for(
        client, lambda s: s["interrupted"] > before["interrupted"], 10, "the interruption"
    )
    assert after["cancelled"] == before["cancelled"] + 1 and after["errors"] == before["errors"]
    wire.default = Plan()
    assert await inline(client, uri, 1, 4) == "return a + b"


@module_loop
async def test_a_newer_keystroke_supersedes_a_streaming_request(
    client: LanguageClient, wire: WireServer
) -> None:
    uri = open_document(client, "def slow2(a):\n    \n\n\ndef fast(a, b):\n    \n")
    count = len(wire.seen)
    wire.plans = [Plan(pieces=["x"] * 400, delay_s=0.05)]
    older = client.text_document_inline_completion_async(inline_params(uri, 1, 4))
    older_task = asyncio.ensure_future(older)
    await wait_until(lambda: len(wire.seen) > count and wire.seen[count].pieces_sent >= 2)
    assert await inline(client, uri, 5, 4) == "return a + b"
    superseded = await asyncio.wait_for(older_task, 10)
    assert superseded is not None and not superseded.items
    assert wire.wait_finished(count + 2, timeout=10)[count].hung_up


@module_loop
async def test_settings_switch_to_the_openai_backend(
    client: LanguageClient, wire: WireServer
) -> None:
    settings = {
        "fim": {
            "crossFile": False,
            "backend": "openai",
            "endpoint": wire.url + "/v1",
            "remoteModel": "served-model",
            "apiKeyEnv": "INCEPTION_API_KEY",
        }
    }
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))
    await wait_for(client, lambda s: s["modelReady"] and s["backend"] == "openai", 30, "the switch")
    count = len(wire.seen)
    uri = open_document(client, "def div(a, b):\n    \n")
    assert await inline(client, uri, 1, 4) == "return a + b"
    seen = wire.wait_finished(count + 1)[-1]
    assert seen.path == COMPLETIONS_PATH and seen.body["model"] == "served-model"
