"""Reliability from outside: every request gets exactly one answer whatever a client sends,
TCP clients are independent sessions, and memory stays flat under a typing replay.

The server runs in-process with a scripted model (tests/wire.py): the model is not the
point here, and the real one is exercised in test_lsp.py."""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import (
    InProcessServer,
    ScriptedModel,
    did_open,
    frame,
    initialize,
    inline,
    notification,
    request,
    scripted_engine,
)

from fim_server.lsp.server import create_server
from fim_server.lsp.transport import serve_tcp_async

URI = "file:///tmp/fim-test/a.py"
TEXT = "def f(a, b):\n    return a +\n"


async def started(engine=None, options: Any = None) -> InProcessServer:
    server = InProcessServer(engine)
    server.send(*initialize(options=options))
    await server.answer("init")
    return server


def error_code(answer: dict) -> int | None:
    return answer.get("error", {}).get("code")


async def test_requests_before_initialize_get_32002_and_notifications_are_dropped() -> None:
    server = InProcessServer()
    server.send(did_open(URI, TEXT), request(1, "fim/stats"), inline(2, URI, 1, 14))
    assert error_code(await server.answer(1)) == -32002
    assert error_code(await server.answer(2)) == -32002
    server.send(*initialize())
    await server.answer("init")
    server.send(inline(3, URI, 1, 14))  # the didOpen before initialize was not kept
    assert error_code(await server.answer(3)) == -32602
    await server.close()


@pytest.mark.parametrize(
    "position",
    [
        {"line": -1, "character": 0},
        {"line": 2**31, "character": 0},
        {"line": 2**31 - 1, "character": 0},
        {"line": 0, "character": -5},
        {"line": "one", "character": 0},
        None,
        # Not integers, though cattrs would make 1, 1 and 1 of them.
        {"line": 1.5, "character": 14},
        {"line": "1", "character": 14},
        {"line": True, "character": 14},
        {"line": 1, "character": 14.0},
    ],
)
async def test_an_impossible_position_is_invalid_params(position: Any) -> None:
    server = await started()
    server.send(did_open(URI, TEXT))
    message = inline(1, URI, 0, 0)
    message["params"]["position"] = position
    if position is None:
        del message["params"]["position"]
    server.send(message)
    answer = await server.answer(1)
    assert error_code(answer) == -32602, answer
    server.send(inline(2, URI, 1, 14))
    assert (await server.answer(2))["result"]["items"][0]["insertText"] == "b"
    await server.close()


async def test_a_request_without_params_is_answered() -> None:
    server = await started()
    server.send(request(1, "fim/stats", omit_params=True))
    assert "modelReady" in (await server.answer(1))["result"]
    server.send(request(2, "textDocument/inlineCompletion", omit_params=True))
    assert error_code(await server.answer(2)) == -32602
    await server.close()


@pytest.mark.parametrize(
    "message, code",
    [
        ([1, 2], -32600),
        ({"jsonrpc": "1.0", "id": 1, "method": "fim/stats"}, -32600),
        ({"jsonrpc": "2.0", "id": 1}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, -32600),
        ({"jsonrpc": "2.0", "id": [1], "method": "fim/stats"}, -32600),
        ({"jsonrpc": "2.0", "id": 1, "method": "no/suchMethod"}, -32601),
        ({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}, -32600),
    ],
)
async def test_messages_that_are_not_valid_requests_get_an_error(message: Any, code: int) -> None:
    server = await started()
    server.send(message)
    server.send(request(99, "fim/stats"))
    await server.answer(99)
    errors = [r for r in server.out.responses() if r["id"] in (1, None)]
    assert len(errors) == 1 and error_code(errors[0]) == code, errors
    await server.close()


async def test_a_second_initialize_is_refused_and_keeps_the_open_documents() -> None:
    server = await started()
    server.send(did_open(URI, TEXT))
    server.send(*initialize("again"))
    assert error_code(await server.answer("again")) == -32600
    server.send(inline(1, URI, 1, 14))
    assert (await server.answer(1))["result"]["items"][0]["insertText"] == "b"
    await server.close()


