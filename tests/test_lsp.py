"""End to end: a real LSP client drives `python -m fim_server --stdio` with the shipped model."""

from __future__ import annotations

import ast
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_client import get_stats, inline_params, open_document, wait_for
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams, JsonRpcRequestCancelled
from pytest_lsp import ClientServerConfig, LanguageClient

from fim_server.context.documents import Document
from fim_server.lsp.server import InvalidRequest, cursor_offset

# The model loads once per module: the client fixture and its tests share one event loop.
module_loop = pytest.mark.asyncio(loop_scope="module")

SERVER = [sys.executable, "-m", "fim_server", "--stdio", "--log-level", "INFO"]
MODEL_LOAD_TIMEOUT_S = 180.0
CAPABILITIES = types.ClientCapabilities(
    window=types.WindowClientCapabilities(work_done_progress=True),
    text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities(),
        completion=types.CompletionClientCapabilities(),
    ),
)


# Test instrumentation: a folder whose sitecustomize.py makes the server's model runs wait
# while the file named by FIM_TEST_MODEL_HOLD exists (see model_hold/sitecustomize.py), so
# that a test can cancel or supersede a run that is certainly still going.
MODEL_HOLD_PATH = Path(__file__).resolve().parent / "model_hold"
MODEL_HOLD = Path(tempfile.gettempdir()) / f"fim-test-model-hold-{uuid.uuid4().hex}"
MODEL_HELD = MODEL_HOLD.with_name(MODEL_HOLD.name + ".held")  # a run is waiting on the hold


def held_env() -> dict[str, str]:
    """The environment for a server whose model runs `model_runs_held` can hold."""
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": str(MODEL_HOLD_PATH) + (os.pathsep + path if path else ""),
        "FIM_TEST_MODEL_HOLD": str(MODEL_HOLD),
    }


@contextmanager
def model_runs_held() -> Iterator[None]:
    """Inside: every model run of the `client` server waits before its next step until it
    is cancelled or superseded (or the block ends)."""
    MODEL_HELD.unlink(missing_ok=True)
    MODEL_HOLD.touch()
    try:
        yield
    finally:
        MODEL_HOLD.unlink(missing_ok=True)
        MODEL_HELD.unlink(missing_ok=True)


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=SERVER, server_env=held_env()), scope="module"
)
async def client(lsp_client: LanguageClient):
    # Each test sees only its own document: with cross-file context on, the documents the
    # module's earlier tests left open would change what the model is shown. Cross-file
    # context is tested in tests/test_engine.py and tests/test_crossfile.py. The confidence
    # gate is off too: these tests check the pipeline on documents where the model
    # answers, whatever its confidence (the gate is tested in tests/test_gate.py).
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=CAPABILITIES,
            initialization_options={"fim": {"crossFile": False, "minConfidence": 0}},
        )
    )
    stats = await wait_for(
        lsp_client,
        lambda s: s["modelReady"] or s["modelError"],
        MODEL_LOAD_TIMEOUT_S,
        "the model to load",
    )
    assert stats["modelReady"], f"the shipped model failed to load: {stats['modelError']}"
    yield
    await lsp_client.shutdown_session()


def assert_answer(result: Any, line: int, character: int, most: int = 1) -> None:
    """An inline completion answer an editor can use: a list of at most `most` items (the
    candidates setting), whose texts are non-empty and distinct and whose ranges start at
    the cursor on the cursor's line."""
    assert isinstance(result, types.InlineCompletionList) and len(result.items) <= most, result
    texts = [item.insert_text for item in result.items]
    assert len(set(texts)) == len(texts), texts
    for item in result.items:
        assert isinstance(item.insert_text, str) and item.insert_text
        assert item.range is not None
        assert item.range.start == types.Position(line=line, character=character)
        assert item.range.end.line == line and item.range.end.character >= character


async def inline(client: LanguageClient, uri: str, line: int, character: int) -> str | None:
    """The inline completion's text, or None for an empty list."""
    result = await client.text_document_inline_completion_async(inline_params(uri, line, character))
    assert_answer(result, line, character)
    if not result.items:
        return None
    item = result.items[0]
    position = types.Position(line=line, character=character)
    assert item.range == types.Range(start=position, end=position)
    return item.insert_text


