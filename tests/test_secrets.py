"""Nothing secret or user-written reaches a log or a message: a hostile session against
the real server process (`--log-level INFO`, as editors run it when asked for logs)
sends its API key and header values in every shape the settings take, and a document in
every message that can be wrong; no line of stderr and no message the server writes
holds the key, a header value or the document's text, and no client error costs a
traceback above DEBUG."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from remote_servers import Plan, WireServer
from wire import did_open, frame, inline, notification, parse_frames, request

KEY = "sk-live-7f3a9c2e4b1d8f6a"
TOKEN = "tok-team-5e8d2c9b7a41"
MARKER = "confidential_payroll_total"
DOCUMENT = f"def {MARKER}(rows):\n    return sum(r.salary for r in rows) + \n"
URI = "file:///srv/payroll.py"


def hostile_messages(endpoint: str) -> list[tuple[bytes, Any]]:
    """(bytes on the wire, the id whose answer is expected or None)."""
    bad_item = {"uri": URI, "languageId": "python", "version": "1", "text": DOCUMENT}
    bad_change = {
        "textDocument": {"uri": URI, "version": "two"},
        "contentChanges": [{"text": DOCUMENT}],
    }
    options = {
        "fim": {
            "debounceMs": 0,
            "crossFile": False,
            "headers": [["Authorization", f"Bearer {KEY}"], ["X-Team-Token", TOKEN]],
            "endpoint": [f"{endpoint}?key={KEY}"],
            "fimTemplate": {"prefix": KEY},
            "remoteModel": 12,
        }
    }
    params = {"processId": None, "rootUri": None, "capabilities": {}}
    sent: list[tuple[bytes, Any]] = [
        (
            frame(request("init", "initialize", {**params, "initializationOptions": options})),
            "init",
        ),
        (frame(notification("initialized", {})), None),
        (frame(notification("textDocument/didOpen", {"textDocument": bad_item})), None),
        (frame(did_open(URI, DOCUMENT)), None),
        (frame(notification("textDocument/didChange", bad_change)), None),
        (frame(inline(1, URI, DOCUMENT, 0)), 1),
        (frame(inline(2, URI, 1, 1.5)), 2),
        (frame(inline(3, "file:///not/open.py", 0, 0)), 3),
        (frame(inline(4, URI, 99, 0)), 4),
        (frame(request(5, "textDocument/completion", {"textDocument": DOCUMENT})), 5),
        (frame(request(6, "no/suchMethod", {"text": DOCUMENT})), 6),
        (frame(b"{" + DOCUMENT.encode()), None),  # a body that is not JSON
        (DOCUMENT.encode() + b"\r\n", None),  # bytes that are no frame at all
        (frame(notification("fim/accepted", {"uri": DOCUMENT, "chars": KEY})), None),
        (frame(notification("$/cancelRequest", {"id": {"text": DOCUMENT}})), None),
    ]
    for shape in (f"Bearer {KEY}", {"Authorization": [KEY]}, {"X-Team-Token": 7, "A": KEY}):
        settings = {"settings": {"fim": {"headers": shape}}}
        sent.append((frame(notification("workspace/didChangeConfiguration", settings)), None))
    # Then valid settings: the remote backend with the key (from the environment) and a
    # secret header; the server refuses the key and echoes it, as servers do.
    remote = {
        "backend": "llama.cpp",
        "endpoint": endpoint,
        "apiKeyEnv": "FIM_TEST_KEY",
        "headers": {"X-Team-Token": TOKEN},
    }
    settings = {"settings": {"fim": remote}}
    sent.append((frame(notification("workspace/didChangeConfiguration", settings)), None))
    sent.append((frame(request(7, "fim/stats")), 7))
    return sent


async def read_messages(stream: asyncio.StreamReader, into: list[dict]) -> None:
    data = b""
    while chunk := await stream.read(65536):
        data += chunk
        try:
            into[:] = parse_frames(data)
        except (AssertionError, ValueError):
            continue  # a frame cut in the middle: the rest is on its way


async def test_a_hostile_session_leaves_no_secret_and_no_document_in_logs_or_messages() -> None:
    wire = WireServer(key="the-key-the-server-wants")
    wire.default = Plan(pieces=["total"])
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "fim_server", "--stdio", "--log-level", "INFO"],
        *["--backend", "llama.cpp", "--endpoint", wire.url],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"FIM_TEST_KEY": KEY, "PATH": "/usr/bin:/bin"},
    )
    assert process.stdin and process.stdout and process.stderr
    messages: list[dict] = []
    reader = asyncio.ensure_future(read_messages(process.stdout, messages))
    stderr = asyncio.ensure_future(process.stderr.read())

    def answers(msg_id: Any) -> list[dict]:
        return [m for m in messages if m.get("id") == msg_id and "method" not in m]

    async def answered(msg_id: Any) -> dict:
        for _ in range(1000):
            if answers(msg_id):
                return answers(msg_id)[0]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no answer to {msg_id}: {messages[-3:]}")

    try:
        expected = []
        for data, msg_id in hostile_messages(wire.url):
            process.stdin.write(data)
            if msg_id is not None:
                expected.append(msg_id)
        for msg_id in expected:
            await answered(msg_id)
        for attempt in range(500):  # the remote backend the valid settings chose
            process.stdin.write(frame(request(f"stats-{attempt}", "fim/stats")))
            if (await answered(f"stats-{attempt}"))["result"]["modelReady"]:
                break
            await asyncio.sleep(0.02)
        process.stdin.write(
            frame(did_open("file:///srv/other.py", "def f(a, b):\n    return a +\n"))
        )
        process.stdin.write(frame(inline(8, "file:///srv/other.py", 1, 14)))
        assert (await answered(8))["result"]["items"] == []  # the key was refused
        # The header and the key did reach the server: they are kept out of the logs, not
        # out of the requests.
        assert wire.seen and wire.seen[-1].headers.get("x-team-token") == TOKEN
        for _ in range(200):  # the failure is told in a showMessage
            if any("refused" in json.dumps(m) for m in messages if m.get("method")):
                break
            await asyncio.sleep(0.02)
        process.stdin.write(frame(request(9, "shutdown")) + frame(notification("exit")))
        assert await asyncio.wait_for(process.wait(), 30) == 0
        await asyncio.wait_for(reader, 10)
        log = (await asyncio.wait_for(stderr, 10)).decode()
    finally:
        if process.returncode is None:
            process.kill()
        wire.close()
    for msg_id in [*expected, 8, 9]:
        assert len(answers(msg_id)) == 1, (msg_id, answers(msg_id))
    assert "error" in answers(1)[0] and answers(2)[0]["error"]["code"] == -32602
    written = [json.dumps(m) for m in messages]
    assert any("setting headers must be" in m for m in written)  # told, without the values
    assert any("the API key was refused" in m for m in written), written[-5:]
    for secret in (KEY, TOKEN, MARKER):
        assert secret not in log, [line for line in log.splitlines() if secret in line]
        assert not [m for m in written if secret in m]
    assert "Traceback" not in log and " ERROR " not in log, log