async def test_after_shutdown_every_request_gets_32600_and_exit_ends_with_0() -> None:
    server = await started()
    server.send(request(1, "shutdown"))
    assert await server.answer(1) == {"jsonrpc": "2.0", "id": 1, "result": None}
    server.send(request(2, "fim/stats"), inline(3, URI, 0, 0), request(4, "shutdown"))
    for msg_id in (2, 3, 4):
        assert error_code(await server.answer(msg_id)) == -32600
    server.send(notification("exit"))
    assert await asyncio.wait_for(server.task, 5) == 0


async def test_exit_without_shutdown_ends_with_1() -> None:
    server = await started()
    server.send(notification("exit"))
    assert await asyncio.wait_for(server.task, 5) == 1


async def test_a_huge_debounce_is_refused_so_completions_still_answer() -> None:
    server = await started(options={"fim": {"debounceMs": 10**9, "crossFile": False}})
    warnings = [m for m in server.out.messages() if m.get("method") == "window/showMessage"]
    assert any("debounceMs" in m["params"]["message"] for m in warnings), warnings
    server.send(did_open(URI, TEXT), inline(1, URI, 1, 14))
    answer = await server.answer(1, timeout=5)
    assert answer["result"]["items"][0]["insertText"] == "b"
    await server.close()


# -- property-based fuzz: random and malformed frames and messages -------------------------