def insert(text: str, line: int, character: int, completion: str) -> str:
    """`text` with `completion` inserted at an LSP position (code points = UTF-16 units
    for the BMP text used with it)."""
    lines = text.split("\n")
    offset = sum(len(x) + 1 for x in lines[:line]) + character
    return text[:offset] + completion + text[offset:]


def assert_parses(source: str) -> None:
    try:
        ast.parse(source)
    except SyntaxError as exc:
        pytest.fail(f"completion leaves the file unparseable ({exc}):\n{source}")


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


# The shipped skeleton model is too weak to write a completion that survives
# post-processing at these positions (see fim_model/checkpoint/README.md). These tests pin
# what a user needs; strict, so they fail loudly once a trained model makes them pass.
# The embedded 1.8M-parameter model completes lines but cannot yet write a function body
# that survives post-processing (issue 3 trains the model that should). Strict: when a
# better model ships, this test starts passing and the marker must go.
needs_a_body_writing_model = pytest.mark.xfail(
    strict=True, reason="the embedded model's function bodies are rejected by post-processing"
)


@needs_a_body_writing_model
@module_loop
async def test_inline_completion_fills_an_empty_body(client: LanguageClient) -> None:
    uri = open_document(client, AREA)
    completion = await inline(client, uri, 5, 4)
    assert completion is not None, "no completion for an empty function body"
    assert_parses(insert(AREA, 5, 4, completion))


MEAN = "def mean(values):\n    total = sum(values)\n    return total / \n"
# Where the shipped model answers with more than one character (typing-through needs two).
JOIN = "import os\n\npath = os.path.join(\n"


@module_loop
async def test_inline_completion_completes_the_line_and_the_file_parses(
    client: LanguageClient,
) -> None:
    uri = open_document(client, MEAN)
    completion = await inline(client, uri, 2, 19)
    assert completion, "no completion at the end of an unfinished line"
    assert "\n" not in completion
    assert_parses(insert(MEAN, 2, 19, completion))


@module_loop
async def test_completion_fallback_returns_the_inline_text(client: LanguageClient) -> None:
    text = MEAN
    uri = open_document(client, text)
    expected = await inline(client, uri, 2, 19)
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=2, character=19),
        )
    )
    assert isinstance(result, types.CompletionList)
    assert expected is not None, "no inline completion to compare with"
    (item,) = result.items
    assert isinstance(item.text_edit, types.TextEdit)
    assert item.text_edit.new_text == expected
    position = types.Position(line=2, character=19)
    assert item.text_edit.range == types.Range(start=position, end=position)


@module_loop
async def test_non_ascii_before_the_cursor(client: LanguageClient) -> None:
    text = (
        'def mean(values):\n    """Mean — 👋 — of «values»."""\n'
        "    total = sum(values)\n    return total / len(values\n"
    )
    end = len("    return total / len(values")
    uri = open_document(client, text)
    completion = await inline(client, uri, 3, end)
    assert completion
    assert_parses(insert(text, 3, end, completion))


@module_loop
async def test_incremental_edit_is_applied_before_completing(client: LanguageClient) -> None:
    text = "def double(a):\n    return a\n\n\nprint(double(4))\n"
    uri = open_document(client, text)
    # "return" follows the cursor: no completion is offered inside a word, and the model
    # is not even asked.
    before = await get_stats(client)
    assert await inline(client, uri, 1, 4) is None
    assert (await get_stats(client))["forwardPasses"] == before["forwardPasses"]

    # Delete "return a": the body is now empty and wants one.
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(
                        start=types.Position(line=1, character=4),
                        end=types.Position(line=1, character=12),
                    ),
                    text="",
                )
            ],
        )
    )
    edited = "def double(a):\n    \n\n\nprint(double(4))\n"
    before = await get_stats(client)
    completion = await inline(client, uri, 1, 4)
    # The server saw the edit: the same position is now an empty body the model fills.
    stats = await get_stats(client)
    assert stats["forwardPasses"] > before["forwardPasses"]
    assert stats["lastMode"] == "multi_line"
    # The embedded model may write nothing that survives cleanup (an empty answer); a body
    # it does offer must leave the edited document parsing.
    if completion is not None:
        assert_parses(insert(edited, 1, 4, completion))


