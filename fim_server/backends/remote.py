"""Remote backends: the middle is written by an inference server over HTTP.

- `mercury`: Inception Labs' fill-in-the-middle API, `POST {endpoint}/v1/fim/completions`
  (`model`, `prompt` = the prefix, `suffix`, `max_tokens`, `stop`, `stream`; Bearer key
  from INCEPTION_API_KEY), answered like OpenAI's completions: `choices[].text`,
  `finish_reason`, `usage`, streamed as server-sent events ending in `data: [DONE]`.
- `openai`: any OpenAI-compatible `POST {endpoint}/v1/completions` (vLLM, SGLang,
  llama.cpp's server, hosted FIM APIs) with `prompt` and `suffix`; or, with a FIM
  template, one raw `prompt` written with the model's own FIM tokens (for servers that
  ignore `suffix`).
- `llama.cpp`: llama.cpp's server `POST {endpoint}/infill` with `input_prefix`,
  `input_suffix` and `input_extra` (other files' chunks), streamed as `data:` events whose
  last one says `"stop": true`.

How a request runs. The engine calls a backend from its one worker thread and expects a
blocking call; an HTTP request that can be abandoned at any moment wants an event loop.
So each backend owns a private asyncio loop on a daemon thread with one pooled
`httpx.AsyncClient` (kept-alive connections: after the first request no TCP or TLS
handshake is paid again). `infill` hands the request to that loop and waits for it in
short slices (`POLL_S`), asking `should_cancel` between slices. When it says stop (the
editor sent `$/cancelRequest`, or a newer keystroke superseded the request), the request's
task is cancelled: the cancellation lands in whatever the task awaits (connecting,
sending, reading the next event), and leaving the `client.stream(...)` block closes the
response before it was read to the end, which closes its connection instead of returning
it to the pool. The server sees the disconnect and stops generating (llama.cpp does), and
`infill` raises InfillCancelled within about POLL_S.

Answers are always streamed, and the stream is closed early as soon as the text is
complete for post-processing: a single-line completion at its first line break, a block at
its first line that leaves the block (dedent, or a closer of the enclosing code): the
cuts post-processing would make anyway, which the engine's `InfillRequest.done` tells.

Failures (connection refused, timeout, 401/403, 404, 429, 5xx, a server that dies
mid-answer, malformed JSON or events) raise BackendError with one line a user can act on;
the engine answers empty and the server tells the editor once. After a refusal the
backend waits a moment (RETRY_S, or the server's Retry-After) before it tries again; a
timeout or a cancelled request never makes the next one wait. The API key is read from the
environment once, sent only in the Authorization header, and scrubbed from every message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from tokenizers import Regex, pre_tokenizers

from .base import Backend, BackendError, BackendSpec, Infill, InfillCancelled, InfillRequest

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How often a waiting `infill` asks `should_cancel`: the most a cancelled request lingers.
POLL_S = 0.01
# After a server refused a request (connection refused, 429, 5xx, a stream cut off), the
# requests of the next RETRY_S answer empty without touching the network; the first one
# after it tries again, so a server that is back is used again within RETRY_S. A server
# that names its own wait (Retry-After) gets it, up to RETRY_AFTER_CAP_S. A refusal that
# will not go away by itself (401/403, 404, 501: a wrong key, path or model) waits
# doubling from RETRY_S up to CONFIG_BACKOFF_CAP_S. A timeout never makes later requests
# wait: a slow model is not a broken one.
RETRY_S = 1.0
RETRY_AFTER_CAP_S = 30.0
CONFIG_BACKOFF_CAP_S = 30.0
# Characters per token, for sizing the context where the server's tokenizer is unknown
# (about four for code in BPE vocabularies).
CHARS_PER_TOKEN = 4
# At most this much of an error body goes into a message.
ERROR_BODY_CHARS = 200


@dataclass(frozen=True)
class KindDefaults:
    endpoint: str | None  # None: the user must name one
    model: str | None  # None: no `model` field unless the user names one
    api_key_env: str | None  # None: no key unless the user names a variable
    key_required: bool


DEFAULTS: dict[str, KindDefaults] = {
    "mercury": KindDefaults(
        "https://api.inceptionlabs.ai", "mercury-edit-2", "INCEPTION_API_KEY", True
    ),
    "openai": KindDefaults(None, None, "OPENAI_API_KEY", False),
    "llama.cpp": KindDefaults("http://127.0.0.1:8080", None, None, False),
}


@dataclass(frozen=True)
class Exchange:
    """Timings of the last request, for logs and the latency benchmark."""

    wall_ms: float  # from sending the request to closing the response
    first_byte_ms: float  # until the response headers arrived
    server_ms: float | None  # the server's own time, where it reports it (llama.cpp)
    early_stop: bool  # the stream was closed because the text was complete


# Qwen2.5-Coder's fill-in-the-middle and repository tokens, in FimTokens' order.
QWEN_FIM_TOKENS = (
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|repo_name|>",
    "<|file_sep|>",
)


# Qwen2's pre-tokenizer (its tokenizer.json): BPE merges never cross these pieces.
QWEN_PRETOKENIZER = pre_tokenizers.Split(
    Regex(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
    behavior="isolated",
)


def _gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\' or code < 0x20 or code > 0x7E:
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\U{code:08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@dataclass(frozen=True)
class FimTokens:
    """A model's FIM token ids; empty (false) when it lacks them."""

    prefix: int = -1
    suffix: int = -1
    middle: int = -1
    repo: int = -1
    file_sep: int = -1

    def __bool__(self) -> bool:
        return self.prefix >= 0


