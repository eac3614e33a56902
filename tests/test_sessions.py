"""Sessions share only the model: each TCP connection has its own backend choice,
endpoint, settings and counters; sessions that choose the same backend share the one
loaded copy of it (model_host.py), and it is closed once none of them uses it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from remote_servers import INFILL_PATH, Plan, WireServer
from test_reliability import TcpClient, error_code, tcp_server
from wire import ScriptedModel, did_open, initialize, inline, notification, request, scripted_engine

from fim_server.backends import BackendError, BackendSpec, Infill, InfillRequest
from fim_server.config.settings import UserSettings
from fim_server.context import ContextSettings
from fim_server.engine import Engine, EngineSettings
from fim_server.model_host import ModelHost

TEXT = "def f(a, b):\n    return a +\n"
ALPHA = BackendSpec(kind="openai", endpoint="http://127.0.0.1:9/alpha", remote_model="alpha")
FAILING = BackendSpec(kind="openai", endpoint="http://127.0.0.1:9/down", remote_model="down")


class FailingModel(ScriptedModel):
    def infill(self, request: InfillRequest) -> list[Infill]:
        raise BackendError("cannot reach http://127.0.0.1:9/down")


class Loads:
    """A ModelHost loader that records every load: a scripted model per spec, answering
    with the spec's remote_model (the command line's default answers "b")."""

    def __init__(self, step_s: float = 0.0) -> None:
        self.models: list[ScriptedModel] = []
        self.step_s = step_s

    def __call__(self, spec: BackendSpec) -> ScriptedModel:
        kind = FailingModel if spec == FAILING else ScriptedModel
        model = kind(spec.remote_model or "b", steps=20, step_s=self.step_s)
        self.models.append(model)
        return model


def root_engine(loads: Loads) -> Engine:
    engine = Engine(EngineSettings(context=ContextSettings()), host=ModelHost(loads))
    engine.start_loading().result()
    return engine


def answer(engine: Engine) -> str:
    engine.configure(UserSettings(debounce_ms=0, cross_file=False, min_confidence=0))
    return engine.complete_blocking(TEXT, len(TEXT) - 1).text


def test_sessions_with_equal_backends_share_one_loaded_copy() -> None:
    loads = Loads()
    root = root_engine(loads)
    a, b = root.session(), root.session()
    assert a.backend is b.backend is root.backend is loads.models[0]
    assert len(loads.models) == 1 and len(root.host.loaded()) == 1
    b.switch_backend(ALPHA).result()
    a.switch_backend(ALPHA).result()  # already loaded by b: shared, not loaded again
    assert a.backend is b.backend is loads.models[1] and len(loads.models) == 2
    assert answer(a) == answer(b) == "alpha"
    a.close()
    assert not loads.models[1].closed  # b still uses it
    b.close()
    deadline = time.monotonic() + 5
    while not loads.models[1].closed:  # closed on its worker, once no session uses it
        assert time.monotonic() < deadline, "the backend nobody uses was never closed"
        time.sleep(0.01)
    assert [s.spec for s in root.host.loaded()] == [root.settings.backend]
    assert not loads.models[0].closed  # the root engine still holds the default one
    root.close()
    deadline = time.monotonic() + 5
    while not loads.models[0].closed:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_backend_switch_in_one_session_never_touches_another() -> None:
    loads = Loads(step_s=0.02)  # each run takes 0.4 s
    root = root_engine(loads)
    a, b = root.session(), root.session()
    running: list[Any] = []
    thread = threading.Thread(target=lambda: running.append(answer(b)))
    thread.start()
    deadline = time.monotonic() + 5
    while loads.models[0].calls == 0:  # b's request is running on the shared model
        assert time.monotonic() < deadline
        time.sleep(0.005)
    a.switch_backend(ALPHA).result()
    thread.join(10)
    assert running == ["b"], "the other session's running request was stopped"
    assert b.settings.backend == root.settings.backend and b.backend is loads.models[0]
    assert not loads.models[0].closed
    assert answer(a) == "alpha" and answer(b) == "b"
    b.configure(UserSettings(debounce_ms=5))  # an unrelated change in b leaves a alone
    assert a.backend is loads.models[1] and answer(a) == "alpha"
    for engine in (a, b, root):
        engine.close()


def test_statistics_are_per_session() -> None:
    loads = Loads()
    root = root_engine(loads)
    a, b = root.session(), root.session()
    a.switch_backend(FAILING).result()
    assert answer(a) == ""
    assert answer(b) == "b" and answer(b) == "b"  # the second from the cache
    a_stats, b_stats = a.stats(), b.stats()
    assert "127.0.0.1:9/down" in (a_stats.last_error or "") and a_stats.errors == 1
    assert b_stats.last_error is None and b_stats.errors == 0
    assert (a_stats.requests, b_stats.requests) == (1, 2)
    assert b_stats.cache_hits == 1 and a_stats.cache_hits == 0
    assert a_stats.backend_description == "a scripted test backend" and b_stats.model_ready
    assert root.stats().requests == 0
    for engine in (a, b, root):
        engine.close()


# -- over TCP, with a real remote backend for one of the clients -----------------------


async def stats_of(client: TcpClient, msg_id: str) -> dict:
    client.send(request(msg_id, "fim/stats"))
    return (await client.answer(msg_id))["result"]


async def test_tcp_clients_choose_their_own_backend_and_keep_it() -> None:
    wire = WireServer(key=None)
    engine = scripted_engine(ScriptedModel("b"))
    task, port = await tcp_server(engine)
    a, b = await TcpClient.connect(port), await TcpClient.connect(port)
    try:
        remote = {"debounceMs": 0, "crossFile": False, "backend": "llama.cpp"}
        a.send(*initialize("a-init", {"fim": {**remote, "endpoint": wire.url}}))
        await a.answer("a-init")
        b.send(*initialize("b-init"))
        await b.answer("b-init")
        for attempt in range(500):
            a_stats = await stats_of(a, f"a-stats-{attempt}")
            if a_stats["modelReady"]:
                break
            await asyncio.sleep(0.02)
        assert a_stats["backend"] == "llama.cpp" and wire.url in a_stats["backendDescription"]
        a_uri, b_uri = "file:///a/add.py", "file:///b/secret.py"
        b_text = "def private_g(x, y):\n    return x *\n"
        a.send(did_open(a_uri, "def add(a, b):\n    \n"), inline(1, a_uri, 1, 4))
        b.send(did_open(b_uri, b_text), inline(1, b_uri, 1, 14))
        assert (await a.answer(1))["result"]["items"][0]["insertText"] == "return a + b"
        assert (await b.answer(1))["result"]["items"][0]["insertText"] == "b"
        b_stats = await stats_of(b, "b-stats")
        assert b_stats["backend"] == "scripted" and b_stats["requests"] == 1
        # B changes an unrelated setting: A keeps its backend (it used to be switched back
        # to the command line's, reloading it for everyone).
        settings = {"settings": {"fim": {"debounceMs": 5}}}
        b.send(notification("workspace/didChangeConfiguration", settings), inline(2, b_uri, 1, 14))
        assert (await b.answer(2))["result"]["items"][0]["insertText"] == "b"
        a.send(did_open("file:///a/mul.py", "def mul(a, b):\n    \n"))
        a.send(inline(2, "file:///a/mul.py", 1, 4))
        assert (await a.answer(2))["result"]["items"][0]["insertText"] == "return a + b"
        seen = wire.wait_finished(2)
        assert [s.path for s in seen] == [INFILL_PATH, INFILL_PATH]
        assert all("private_g" not in str(s.body) for s in seen), "B's code went to A's server"
        # A's failure is A's: B's counters never name A's endpoint.
        wire.default = Plan(status=500, error="down for maintenance")
        a.send(did_open("file:///a/sub.py", "def sub(a, b):\n    \n"))
        a.send(inline(3, "file:///a/sub.py", 1, 4))
        assert (await a.answer(3))["result"]["items"] == []
        a_stats, b_stats = await stats_of(a, "a-end"), await stats_of(b, "b-end")
        assert "HTTP 500" in a_stats["lastError"] and a_stats["requests"] == 3
        assert b_stats["lastError"] is None and b_stats["errors"] == 0
        assert wire.url not in str(b_stats) and b_stats["requests"] == 2
        # A's document is not open in B's session.
        b.send(inline(3, a_uri, 1, 4))
        assert error_code(await b.answer(3)) == -32602
    finally:
        for client in (a, b):
            await client.close()
        task.cancel()
        engine.close()
        wire.close()


async def test_idle_connections_cannot_hold_every_session_slot() -> None:
    engine = scripted_engine()
    task, port = await tcp_server(engine, max_sessions=2, idle_s=0.3)
    a, b = await TcpClient.connect(port), await TcpClient.connect(port)
    try:
        for name, client in (("a", a), ("b", b)):
            client.send(*initialize(f"{name}-init"))
            await client.answer(f"{name}-init")
        early = await TcpClient.connect(port)  # nobody has been idle long enough yet
        early.send(*initialize("early-init"))
        assert error_code(await early.answer("early-init")) == -32803
        await asyncio.sleep(0.4)
        b.send(request("b-busy", "fim/stats"))  # b is in use; a has sat idle
        await b.answer("b-busy")
        c = await TcpClient.connect(port)
        c.send(*initialize("c-init"))
        assert "result" in await c.answer("c-init")
        while (told := await a.read()) is not None and told.get("method") != "window/showMessage":
            pass  # the messages of its initialize
        assert told is not None and "idle" in told["params"]["message"], told
        assert await a.read() is None  # a was disconnected, b was not
        b.send(request("b-again", "fim/stats"))
        assert "result" in await b.answer("b-again")
        await c.close()
    finally:
        for client in (a, b):
            client.writer.close()
        task.cancel()
        engine.close()


async def test_a_client_that_half_closes_still_gets_its_pending_answer() -> None:
    engine = scripted_engine(ScriptedModel("b", steps=10, step_s=0.05))
    task, port = await tcp_server(engine)
    client = await TcpClient.connect(port)
    try:
        client.send(*initialize("init"))
        await client.answer("init")
        client.send(did_open("file:///half.py", TEXT), inline(1, "file:///half.py", 1, 14))
        await client.writer.drain()
        client.writer.write_eof()  # "I have nothing more to say", and still reading
        answer = await client.answer(1)
        assert answer["result"]["items"][0]["insertText"] == "b"
    finally:
        client.writer.close()
        task.cancel()
        engine.close()