@module_loop
async def test_typing_the_completion_is_answered_from_it(client: LanguageClient) -> None:
    uri = open_document(client, JOIN)
    first = await inline(client, uri, 2, 20)
    assert first is not None and len(first) >= 2 and first[0] not in "\r\n"
    before = await get_stats(client)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(
                        start=types.Position(line=2, character=20),
                        end=types.Position(line=2, character=20),
                    ),
                    text=first[0],
                )
            ],
        )
    )
    assert await inline(client, uri, 2, 21) == first[1:]
    after = await get_stats(client)
    assert after["cacheHits"] == before["cacheHits"] + 1
    assert after["forwardPasses"] == before["forwardPasses"]


def send_inline(
    client: LanguageClient, uri: str, line: int, character: int
) -> tuple[str, Future[Any]]:
    msg_id = f"inline-{uuid.uuid4().hex}"
    future = client.protocol.send_request(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, line, character), msg_id=msg_id
    )
    return msg_id, future


def cancel(client: LanguageClient, msg_id: str) -> None:
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))


# Many empty bodies: every request below is at a fresh position, so none is cached.
MANY_BODIES = (
    "".join(f"def step_{i}(state, rate):\n    \n\n\n" for i in range(12)) + "print(step_0(1, 2))\n"
)


async def start_a_held_model_run(
    client: LanguageClient, uri: str, line: int
) -> tuple[str, Future[Any]]:
    """Ask at an empty body (fresh: the model must run) inside `model_runs_held`, and wait
    until its model run waits on the hold: it cannot finish before the test acts on it (a
    free run takes a few tens of milliseconds, often less than a cancel's trip)."""
    msg_id, future = send_inline(client, uri, line, 4)
    deadline = time.monotonic() + 30
    while not MODEL_HELD.exists():
        if future.done():
            pytest.fail(f"answered without a held model run: {future.result()}")
        if time.monotonic() > deadline:
            pytest.fail("no model run was held: is tests/model_hold on the server's path?")
        await asyncio.sleep(0.01)
    assert (await get_stats(client))["busy"]
    return msg_id, future


@module_loop
async def test_cancel_stops_the_model_and_the_server_keeps_serving(
    client: LanguageClient,
) -> None:
    uri = open_document(client, MANY_BODIES)
    before = await get_stats(client)
    with model_runs_held():
        msg_id, running = await start_a_held_model_run(client, uri, 1)
        cancel(client, msg_id)
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(asyncio.wrap_future(running), 5)
        # The worker itself stopped mid-run (should_cancel was seen), not only the response.
        after = await wait_for(
            client,
            lambda s: s["interrupted"] > before["interrupted"] and not s["busy"],
            30,
            "the model run to stop",
        )
    assert after["cancelled"] >= before["cancelled"] + 1
    # The next request is served normally.
    result = await client.text_document_inline_completion_async(inline_params(uri, 45, 4))
    assert_answer(result, 45, 4)
    served = await get_stats(client)
    assert served["requests"] > after["requests"] and served["errors"] == before["errors"]


@module_loop
async def test_a_newer_request_supersedes_the_running_one(client: LanguageClient) -> None:
    uri = open_document(client, MANY_BODIES)
    before = await get_stats(client)
    with model_runs_held():
        _, older = await start_a_held_model_run(client, uri, 25)
        # The user moved on: a request elsewhere, without cancelling the older one.
        newer = asyncio.ensure_future(
            client.text_document_inline_completion_async(inline_params(uri, 1, 4))
        )
        superseded = await asyncio.wait_for(asyncio.wrap_future(older), 5)
        assert len(superseded.items) == 0  # answered, empty: not an error
        stopped = await get_stats(client)
        assert stopped["interrupted"] == before["interrupted"] + 1  # its model run stopped
    # Held too until here: the newer request runs the model and is answered.
    assert_answer(await asyncio.wait_for(newer, 30), 1, 4)
    after = await get_stats(client)
    assert after["superseded"] == before["superseded"] + 1
    assert after["interrupted"] == before["interrupted"] + 1
    assert after["cancelled"] == before["cancelled"]
    assert after["forwardPasses"] > stopped["forwardPasses"]  # the newer one's model run