class _Failure(Exception):
    """A failed request: `message` for the user. `refused`: the server (or the network)
    turned the request away or broke it off, so the next ones wait a moment; a timeout
    or a malformed answer is that request's failure only. `retry_after`: the server's
    own wait, seconds."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        refused: bool = False,
        lasting: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.refused = refused
        self.lasting = lasting  # a wrong key, path or model: it will not pass by itself


def _base_url(endpoint: str) -> str:
    """The server's root URL: a trailing `/` or `/v1` (OpenAI clients' convention) dropped,
    since each backend adds its own full path."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BackendError(f"endpoint {endpoint!r} is not an http:// or https:// URL")
    base = endpoint.rstrip("/")
    return base.removesuffix("/v1")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _server_message(body: bytes) -> str:
    """What an error body says, in one short line: OpenAI's `{"error": {"message"}}`,
    FastAPI's `{"detail"}`, llama.cpp's `{"error": {"message"}}`, or the text itself."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
        elif isinstance(data.get("detail"), str):
            text = data["detail"]
        elif isinstance(data.get("message"), str):
            text = data["message"]
    text = " ".join(text.split())
    return text[:ERROR_BODY_CHARS] + ("…" if len(text) > ERROR_BODY_CHARS else "")


def _connect_reason(exc: BaseException) -> str:
    """Why a connection failed, from the OS error under httpx's own."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__


def _line_done(text: str) -> bool:
    return "\n" in text


