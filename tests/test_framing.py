"""Framing: whatever bytes a client sends, the server keeps reading, answers what it can
and finds the next message (fim_server/lsp/transport.py)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest
from wire import FeedSource, InProcessServer, frame, initialize, parse_frames, request

from fim_server.lsp.transport import FrameReader, Malformed, Message

STATS = request(7, "fim/stats", None)


async def read_all(data: bytes, chunk: int = 0, **kw) -> list:
    source = FeedSource()
    source.feed(data, chunk)
    source.close()
    reader = FrameReader(source, grace_s=0.05, **kw)
    frames = []
    while (item := await reader.next()) is not None:
        frames.append(item)
    return frames


def values(frames: list) -> list:
    return [f.value for f in frames if isinstance(f, Message)]


async def test_well_formed_frames_in_any_chunking() -> None:
    messages = [{"id": i, "method": "m", "params": {"s": "é" * i}} for i in range(5)]
    data = b"".join(frame(m) for m in messages)
    for chunk in (0, 1, 7):
        assert values(await read_all(data, chunk)) == messages


async def test_header_names_are_case_insensitive_and_other_headers_are_ignored() -> None:
    one, two = {"id": 1}, {"id": 2}
    content_type = b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
    data = frame(one, "content-length") + content_type + frame(two, "CONTENT-LENGTH")
    assert values(await read_all(data)) == [one, two]


@pytest.mark.parametrize("delta", [10, -10, 1, -1, 200])
async def test_a_length_off_by_some_bytes_loses_neither_message(delta: int) -> None:
    one, two, three = {"id": 1, "x": "a" * 50}, {"id": 2}, {"id": 3}
    data = frame(one, delta=delta) + frame(two) + frame(three)
    assert values(await read_all(data)) == [one, two, three]


async def test_the_last_message_announced_too_long_is_handled_after_a_pause() -> None:
    one = {"id": 1}
    assert values(await read_all(frame(one, delta=10))) == [one]


async def test_a_message_without_headers_is_read_and_the_next_frame_found() -> None:
    one, two = {"id": 1}, {"id": 2}
    data = json.dumps(one).encode() + frame(two)
    assert values(await read_all(data)) == [one, two]


async def test_garbage_is_a_parse_error_and_the_next_frame_is_found() -> None:
    two = {"id": 2}
    frames = await read_all(b"\x00\xffgarbage\r\n\r\nContent-Length: x\r\n\r\n{" + frame(two))
    assert values(frames) == [two]
    assert any(isinstance(f, Malformed) and f.code == -32700 for f in frames)


async def test_an_oversized_frame_is_refused_without_reading_it_into_memory() -> None:
    two = {"id": 2}
    data = b"Content-Length: 1000000000000\r\n\r\n" + b"x" * 5000 + frame(two)
    frames = await read_all(data, max_message_bytes=1000)
    assert isinstance(frames[0], Malformed) and frames[0].code == -32600
    assert values(frames) == [two]


@pytest.mark.parametrize(
    "body", [b"\xff\xfe{}", b"[" * 100_000, b'{"id": 1', b"1" * 10_000, b"{}{}"]
)
async def test_bodies_that_are_not_one_json_value_are_parse_errors(body: bytes) -> None:
    two = {"id": 2}
    frames = await read_all(frame(body) + frame(two))
    assert values(frames)[-1] == two
    assert isinstance(frames[0], Malformed) or body == b"{}{}"


async def test_every_bad_frame_case_is_answered_and_the_session_keeps_listening() -> None:
    """The four cases that left pygls' loop deaf, then a request that must be answered."""
    server = InProcessServer()
    server.send(*initialize())
    await server.answer("init")
    server.send(frame(request(1, "fim/stats"), delta=10))
    server.send(frame(request(2, "fim/stats"), delta=-10))
    server.send(json.dumps(request(3, "fim/stats")).encode())
    server.send(frame(request(4, "fim/stats"), header="content-length"))
    server.send(b"Content-Length: 1000000000000\r\n\r\n")
    server.send(b"Content-Length: 12\r\n\r\n{not json!!}")
    server.send(frame(request(5, "fim/stats")))
    got = await server.answers({1, 2, 3, 4, 5})
    for msg_id in (1, 2, 3, 4, 5):
        assert len(got.get(msg_id, [])) == 1 and "result" in got[msg_id][0], (msg_id, got)
    errors = [r["error"]["code"] for r in got.get(None, [])]
    assert -32600 in errors and -32700 in errors, errors
    assert await server.close() == 1  # the stream ended without shutdown and exit


async def test_a_request_nested_too_deeply_to_parse_is_answered_with_its_own_id() -> None:
    deep = "[" * 20_000 + "]" * 20_000
    first = f'{{"jsonrpc": "2.0", "id": 11, "method": "fim/stats", "params": {deep}}}'
    late = f'{{"jsonrpc": "2.0", "method": "fim/stats", "params": {{"a": {deep}}}, "id": "late"}}'
    server = InProcessServer()
    server.send(*initialize())
    await server.answer("init")
    server.send(frame(first.encode()), frame(late.encode()), frame(request(12, "fim/stats")))
    for msg_id in (11, "late"):
        answer = await server.answer(msg_id)
        assert answer["error"]["code"] == -32600 and "nested" in answer["error"]["message"]
    assert "result" in await server.answer(12)
    assert not [r for r in server.out.responses() if r["id"] is None]
    await server.close()


SERVER = [sys.executable, "-m", "fim_server", "--stdio"]


def run_stdio(data: bytes, timeout: float = 60) -> tuple[int, list[dict]]:
    done = subprocess.run(
        SERVER, input=data, capture_output=True, timeout=timeout, env={**os.environ}
    )
    return done.returncode, parse_frames(done.stdout)


def test_stdio_a_huge_content_length_neither_kills_nor_deafens_the_server() -> None:
    data = b"".join(frame(m) for m in initialize())
    data += b"Content-Length: 1000000000000\r\n\r\n{}"
    data += frame(STATS) + frame(request(8, "shutdown"))
    data += frame({"jsonrpc": "2.0", "method": "exit"})
    code, messages = run_stdio(data)
    responses = {m.get("id"): m for m in messages if "method" not in m}
    assert responses[None]["error"]["code"] == -32600
    assert "result" in responses[7] and responses[8] == {"jsonrpc": "2.0", "id": 8, "result": None}
    assert code == 0


def test_stdio_exit_without_shutdown_exits_1_and_after_shutdown_0() -> None:
    exit_ = frame({"jsonrpc": "2.0", "method": "exit"})
    start = b"".join(frame(m) for m in initialize())
    started = time.monotonic()
    assert run_stdio(start + exit_)[0] == 1
    assert run_stdio(start + frame(request(1, "shutdown")) + exit_)[0] == 0
    assert time.monotonic() - started < 60


async def test_the_stdio_source_reads_a_pipe_without_losing_bytes_on_timeouts() -> None:
    from fim_server.lsp.transport import ThreadedSource

    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as stream:
        source = ThreadedSource(stream, asyncio.get_running_loop())
        reader = FrameReader(source, grace_s=0.01)
        os.write(write_fd, frame({"id": 1}, delta=5))  # waits out the grace period
        first = await reader.next()
        os.write(write_fd, frame({"id": 2}))
        second = await reader.next()
        os.close(write_fd)
        assert await reader.next() is None
    assert values([first, second]) == [{"id": 1}, {"id": 2}]