@module_loop
async def test_bad_requests_get_errors_and_the_server_keeps_running(
    client: LanguageClient,
) -> None:
    with pytest.raises(JsonRpcInvalidParams, match="not open"):
        await client.text_document_inline_completion_async(
            inline_params("file:///never/opened.py", 0, 0)
        )
    uri = open_document(client, "x = 1\n")
    with pytest.raises(JsonRpcInvalidParams, match="outside"):
        await client.text_document_inline_completion_async(inline_params(uri, 7, 0))
    # A character past the end of a line means the end of the line (LSP spec): any range
    # answered starts there.
    result = await client.text_document_inline_completion_async(inline_params(uri, 0, 99))
    assert isinstance(result, types.InlineCompletionList)
    assert all(item.range.start == types.Position(0, 5) for item in result.items)
    stats = await get_stats(client)
    assert stats["modelReady"]


@module_loop
async def test_stats_count_the_work(client: LanguageClient) -> None:
    uri = open_document(client, "def square(n):\n    \n")
    before = await get_stats(client)
    await inline(client, uri, 1, 4)
    after = await get_stats(client)
    assert after["requests"] == before["requests"] + 1
    # The model ran (it may stop at once, so tokens can stay the same).
    assert after["forwardPasses"] > before["forwardPasses"]
    assert after["tokensGenerated"] >= before["tokensGenerated"]
    assert after["modelMs"] > before["modelMs"]
    assert after["lastLatencyMs"] > 0
    # The same request again is answered from the cache.
    await inline(client, uri, 1, 4)
    cached = await get_stats(client)
    assert cached["cacheHits"] == after["cacheHits"] + 1
    assert cached["forwardPasses"] == after["forwardPasses"]


@module_loop
async def test_model_load_was_reported(client: LanguageClient) -> None:
    messages = [m.message for m in client.log_messages]
    assert any("model ready" in m for m in messages), messages
    for reports in client.progress_reports.values():
        kinds = [r.kind for r in reports]
        assert kinds[0] == "begin" and kinds[-1] == "end", kinds


def change_configuration(client: LanguageClient, settings: Any) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=settings))


@module_loop
async def test_settings_change_while_running(client: LanguageClient) -> None:
    uri = open_document(client, MEAN)
    try:
        change_configuration(client, {"fim": {"enable": False}})
        before = await get_stats(client)
        assert await inline(client, uri, 2, 19) is None
        after = await get_stats(client)
        assert after["requests"] == before["requests"] + 1
        assert after["forwardPasses"] == before["forwardPasses"]

        # A wrong type is reported and the old value stays (still disabled).
        shown = len(client.messages)
        change_configuration(client, {"fim": {"debounceMs": "fast", "enable": "no"}})
        assert await inline(client, uri, 2, 19) is None
        deadline = time.monotonic() + 5
        while len(client.messages) < shown + 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        texts = [m.message for m in client.messages[shown:]]
        assert any("debounceMs must be an integer" in t for t in texts), texts
        assert any("enable must be true or false" in t for t in texts), texts
    finally:
        change_configuration(client, {"enable": True})  # the top level of settings works too
    assert await inline(client, uri, 2, 19) is not None


GEOMETRY = (Path(__file__).resolve().parents[1] / "examples" / "geometry.py").read_text()


@module_loop
async def test_several_candidates_come_as_several_items(client: LanguageClient) -> None:
    uri = open_document(client, GEOMETRY)
    line, character = 16, 15  # `        return |` in Circle.diameter
    invoked = types.InlineCompletionTriggerKind.Invoked
    alone = await client.text_document_inline_completion_async(
        inline_params(uri, line, character, invoked)
    )
    assert_answer(alone, line, character)
    try:
        change_configuration(client, {"fim": {"candidates": 3}})
        result = await client.text_document_inline_completion_async(
            inline_params(uri, line, character, invoked)
        )
        assert_answer(result, line, character, most=3)
        texts = [item.insert_text for item in result.items]
        # The first is the answer without candidates; sampled ones follow it.
        assert len(texts) >= 2 and texts[0] == alone.items[0].insert_text, texts
        for text in texts:
            assert_parses(insert(GEOMETRY, line, character, text))
        # Clients without inline completion get the same candidates, in the same order.
        fallback = await client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
            )
        )
        assert isinstance(fallback, types.CompletionList)
        ordered = sorted(fallback.items, key=lambda item: item.sort_text or "")
        assert [item.text_edit.new_text for item in ordered] == texts
    finally:
        change_configuration(client, {"fim": {"candidates": None}})
    again = await client.text_document_inline_completion_async(
        inline_params(uri, line, character, invoked)
    )
    assert [item.insert_text for item in again.items] == [alone.items[0].insert_text]