class _LoopThread:
    """A private event loop on a daemon thread, with one pooled HTTP client."""

    def __init__(self, timeout_s: float) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="fim-remote", daemon=True
        )
        self._thread.start()
        # Per-phase limits; the whole request's deadline is enforced around it.
        timeout = httpx.Timeout(timeout_s)
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)

        async def make() -> httpx.AsyncClient:
            return httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False)

        self.client: httpx.AsyncClient = self.submit(make()).result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], should_cancel: Callable[[], bool]) -> T:
        """Run `coro` on the loop; cancel it (closing its connection) as soon as
        `should_cancel()` says so."""
        future = self.submit(coro)
        while True:
            try:
                return future.result(timeout=POLL_S)
            except FutureTimeout:
                if should_cancel():
                    future.cancel()
                    # Let the task unwind (close its response) before the next request.
                    try:
                        future.result(timeout=1.0)
                    except BaseException:  # cancelled, or failed meanwhile: either way done
                        pass
                    raise InfillCancelled("cancelled during the request") from None

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self.submit(self.client.aclose()).result(timeout=2.0)
        except Exception:  # closing: nothing left to report to
            logger.debug("closing the HTTP client failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            self.loop.close()


class RemoteBackend(Backend):
    """What the three remote kinds share: the loop, the key, streaming, failures and
    backoff. Subclasses say where a request goes, what it carries and how to read its
    events."""

    kind = ""
    path = ""
    unsupported_hint = ""  # what to do about a 501

    def __init__(self, spec: BackendSpec) -> None:
        defaults = DEFAULTS[self.kind]
        endpoint = spec.endpoint or defaults.endpoint
        if not endpoint:
            raise BackendError(
                f"backend {self.kind} needs an endpoint (--endpoint, setting endpoint)"
            )
        self.base = _base_url(endpoint)
        self.url = self.base + self.path
        self.model = spec.remote_model or defaults.model
        self.timeout_s = spec.timeout_ms / 1000
        if self.timeout_s <= 0:
            raise BackendError("timeoutMs must be positive")
        key_env = spec.api_key_env or defaults.api_key_env
        self._key = os.environ.get(key_env, "") if key_env else ""
        if defaults.key_required and not self._key:
            raise BackendError(
                f"backend {self.kind} needs an API key: set the environment variable "
                f"{key_env} (or name another one with apiKeyEnv)"
            )
        self._key_env = key_env
        headers = {"Accept": "text/event-stream, application/json"}
        headers.update(dict(spec.headers))
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        self._headers = headers
        self._secrets = [v for v in (self._key, *dict(spec.headers).values()) if len(v) >= 4]
        self.fim_template = spec.fim_template
        self.name = self.kind
        model = f" ({self.model})" if self.model else ""
        self.description = f"{self.kind}{model} at {self.base}"
        # The server's tokenizer is unknown: the context is measured in characters.
        self.context_tokens: int | None = None
        self._config_backoff_s = 0.0
        self._quiet_until = 0.0
        self._probs: list[float] = []  # token probabilities of the answer being read
        self._last_failure = ""
        self.last_exchange: Exchange | None = None
        self.last_prompt_chars = 0  # the context the last request sent, for benchmarks
        self._loop = _LoopThread(self.timeout_s)

    # -- the Backend protocol ---------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def infill(self, request: InfillRequest) -> list[Infill]:
        return [self._infill(request)]

    def close(self) -> None:
        self._loop.close()

    # -- one request ------------------------------------------------------------------

    def _infill(self, prompt: InfillRequest) -> Infill:
        """One middle. The stream is closed early where `prompt.done` says the text is
        complete (without it: a single-line middle at its first line break)."""
        done = prompt.done or (_line_done if prompt.single_line else None)
        should_cancel = prompt.should_cancel
        now = time.monotonic()
        if now < self._quiet_until:
            # Waiting after a refusal: no request until the wait ends (it was reported).
            raise BackendError(self._last_failure)
        if should_cancel():
            raise InfillCancelled("cancelled before the request")
        body = self.request_body(prompt)
        self.last_prompt_chars = len(prompt.extra) + len(prompt.prefix) + len(prompt.suffix)
        self._probs = []
        try:
            text, tokens = self._loop.run(self._exchange(body, done), should_cancel)
        except _Failure as failure:
            raise self._failed(failure) from None
        self._config_backoff_s = 0.0
        self._last_failure = ""
        confidence = sum(self._probs) / len(self._probs) if self._probs else None
        return Infill(text, tokens, 0, confidence)

    def _failed(self, failure: _Failure) -> BackendError:
        message = self._scrub(f"{self.kind} at {self.base}: {failure}")
        wait = 0.0
        if failure.retry_after is not None:
            wait = min(failure.retry_after, RETRY_AFTER_CAP_S)
        elif failure.lasting:
            self._config_backoff_s = min(
                max(self._config_backoff_s * 2, RETRY_S), CONFIG_BACKOFF_CAP_S
            )
            wait = self._config_backoff_s
        elif failure.refused:
            wait = RETRY_S
        if wait > 0:
            self._quiet_until = time.monotonic() + wait
            self._last_failure = message
            logger.warning("%s (next try in %.1f s)", message, wait)
        else:
            logger.warning("%s", message)
        return BackendError(message)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def _exchange(
        self, body: dict[str, Any], done: Callable[[str], bool] | None
    ) -> tuple[str, int]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                url, body, lead = await self.prepare(body)
                return await self._stream(url, body, lead, done, started)
        except TimeoutError:
            raise _Failure(
                f"no complete answer within {self.timeout_s * 1000:.0f} ms (timeoutMs)"
            ) from None
        except httpx.ConnectError as exc:
            raise _Failure(
                f"cannot connect ({_connect_reason(exc)}); is the server running?",
                refused=True,
            ) from None
        except httpx.TimeoutException:
            raise _Failure(
                f"no complete answer within {self.timeout_s * 1000:.0f} ms (timeoutMs)"
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _Failure(
                f"the connection broke mid-answer ({type(exc).__name__})", refused=True
            ) from None
        except httpx.HTTPError as exc:
            raise _Failure(f"request failed ({type(exc).__name__}: {exc})") from None

    async def _stream(
        self,
        url: str,
        body: dict[str, Any],
        lead: str,
        done: Callable[[str], bool] | None,
        started: float,
    ) -> tuple[str, int]:
        request = self._loop.client.build_request(
            "POST", url, json=body, headers=self._headers, timeout=self.timeout_s
        )
        response = await self._loop.client.send(request, stream=True)
        try:
            first_byte_ms = (time.perf_counter() - started) * 1000
            if response.status_code >= 400:
                raise self._http_failure(response, await response.aread())
            parts: list[str] = []
            tokens = 0
            server_ms: float | None = None
            early = False
            kind = response.headers.get("content-type", "")
            events = self._whole(response) if "application/json" in kind else _sse_events(response)
            async for event in events:
                piece, finished, usage, timing = self.read_event(event)
                parts.append(piece)
                tokens = usage if usage is not None else tokens
                server_ms = timing if timing is not None else server_ms
                if finished:
                    break
                if done is not None and piece and done(_after(lead, "".join(parts))):
                    early = True
                    break
            self.last_exchange = Exchange(
                (time.perf_counter() - started) * 1000, first_byte_ms, server_ms, early
            )
            logger.debug(
                "remote timing: wall_ms=%.1f first_byte_ms=%.1f server_ms=%s early_stop=%s",
                self.last_exchange.wall_ms,
                first_byte_ms,
                "-" if server_ms is None else f"{server_ms:.1f}",
                early,
            )
            return _after(lead, "".join(parts)), tokens
        finally:
            # Unread (early stop, cancellation): the connection is closed, not pooled.
            await response.aclose()

    async def _whole(self, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        """A server that ignored `stream` and sent one JSON answer."""
        raw = await response.aread()
        try:
            data = json.loads(raw)
        except ValueError:
            raise _Failure(f"malformed JSON in the answer: {_server_message(raw)!r}") from None
        if not isinstance(data, dict):
            raise _Failure("malformed answer: expected a JSON object")
        yield data

    def _http_failure(self, response: httpx.Response, body: bytes) -> _Failure:
        status = response.status_code
        said = _server_message(body)
        said = f": {said}" if said else ""
        if status in (401, 403):
            where = f"${self._key_env}" if self._key_env else "apiKeyEnv"
            return _Failure(
                f"HTTP {status}, the API key was refused (check {where}){said}", lasting=True
            )
        if status == 404:
            model = f"model {self.model!r}" if self.model else "the model"
            return _Failure(f"HTTP 404 for {self.path}: wrong path or {model}{said}", lasting=True)
        if status == 429:
            return _Failure(f"HTTP 429, rate limited{said}", _retry_after(response), refused=True)
        if status == 501:
            return _Failure(f"HTTP 501, not supported{said}{self.unsupported_hint}", lasting=True)
        if status >= 500:
            return _Failure(
                f"HTTP {status}, server error{said}", _retry_after(response), refused=True
            )
        return _Failure(f"HTTP {status}{said}")

    # -- what each kind sends and reads ---------------------------------------------------

    def request_body(self, prompt: InfillRequest) -> dict[str, Any]:
        raise NotImplementedError

    async def prepare(self, body: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        """Where `body` goes and in what final form, once the server has been asked what
        it needs to know (within the request's timeout), and the text the server's answer
        starts with that is not part of the completion (text the user typed)."""
        return self.url, body, ""

    def read_event(self, event: dict[str, Any]) -> tuple[str, bool, int | None, float | None]:
        """(text, finished, completion tokens if told, server ms if told) of one event."""
        raise NotImplementedError


def _after(lead: str, text: str) -> str:
    """The completion in an answer that must start with `lead`: "" while the answer is
    shorter, and "" if it does not start with it (a server that ignored the grammar)."""
    return text[len(lead) :] if text.startswith(lead) else ""


async def _sse_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a server-sent event stream, until `data: [DONE]` or its end."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                payload = "\n".join(data)
                data = []
                if payload.strip() == "[DONE]":
                    return
                yield _event_json(payload)
            continue
        if line.startswith(":"):
            continue  # a comment (keep-alive)
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "error":  # llama.cpp reports a failure mid-stream this way
            raise _Failure(
                f"the server failed mid-answer: {_server_message(value.encode())}", refused=True
            )
        elif field not in ("event", "id", "retry"):
            raise _Failure(f"malformed event stream: unexpected line {line[:60]!r}")
    if data:
        payload = "\n".join(data)
        if payload.strip() != "[DONE]":
            yield _event_json(payload)


def _event_json(payload: str) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError:
        raise _Failure(f"malformed JSON in an event: {payload[:60]!r}") from None
    if not isinstance(event, dict):
        raise _Failure(f"malformed event: expected a JSON object, got {payload[:60]!r}")
    if "error" in event and "choices" not in event and "content" not in event:
        raise _Failure(f"the server failed mid-answer: {_server_message(payload.encode())}")
    return event


def _choice_event(event: dict[str, Any]) -> tuple[str, bool, int | None, float | None]:
    """An OpenAI-style completion chunk (or whole answer): `choices[0].text`,
    `finish_reason`, `usage.completion_tokens`."""
    choices = event.get("choices")
    usage = event.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    tokens = tokens if isinstance(tokens, int) else None
    timings = _timings_ms(event.get("timings"))
    if choices == [] and (usage is not None or timings is not None):
        return "", False, tokens, timings  # a usage-only chunk (stream_options)
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Failure("malformed answer: no choices[0]")
    text = choices[0].get("text")
    if not isinstance(text, str):
        raise _Failure("malformed answer: choices[0].text is not a string")
    return text, choices[0].get("finish_reason") is not None, tokens, timings


def _timings_ms(timings: Any) -> float | None:
    """llama.cpp's own time for a request: prompt processing plus generation."""
    if not isinstance(timings, dict):
        return None
    total = 0.0
    for key in ("prompt_ms", "predicted_ms"):
        value = timings.get(key)
        if isinstance(value, int | float):
            total += value
    return total


def _log_llama_timings(timings: dict[str, Any]) -> None:
    """llama.cpp's account of one request, at debug level: where its time went (a prompt
    read again from the start, against one the cache covered; tokens written)."""
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "llama.cpp: prompt %s tokens read in %s ms (%s from the cache), "
            "%s tokens written in %s ms",
            timings.get("prompt_n"), _rounded(timings.get("prompt_ms")),
            timings.get("cache_n", "?"), timings.get("predicted_n"),
            _rounded(timings.get("predicted_ms")),
        )  # fmt: skip


def _rounded(value: Any) -> Any:
    return round(value) if isinstance(value, int | float) else value


def _fill(template: str, prefix: str, suffix: str) -> str:
    # Substituted once each, in one pass: code may itself contain `{suffix}`.
    return re.sub(
        r"\{(prefix|suffix)\}", lambda m: prefix if m[1] == "prefix" else suffix, template
    )


class MercuryBackend(RemoteBackend):
    kind = "mercury"
    path = "/v1/fim/completions"

    def request_body(self, prompt: InfillRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt.extra + prompt.prefix,
            "suffix": prompt.suffix,
            "max_tokens": prompt.max_tokens,
            "stream": True,
        }
        if prompt.single_line:
            body["stop"] = ["\n"]
        return body

    def read_event(self, event: dict[str, Any]) -> tuple[str, bool, int | None, float | None]:
        return _choice_event(event)


class OpenAIBackend(RemoteBackend):
    kind = "openai"
    path = "/v1/completions"

    def __init__(self, spec: BackendSpec) -> None:
        template = spec.fim_template
        if template is not None and ("{prefix}" not in template or "{suffix}" not in template):
            raise BackendError("fimTemplate must contain both {prefix} and {suffix}")
        super().__init__(spec)
        if template:
            self.description += " (raw FIM prompt)"

    def request_body(self, prompt: InfillRequest) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.model:
            body["model"] = self.model
        if self.fim_template:
            body["prompt"] = _fill(self.fim_template, prompt.extra + prompt.prefix, prompt.suffix)
        else:
            body["prompt"] = prompt.extra + prompt.prefix
            body["suffix"] = prompt.suffix
        body.update(max_tokens=prompt.max_tokens, temperature=0, seed=prompt.seed, stream=True)
        body["stream_options"] = {"include_usage": True}
        if prompt.single_line:
            body["stop"] = ["\n"]
        return body

    def read_event(self, event: dict[str, Any]) -> tuple[str, bool, int | None, float | None]:
        return _choice_event(event)


class LlamaCppBackend(RemoteBackend):
    kind = "llama.cpp"
    path = "/infill"
    # Up to 7 lines above the cursor's go in `prompt` with the cursor's line: a new line
    # then evaluates its own few tokens instead of the whole suffix again (the server's
    # cache keeps only a run of tokens matching from the prompt's start).
    middle_lines = 8
    unsupported_hint = (
        " (/infill needs a model with fill-in-the-middle tokens; for another model use the "
        "openai backend on the same server)"
    )

    def __init__(self, spec: BackendSpec) -> None:
        super().__init__(spec)
        # The model's own FIM tokens, asked of the server once: None until asked, an empty
        # FimTokens when the model lacks Qwen's (then /infill lays the prompt out).
        self._fim: FimTokens | None = None

    def request_body(self, prompt: InfillRequest) -> dict[str, Any]:
        # The middle written so far goes in `prompt`, after the FIM middle token (llama.vim
        # sends the cursor's line there): the lines before it and the suffix stay one
        # stable run of tokens while the user types and writes new lines.
        cut = len(prompt.prefix) - prompt.middle if prompt.middle else prompt.prefix.rfind("\n") + 1
        body: dict[str, Any] = {
            "input_prefix": prompt.prefix[:cut],
            "prompt": prompt.prefix[cut:],
            "input_suffix": prompt.suffix,
            # Other files' chunks in the model's repository layout (<|file_sep|> name,
            # then the text).
            "input_extra": [{"filename": name, "text": text} for name, text in prompt.extra_chunks]
            or ([{"filename": "context", "text": prompt.extra}] if prompt.extra else []),
            "n_predict": prompt.max_tokens,
            "temperature": 0,
            "top_k": 1,  # greedy: the sampler need not sort the whole vocabulary
            "seed": prompt.seed,
            "cache_prompt": True,
            "n_probs": 1,  # the chosen token's probability: the answer's confidence
            "stream": True,
        }
        if prompt.single_line:
            body["stop"] = ["\n"]
        elif prompt.block_ms > 0:
            # An automatic block stops at the first line break once this long has passed
            # (llama.vim's limit): on a CPU a runaway block costs seconds while the user
            # types. One the user asked for runs to its end or its token budget.
            body["t_max_predict_ms"] = prompt.block_ms
        return body

    async def prepare(self, body: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        """The middle written so far (`InfillRequest.middle`: the lines since the anchor row,
        after that row's indentation) goes after the FIM middle token, where llama.vim puts
        the typed start of the cursor's line: this llama.cpp's /infill appends it
        to the prefix instead, before the suffix, so every keystroke made the server read
        the whole suffix again (results/real-model/layout/: the median keystroke that ran
        the model 9.3 / 8.5 s against 3.9 / 0.7 s, 0.5B on two loaded cores). Laid out
        here (on /completion, in Qwen's repository format), a keystroke only appends to
        the prompt the server has cached.

        The typed text's last pre-token (a word being typed, a trailing space) is held
        back and the answer made to start with it (a grammar): in training a middle's
        text was tokenized whole, so `retu` cut off as tokens of its own reads as a
        finished word (the model wrote ` = 0` after it; healed, `rn sum(...)`)."""
        if self._fim is None:
            self._fim = await self._ask_fim_tokens()
        if not self._fim:
            return self.url, body, ""
        fim = self._fim
        line = body.pop("prompt")
        # The line's indentation stays in the prefix, as in the FIM splits the model was
        # trained on (a middle that starts at the code): it does not change as one types.
        indent = len(line) - len(line.lstrip(" \t"))
        body["input_prefix"] += line[:indent]
        typed = line[indent:]
        pieces = QWEN_PRETOKENIZER.pre_tokenize_str(typed)
        # A last piece that ends a line is no word being typed, and a single line's answer
        # would stop at its line break before it began.
        held = pieces[-1][1][0] if pieces and "\n" not in pieces[-1][0] else len(typed)
        typed, lead = typed[:held], typed[held:]
        parts: list[str | int] = [fim.repo, "project\n"]
        for chunk in body.pop("input_extra"):
            parts += [fim.file_sep, f"{chunk['filename']}\n{chunk['text']}"]
        parts += [fim.file_sep, "file\n", fim.prefix, body.pop("input_prefix")]
        parts += [fim.suffix, body.pop("input_suffix"), fim.middle, typed]
        prompt: list[str | int] = []
        for part in parts:
            if part != "":
                prompt += await self._literal(part)
        body["prompt"] = prompt
        if lead:
            body["grammar"] = f"root ::= {_gbnf_literal(lead)} .*"
        return self.base + "/completion", body, lead

    async def _ask_fim_tokens(self) -> FimTokens:
        """The ids of Qwen's FIM and repository tokens if this model has them all."""
        ids = await self._tokenize("".join(QWEN_FIM_TOKENS), parse_special=True)
        if ids is None or len(ids) != len(QWEN_FIM_TOKENS):
            return FimTokens()
        return FimTokens(*ids)

    async def _literal(self, part: str | int) -> list[str | int] | list[int]:
        """A piece of the prompt as the server must read it: /completion parses special
        tokens in text, so text that could spell one (`<|endoftext|>` in a document
        about tokenizers) goes as the ids of its plain-text tokens instead."""
        if isinstance(part, int) or "<|" not in part:
            return [part]
        ids = await self._tokenize(part, parse_special=False)
        if ids is None:
            raise _Failure("the server cannot tokenize text (POST /tokenize failed)")
        return ids

    async def _tokenize(self, text: str, *, parse_special: bool) -> list[int] | None:
        response = await self._loop.client.post(
            self.base + "/tokenize",
            json={"content": text, "parse_special": parse_special},
            headers=self._headers,
            timeout=self.timeout_s,
        )
        if response.status_code >= 400:
            return None
        try:
            tokens = response.json().get("tokens")
        except (ValueError, AttributeError):  # not JSON, or not an object
            return None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            return None
        return tokens

    def read_event(self, event: dict[str, Any]) -> tuple[str, bool, int | None, float | None]:
        content = event.get("content")
        if not isinstance(content, str):
            raise _Failure("malformed answer: `content` is not a string")
        for token in event.get("completion_probabilities") or ():
            logprob = token.get("logprob") if isinstance(token, dict) else None
            if isinstance(logprob, int | float):
                self._probs.append(math.exp(logprob))
        tokens = event.get("tokens_predicted")
        if event.get("stop") is True and isinstance(timings := event.get("timings"), dict):
            _log_llama_timings(timings)
        return (
            content,
            event.get("stop") is True,
            tokens if isinstance(tokens, int) else None,
            _timings_ms(event.get("timings")),
        )


BACKENDS: dict[str, type[RemoteBackend]] = {
    "mercury": MercuryBackend,
    "openai": OpenAIBackend,
    "llama.cpp": LlamaCppBackend,
}


def load_remote(spec: BackendSpec, kind: str) -> RemoteBackend:
    """The remote backend of `kind`; nothing connects until the first completion."""
    return BACKENDS[kind](spec)