METHODS = ["fim/stats", "textDocument/inlineCompletion", "textDocument/completion", "no/such"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def rpc_message(draw: st.DrawFn, msg_id: int) -> tuple[dict, bool]:
    """A request (True) or notification (False), with params good, bad or missing."""
    kind = draw(st.sampled_from(["inline", "completion", "request", "change", "cancel", "raw"]))
    line = draw(st.one_of(st.integers(-3, 4), st.sampled_from([2**31, 2**31 - 1, 10**12])))
    character = draw(st.one_of(st.integers(-3, 30), st.just(2**31 - 1)))
    if kind in ("inline", "completion"):
        message = inline(msg_id, URI, line, character)
        if kind == "completion":
            message["method"] = "textDocument/completion"
            del message["params"]["context"]
        return message, True
    if kind == "request":
        method = draw(st.sampled_from(METHODS))
        params = draw(st.one_of(st.none(), json_values))
        return request(msg_id, method, params, omit_params=draw(st.booleans())), True
    if kind == "change":
        text = draw(st.text(alphabet="ab( )\n\t:\ud800😀é", max_size=6))
        rng = {"start": {"line": line, "character": character}, "end": {"line": 1, "character": 2}}
        change = {"textDocument": {"uri": URI, "version": msg_id}, "contentChanges": []}
        change["contentChanges"].append({"range": rng, "text": text})
        return notification("textDocument/didChange", change), False
    if kind == "cancel":
        target = draw(st.one_of(st.integers(0, msg_id), json_values))
        return notification("$/cancelRequest", {"id": target}), False
    keys = st.sampled_from(["jsonrpc", "id", "method", "params"])
    message = draw(st.dictionaries(keys, json_values))
    if message.get("method") == "exit":  # would end the session: tested on its own
        message["method"] = "exit?"
    return message, "id" in message and "method" in message


@st.composite
def wire_item(draw: st.DrawFn, msg_id: int) -> tuple[bytes, int | None]:
    """Bytes for the wire and the id of a request they must get exactly one answer to."""
    how = draw(
        st.sampled_from(["exact", "lower", "too_long", "too_short", "bare", "huge", "garbage"])
    )
    if how == "garbage":
        junk = draw(st.binary(max_size=40).filter(lambda b: b"ength" not in b.lower()))
        return junk + b"\r\n", None
    if how == "huge":
        return b"Content-Length: 99999999999\r\n\r\n", None
    message, is_request = draw(rpc_message(msg_id))
    if how == "bare":
        return json.dumps(message).encode(), None
    delta = {"too_long": draw(st.integers(1, 30)), "too_short": -draw(st.integers(1, 8))}
    header = "content-length" if how == "lower" else "Content-Length"
    data = frame(message, header=header, delta=delta.get(how, 0))
    counted = is_request and _valid_id(message.get("id"))
    return data, msg_id if counted and how in ("exact", "lower") else None


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run: the tests stay deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_fuzz_any_byte_stream_leaves_the_server_answering(data: st.DataObject) -> None:
    """Random frames, good and bad, then one well-formed request: every well-framed
    request is answered exactly once, the server stays alive and answers the last one."""
    count = data.draw(st.integers(1, 12))
    items = [data.draw(wire_item(msg_id=1000 + i)) for i in range(count)]
    chunk = data.draw(st.sampled_from([0, 1, 13]))

    async def scenario() -> None:
        server = await started()
        server.send(did_open(URI, TEXT))
        expected = set()
        for payload, msg_id in items:
            server.send(payload, chunk=chunk)
            if msg_id is not None:
                expected.add(msg_id)
        server.send(b"\r\n" + frame(request("last", "fim/stats")))
        got = await server.answers(expected | {"last"}, timeout=20)
        assert not server.task.done(), "the session ended"
        assert "last" in got and len(got["last"]) == 1, server.out.messages()[-3:]
        for msg_id in expected:
            assert len(got.get(msg_id, [])) == 1, (msg_id, got.get(msg_id))
        assert expected <= got.keys(), (expected - got.keys(), items)
        await server.close()

    asyncio.run(scenario())


# -- TCP: one independent session per connection ----------------------------------------


class TcpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.seen: list[dict] = []

    @classmethod
    async def connect(cls, port: int, receive_buffer: int | None = None) -> TcpClient:
        if receive_buffer is None:
            return cls(*await asyncio.open_connection("127.0.0.1", port))
        # A small kernel buffer, set before connecting (which turns its autotuning off):
        # otherwise a machine whose tcp_rmem allows tens of MB takes in everything a
        # client never reads, and the server never sees it stop.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return cls(*await asyncio.open_connection(sock=sock, limit=receive_buffer))

    def send(self, *messages: dict) -> None:
        for message in messages:
            self.writer.write(frame(message))

    async def read(self, timeout: float = 10.0) -> dict | None:
        """The next message from the server; None when it hangs up."""
        try:
            header = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError:
            return None
        length = int(re.match(rb"Content-Length: (\d+)", header).group(1))
        message = json.loads(await self.reader.readexactly(length))
        self.seen.append(message)
        return message

    async def answer(self, msg_id: Any) -> dict:
        while True:
            message = await self.read()
            assert message is not None, f"connection closed before the answer to {msg_id}"
            if message.get("id") == msg_id and "method" not in message:
                return message

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def tcp_server(
    engine, max_sessions: int = 8, ended: list[Any] | None = None, **options: Any
) -> tuple[asyncio.Task, int]:
    listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    ended = [] if ended is None else ended

    def on_listening(listener: asyncio.Server) -> None:
        listening.set_result(listener.sockets[0].getsockname()[1])

    task = asyncio.ensure_future(
        serve_tcp_async(
            lambda: create_server(engine.session()),
            "127.0.0.1",
            0,
            max_sessions=max_sessions,
            on_listening=on_listening,
            on_session_end=lambda server: (ended.append(server), server.engine.close()),
            **options,
        )
    )
    return task, await asyncio.wait_for(listening, 10)


async def test_two_tcp_clients_are_independent_sessions_over_one_model() -> None:
    model = ScriptedModel("b")
    engine = scripted_engine(model)
    task, port = await tcp_server(engine)
    a, b = await TcpClient.connect(port), await TcpClient.connect(port)
    a.send(*initialize("a-init"))
    await a.answer("a-init")
    a.send(did_open(URI, TEXT))
    b.send(*initialize("b-init"))  # B's initialize must not touch A's documents
    await b.answer("b-init")
    other = "file:///tmp/fim-test/b.py"
    b.send(did_open(other, "def g(x, y):\n    return x *\n"))
    a.send(inline(1, URI, 1, 14))
    b.send(inline(1, other, 1, 14))  # the same id on both connections
    assert (await a.answer(1))["result"]["items"][0]["insertText"] == "b"
    assert (await b.answer(1))["result"]["items"][0]["insertText"] == "b"
    b.send(inline(2, URI, 1, 14))  # A's document is not open in B's session
    assert error_code(await b.answer(2)) == -32602
    assert all(m.get("id") != 2 for m in a.seen)  # and nothing of B's went to A
    await b.close()  # a clean close (FIN) ends B's session only
    await asyncio.sleep(0.1)
    a.send(inline(3, URI, 1, 14))
    assert (await a.answer(3))["result"]["items"][0]["insertText"] == "b"
    c = await TcpClient.connect(port)  # and the server still listens
    c.send(*initialize("c-init"))
    assert "result" in await c.answer("c-init")
    assert model.calls >= 2 and engine.stats().model_ready
    for client in (a, c):
        await client.close()
    task.cancel()
    engine.close()


async def test_a_client_over_the_session_limit_is_told_and_disconnected() -> None:
    engine = scripted_engine()
    task, port = await tcp_server(engine, max_sessions=1)
    a = await TcpClient.connect(port)
    a.send(*initialize("a-init"))
    await a.answer("a-init")
    b = await TcpClient.connect(port)
    b.send(*initialize("b-init"))
    shown = await b.read()
    assert shown is not None and shown["method"] == "window/showMessage"
    assert "refused" in shown["params"]["message"]
    refusal = await b.answer("b-init")
    assert error_code(refusal) == -32803 and "--max-sessions" in refusal["error"]["message"]
    assert await b.read() is None  # hung up
    a.send(request(1, "fim/stats"))
    assert "result" in await a.answer(1)  # the first session is untouched
    await a.close()
    task.cancel()
    engine.close()


async def test_a_client_that_stops_reading_is_disconnected_not_buffered() -> None:
    engine = scripted_engine()
    ended: list[Any] = []
    task, port = await tcp_server(engine, ended=ended, max_unsent_bytes=64 * 1024)
    deaf = await TcpClient.connect(port, receive_buffer=8192)
    deaf.send(*initialize("init"))
    stats = frame(request(0, "fim/stats"))
    for _ in range(30):  # never reads: its answers pile up until the server hangs up
        deaf.writer.write(stats * 1000)
        try:
            await asyncio.wait_for(deaf.writer.drain(), 5)
        except (ConnectionError, TimeoutError):
            break
        if ended:
            break
        await asyncio.sleep(0.05)
    for _ in range(100):
        if ended:
            break
        await asyncio.sleep(0.05)
    assert len(ended) == 1, "the session of a client that stopped reading is still open"
    other = await TcpClient.connect(port)
    other.send(*initialize("init"))
    assert "result" in await other.answer("init")
    await other.close()
    deaf.writer.close()
    task.cancel()
    engine.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_tcp_server_process_outlives_its_clients() -> None:
    port = free_port()
    command = [sys.executable, "-m", "fim_server", "--tcp", f"127.0.0.1:{port}"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                first = await TcpClient.connect(port)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                await asyncio.sleep(0.2)
        first.send(*initialize("init"), request(1, "shutdown"), notification("exit"))
        await first.answer(1)
        while (message := await first.read()) is not None:  # exit ends this session
            assert "method" in message, message  # only notifications (the model's load)
        await first.close()
        second = await TcpClient.connect(port)
        second.send(*initialize("init"))
        assert "result" in await second.answer("init")
        await second.close()  # FIN without shutdown
        await asyncio.sleep(0.5)
        assert process.poll() is None, "the server exited when a client left"
        third = await TcpClient.connect(port)
        third.send(*initialize("init"))
        assert "result" in await third.answer("init")
        await third.close()
    finally:
        process.kill()
        process.wait()


# -- positions and text the parsers and the model cannot take ------------------------------


async def test_a_document_with_a_lone_surrogate_completes_normally() -> None:
    model = ScriptedModel("b")
    server = await started(scripted_engine(model))
    text = "s = '\ud800'\ndef f(a, b):\n    return a +\n"
    server.send(did_open(URI, text), inline(1, URI, 2, 14))
    answer = await server.answer(1)
    assert answer["result"]["items"][0]["insertText"] == "b", answer
    # An edit next to the surrogate, then another completion: the document stays in step.
    at = {"line": 0, "character": 6}
    change = {"range": {"start": at, "end": at}, "text": "\udc00x"}
    params = {"textDocument": {"uri": URI, "version": 2}, "contentChanges": [change]}
    server.send(notification("textDocument/didChange", params), inline(2, URI, 2, 14))
    assert (await server.answer(2))["result"]["items"][0]["insertText"] == "b"
    assert server.engine.documents.get(URI).text == text[:6] + "\udc00x" + text[6:]
    await server.close()


async def test_a_position_inside_a_surrogate_pair_never_gets_a_range_inside_it() -> None:
    server = await started()
    # The emoji takes UTF-16 units 19 and 20 of line 1; 20 is inside the pair.
    server.send(did_open(URI, "def f(a, b):\n    # sum of a and 😀\n"))
    for msg_id, character, start in ((1, 21, 21), (2, 20, 21), (3, 19, 19)):
        server.send(inline(msg_id, URI, 1, character))
        (item,) = (await server.answer(msg_id))["result"]["items"]
        assert item["range"]["start"] == {"line": 1, "character": start}, (character, item)
        assert item["range"]["end"] == item["range"]["start"]
    await server.close()


def test_a_keystroke_on_a_200k_character_line_costs_no_more_than_on_a_normal_line() -> None:
    from fim_server.config.settings import UserSettings
    from fim_server.context.documents import DocumentStore, Position, TextChange

    engine = scripted_engine()
    engine.configure(UserSettings(debounce_ms=0, cross_file=False))
    long_line = "x = [" + ", ".join(str(i) for i in range(40_000)) + "]"
    assert len(long_line) > 200_000
    store: DocumentStore = engine.documents
    tail = "\n\ndef f(a):\n    return a\n"
    store.open("file:///long.py", f"import os\n\n{long_line}{tail}", "python")
    store.open("file:///short.py", "import os\n\nx = [1, 2]\n\ndef f(a):\n    return a\n", "python")

    def keystrokes(uri: str, column: int) -> float:
        started = time.perf_counter()
        for i in range(20):
            position = Position(2, column + i)
            document = store.change(uri, i + 2, [TextChange("1", position, position)])
            after = Position(2, column + i + 1)
            engine.complete_blocking(document.text, document.offset_at(after, "utf-16"), uri=uri)
        return time.perf_counter() - started

    keystrokes("file:///short.py", 5)  # warm up
    short = keystrokes("file:///short.py", 5)
    long = keystrokes("file:///long.py", len(long_line) // 2)
    engine.close()
    assert long < max(3 * short, 0.2), (long, short)


# -- bounded memory ------------------------------------------------------------------------


def test_the_cross_file_index_is_bounded_and_pruned_when_documents_close() -> None:
    from fim_server.config.settings import UserSettings
    from fim_server.context.crossfile import MAX_INDEXED_CHARS, MAX_INDEXED_DOCUMENTS

    engine = scripted_engine(cache_size=0)
    engine.configure(UserSettings(debounce_ms=0, cross_file=True))
    body = "".join(f"def helper_{i}(value_{i}):\n    return value_{i} + {i}\n" for i in range(150))
    largest = 0
    for n in range(200):
        uri = f"file:///tmp/fim-test/m{n}.py"
        engine.documents.open(uri, body + f"def f(a, b):\n    return helper_{n}(a) +\n", "python")
        text = engine.documents.get(uri).text
        engine.complete_blocking(text, len(text) - 1, uri=uri)
        if n % 3:
            engine.documents.close(uri)
        index = engine._cross_file
        largest = max(largest, index.chars)
        assert len(index) <= MAX_INDEXED_DOCUMENTS and index.chars <= MAX_INDEXED_CHARS
    for uri in [f"file:///tmp/fim-test/m{n}.py" for n in range(200)]:
        engine.documents.close(uri)
    last = "file:///tmp/fim-test/last.py"
    engine.documents.open(last, "def f(a, b):\n    return a +\n", "python")
    text = engine.documents.get(last).text
    engine.complete_blocking(text, len(text) - 1, uri=last)
    assert len(engine._cross_file) == 0 and engine._cross_file.chars == 0  # all closed
    assert largest > 0  # the index was in use
    engine.close()


def test_the_token_count_memo_is_bounded_by_entries_and_characters() -> None:
    from fim_server.context.window import LineTokenCounter

    counted: list[str] = []
    memo = LineTokenCounter(lambda text: counted.append(text) or len(text), max_chars=100_000)
    line = "values = [" + "1, " * 3000  # a long line typed on: a new key per keystroke
    for i in range(2000):
        assert memo(line + str(i)) == len(line) + len(str(i))
        assert memo.chars <= 100_000 and len(memo) <= 4_096
    assert memo("short line\n") == 11 and memo("short line\n") == 11
    assert counted.count("short line\n") == 1  # short lines are still remembered
    assert memo("\ud800x") == 2 and "\ufffdx" in counted  # the counter never sees a surrogate


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def test_soak_typing_with_cancels_answers_every_request_and_memory_stays_flat() -> None:
    """A few thousand keystrokes over a dozen documents, each with a completion request,
    30% of them cancelled: every request is answered exactly once, and memory after the
    first 500 keystrokes does not grow."""
    model = ScriptedModel("total", steps=3, step_s=0.0005)
    server = await started(scripted_engine(model, cache_size=256))
    rng = random.Random(16)
    documents = [f"file:///tmp/fim-test/soak{i}.py" for i in range(12)]
    lines = {uri: 1 for uri in documents}
    for uri in documents:
        server.send(did_open(uri, "def f(a, b):\n    x = a\n"))
    out = server.out
    requests = 0
    baseline = None
    for step in range(3000):
        uri = rng.choice(documents)
        # Type a character at the end of the last line; every 40th, start a new line.
        text = "\n    y = " if step % 40 == 0 else rng.choice("abc+ ")
        at = {"line": lines[uri], "character": 10_000}  # past the end: the end of the line
        change = {"range": {"start": at, "end": at}, "text": text}
        params = {"textDocument": {"uri": uri, "version": step + 2}, "contentChanges": [change]}
        server.send(notification("textDocument/didChange", params))
        lines[uri] += text.count("\n")
        server.send(inline(step, uri, lines[uri], 10_000))
        requests += 1
        if rng.random() < 0.3:
            server.send(notification("$/cancelRequest", {"id": step}))
        if step % 100 == 99:
            got = await server.answers(set(range(step - 99, step + 1)), timeout=30)
            assert all(len(got.get(i, [])) == 1 for i in range(step - 99, step + 1)), step
            del out.data[:]  # the test's own copy of the answers is not the server's memory
            if len(documents) > 6 and step % 500 == 499:
                # Close a document and open a fresh one, as an editor's tabs come and go.
                gone = documents.pop(0)
                closed = {"textDocument": {"uri": gone}}
                server.send(notification("textDocument/didClose", closed))
                fresh = f"file:///tmp/fim-test/soak-new{step}.py"
                documents.append(fresh)
                lines[fresh] = 1
                server.send(did_open(fresh, "def f(a, b):\n    x = a\n"))
            if step == 499:
                baseline = rss_kb()
    assert requests == 3000 and baseline is not None
    growth = rss_kb() - baseline
    assert growth < max(baseline // 10, 10_000), f"RSS grew {growth} kB from {baseline} kB"
    stats = server.engine.stats()
    assert stats.requests > 0 and model.calls > 0
    # pygls keeps a future per generator-handled notification unless the session drops it.
    assert len(server.server.protocol._request_futures) < 20
    await server.close()


def test_a_5_mb_document_is_completed_without_keeping_its_parse_tree() -> None:
    from fim_server.config.settings import UserSettings
    from fim_server.context import Mode

    engine = scripted_engine()
    engine.configure(UserSettings(debounce_ms=0, cross_file=False))
    body = "".join(
        f"def helper_{i}(value, other):\n    result = value + other * {i}\n    return result\n\n"
        for i in range(60_000)
    )
    text = body + "def f(a, b):\n    return a +\n"
    assert len(text) > 5_000_000
    before = rss_kb()
    engine.documents.open("file:///big.py", text, "python")
    for _ in range(3):
        completion = engine.complete_blocking(text, len(text) - 1, uri="file:///big.py")
        assert completion.text == "b" and completion.mode is Mode.SINGLE_LINE
    document = engine.documents.get("file:///big.py")
    assert document.full_parses == 0 and document.incremental_parses == 0
    grown_mb = (rss_kb() - before) / 1024
    assert grown_mb < 60, f"RSS grew {grown_mb:.0f} MB"  # a kept tree alone takes ~170 MB
    engine.close()


async def test_a_request_sees_the_document_as_it_was_when_asked() -> None:
    """A didClose (or didChange) right behind a request in the same read must not reach the
    request's handler first."""
    server = await started()
    server.send(did_open(URI, TEXT))
    closed = notification("textDocument/didClose", {"textDocument": {"uri": URI}})
    server.send(frame(inline(1, URI, 1, 14)) + frame(closed))
    answer = await server.answer(1)
    assert answer.get("result", {}).get("items", [{}])[0].get("insertText") == "b", answer
    await server.close()


async def test_a_request_cancelled_before_its_answer_is_sent_gets_32800() -> None:
    """An answer that needs no model (here the cache's) is ready in its handler's first
    step, but pygls sends it a loop turn later; a cancel read in that turn (right behind
    the request, in the same read) still comes before the answer: -32800, as LSP asks."""
    server = await started()
    server.send(did_open(URI, TEXT), inline(1, URI, 1, 14))
    assert (await server.answer(1))["result"]["items"][0]["insertText"] == "b"
    cancel = notification("$/cancelRequest", {"id": 2})
    server.send(frame(inline(2, URI, 1, 14)) + frame(cancel))
    assert error_code(await server.answer(2)) == -32800
    server.send(inline(3, URI, 1, 14))  # and the same request, not cancelled, is answered
    assert (await server.answer(3))["result"]["items"][0]["insertText"] == "b"
    assert server.engine.stats().cache_hits == 2
    await server.close()


def test_engine_sessions_share_one_model_and_nothing_else() -> None:
    model = ScriptedModel("b")
    engine = scripted_engine(model)
    first, second = engine.session(), engine.session()
    assert first.backend is second.backend is model
    first.documents.open(URI, TEXT, "python")
    assert second.documents.get(URI) is None
    from fim_server.config.settings import UserSettings

    first.configure(UserSettings(enable=False))
    assert second.user_settings.enable
    first.close()  # a session's close leaves the model serving the others
    assert second.complete_blocking(*_cursor_at_end(TEXT)).text == "b"
    engine.close()


def _cursor_at_end(text: str) -> tuple[str, int]:
    return text, len(text) - 1