@module_loop
async def test_other_languages_are_read_with_their_grammar(client: LanguageClient) -> None:
    cases = [
        ("go", "main.go", "package main\n\nfunc area(w, h int) int {\n\t\n}\n", 3, 1),
        ("rust", "lib.rs", "fn area(w: i32, h: i32) -> i32 {\n    \n}\n", 1, 4),
        ("lua", "init.lua", "local function area(w, h)\n  \nend\n", 1, 2),
        ("plaintext", "notes.txt", "some notes\n\n", 1, 0),
    ]
    for language_id, name, text, line, character in cases:
        uri = f"file:///tmp/fim-test/{uuid.uuid4().hex}/{name}"
        item = types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text)
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))
        result = await client.text_document_inline_completion_async(
            inline_params(uri, line, character)
        )
        assert_answer(result, line, character)
        stats = await get_stats(client)
        expected = None if language_id == "plaintext" else language_id
        assert stats["lastLanguage"] == expected
        assert stats["lastMode"] == ("single_line" if expected is None else "multi_line")


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), loop_scope="module")
async def configured_client(lsp_client: LanguageClient):
    yield
    await lsp_client.shutdown_session()


@module_loop
async def test_initialization_options(configured_client: LanguageClient) -> None:
    options = {"fim": {"enable": False, "lineTokens": "many", "colour": "blue"}}
    await configured_client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES, initialization_options=options)
    )
    await wait_for(configured_client, lambda s: s["modelReady"], MODEL_LOAD_TIMEOUT_S, "load")
    uri = open_document(configured_client, MEAN)
    assert await inline(configured_client, uri, 2, 19) is None
    stats = await get_stats(configured_client)
    assert stats["forwardPasses"] == 0 and stats["requests"] == 1
    deadline = time.monotonic() + 5
    while not configured_client.messages and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert any("lineTokens must be an integer" in m.message for m in configured_client.messages)


# -- a server whose model cannot load -------------------------------------------------


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[*SERVER, "--model", "/nonexistent/model"]),
    loop_scope="module",
)
async def broken_client(lsp_client: LanguageClient):
    yield  # each test initializes the session itself
    await lsp_client.shutdown_session()


@module_loop
async def test_capabilities_and_a_failed_model_load(broken_client: LanguageClient) -> None:
    result = await broken_client.initialize_session(
        types.InitializeParams(capabilities=CAPABILITIES)
    )
    caps = result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert isinstance(caps.text_document_sync, types.TextDocumentSyncOptions)
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental

    stats = await wait_for(broken_client, lambda s: s["modelError"], 60, "the load to fail")
    assert not stats["modelReady"]
    deadline = time.monotonic() + 10
    while not broken_client.messages and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert any(
        m.type == types.MessageType.Error and "could not load" in m.message
        for m in broken_client.messages
    ), broken_client.messages

    # Requests still get an answer: an empty one.
    uri = open_document(broken_client, "def f():\n    \n")
    assert await inline(broken_client, uri, 1, 4) is None


# -- positions (no server needed) -----------------------------------------------------


def test_cursor_offset_counts_utf16_units() -> None:
    line = 'label = "😀é" + str('
    document = Document("file:///x.py", f"{line}x)\nsecond\n", None)
    utf16_column = len(line.encode("utf-16-le")) // 2
    assert utf16_column == len(line) + 1  # the emoji is two UTF-16 units
    offset = cursor_offset(document, types.Position(line=0, character=utf16_column), "utf-16")
    assert document.text[:offset] == line
    utf8_column = len(line.encode("utf-8"))
    offset = cursor_offset(document, types.Position(line=0, character=utf8_column), "utf-8")
    assert document.text[:offset] == line


def test_cursor_offset_bounds() -> None:
    def offset(text: str, line: int, character: int) -> int:
        document = Document("file:///x.py", text, None)
        return cursor_offset(document, types.Position(line, character), "utf-16")

    assert offset("ab\ncd\n", 1, 99) == 5  # past the end of "cd": its end
    assert offset("ab\ncd\n", 2, 0) == 6  # the empty line after the last \n
    with pytest.raises(InvalidRequest):
        offset("ab\ncd\n", 3, 0)
    with pytest.raises(InvalidRequest):
        offset("ab\ncd", 2, 0)  # no final line break: no line 2
    assert offset("", 0, 0) == 0
