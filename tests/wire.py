"""LSP on the wire, for the reliability tests: frames built byte by byte (well-formed or
not), a server session run in-process over them with a scripted model, and the answers
read back."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fim_server.backends import Backend, Infill, InfillCancelled, InfillRequest
from fim_server.context import ContextSettings
from fim_server.engine import Engine, EngineSettings
from fim_server.lsp.server import create_server
from fim_server.lsp.transport import FrameReader, Session


@dataclass
class ScriptedModel(Backend):
    """Answers every infill with `answer` after `steps` cancellable steps of `step_s`."""

    answer: str = "b"
    name: str = "scripted"
    description: str = "a scripted test backend"
    context_tokens: int | None = None
    steps: int = 1
    step_s: float = 0.0
    calls: int = 0
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def infill(self, request: InfillRequest) -> list[Infill]:
        with self.lock:
            self.calls += 1
        for _ in range(self.steps):
            if request.should_cancel():
                raise InfillCancelled("stopped")
            time.sleep(self.step_s)
        return [Infill(self.answer, tokens=1, forward_passes=1, confidence=0.5)]

    def close(self) -> None:
        self.closed = True


def scripted_engine(model: ScriptedModel | None = None, cache_size: int = 16) -> Engine:
    engine = Engine(EngineSettings(context=ContextSettings(), cache_size=cache_size))
    engine.use_backend(model or ScriptedModel())
    return engine


def frame(message: Any, header: str = "Content-Length", delta: int = 0) -> bytes:
    """One framed message; `delta` bytes added to the announced length."""
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return f"{header}: {len(body) + delta}\r\n\r\n".encode() + body


def request(msg_id: int | str, method: str, params: Any = None, *, omit_params=False) -> dict:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if not omit_params:
        message["params"] = params
    return message


def notification(method: str, params: Any = None) -> dict:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def initialize(msg_id: int | str = "init", options: Any = None) -> list[dict]:
    options = {"fim": {"debounceMs": 0, "crossFile": False}} if options is None else options
    params = {"processId": None, "rootUri": None, "capabilities": {}}
    params["initializationOptions"] = options
    return [request(msg_id, "initialize", params), notification("initialized", {})]


def did_open(uri: str, text: str, language: str = "python") -> dict:
    item = {"uri": uri, "languageId": language, "version": 1, "text": text}
    return notification("textDocument/didOpen", {"textDocument": item})


def inline(msg_id: int | str, uri: str, line: Any, character: Any) -> dict:
    params = {
        "textDocument": {"uri": uri},
        "position": {"line": line, "character": character},
        "context": {"triggerKind": 2},
    }
    return request(msg_id, "textDocument/inlineCompletion", params)


def parse_frames(data: bytes) -> list[dict]:
    """The messages of a well-formed stream (what the server writes)."""
    messages = []
    pos = 0
    header = re.compile(rb"Content-Length: (\d+)\r\n(?:[^\r\n]+\r\n)*\r\n")
    while pos < len(data):
        match = header.match(data, pos)
        assert match is not None, f"server wrote a bad frame at {pos}: {data[pos : pos + 80]!r}"
        start = match.end()
        end = start + int(match.group(1))
        messages.append(json.loads(data[start:end]))
        pos = end
    return messages


class FeedSource:
    """A byte source the test writes into; it ends when the test closes it."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()

    def feed(self, data: bytes, chunk: int = 0) -> None:
        if chunk <= 0:
            self._queue.put_nowait(data)
            return
        for i in range(0, len(data), chunk):
            self._queue.put_nowait(data[i : i + chunk])

    def close(self) -> None:
        self._queue.put_nowait(b"")

    async def read(self) -> bytes:
        data = await self._queue.get()
        if not data:
            self._queue.put_nowait(b"")
        return data


class Collector:
    """The server's writer: keeps what it writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass

    def messages(self) -> list[dict]:
        return parse_frames(bytes(self.data))

    def responses(self) -> list[dict]:
        return [m for m in self.messages() if "id" in m and "method" not in m]


class InProcessServer:
    """A fim-server session over a FeedSource, run on the caller's event loop."""

    def __init__(self, engine: Engine | None = None, grace_s: float = 0.05, **reader: Any):
        self.engine = engine or scripted_engine()
        self.server = create_server(self.engine)
        self.out = Collector()
        self.server.protocol.set_writer(self.out)
        self.source = FeedSource()
        self.session = Session(self.server, FrameReader(self.source, grace_s=grace_s, **reader))
        self.task: asyncio.Task[int] = asyncio.ensure_future(self.session.run())

    def send(self, *messages: Any, chunk: int = 0) -> None:
        for message in messages:
            data = message if isinstance(message, bytes) else frame(message)
            self.source.feed(data, chunk)

    async def answers(self, ids: set[Any], timeout: float = 10.0) -> dict[Any, list[dict]]:
        """The responses to `ids`, waiting until each has one."""
        deadline = time.monotonic() + timeout
        while True:
            got: dict[Any, list[dict]] = {}
            for response in self.out.responses():
                got.setdefault(response["id"], []).append(response)
            if ids <= got.keys() or time.monotonic() > deadline or self.task.done():
                return got
            await asyncio.sleep(0.005)

    async def answer(self, msg_id: Any, timeout: float = 10.0) -> dict:
        got = await self.answers({msg_id}, timeout)
        assert msg_id in got, f"no answer to {msg_id!r}; server wrote {self.out.messages()}"
        assert len(got[msg_id]) == 1, got[msg_id]
        return got[msg_id][0]

    async def close(self) -> int:
        self.source.close()
        code = await asyncio.wait_for(self.task, 10)
        self.engine.close()
        return code
