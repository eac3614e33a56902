"""LSP over a byte stream: framing that survives any input, the request lifecycle LSP
requires, and one independent session per TCP connection.

pygls' own read loop allocates whatever `Content-Length` announces, matches the header
case-sensitively and, after one bad frame, never finds the next one; messages that fail
to deserialize are dropped without an answer. Here:

- `FrameReader` reads frames with case-insensitive headers and a size limit, and after a
  bad frame resynchronises on the next `Content-Length` header. A body announced a few
  bytes too long or too short is recovered where its JSON is whole (the JSON value ends
  where the next header starts), so a client's off-by-N bug costs nothing.
- `Session` checks each message before pygls' protocol handles it, so that every request
  gets exactly one answer: -32700 for a body that is not JSON, -32600 for a message that
  is not JSON-RPC (or a request after `shutdown`), -32602 for params that do not fit the
  method, -32002 before `initialize`. `exit` ends the session with 0 after `shutdown`,
  1 without (as LSP says).
- `serve_tcp` gives each connection its own language server (its own documents, settings
  and cancellation) from a factory, limits how many run at once, and keeps listening when
  a client goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer

from ..config import defaults

logger = logging.getLogger(__name__)

# The largest message accepted (a didOpen carries a whole document): beyond this the frame
# is answered with an error and skipped, never buffered.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# A header line longer than this is not a header: the reader resynchronises.
MAX_HEADER_LINE_BYTES = 1024
# A body still incomplete after this long without new bytes, whose bytes so far are whole
# JSON, was announced too long: it is handled as it is.
GRACE_S = 0.5
# Answers a TCP client has not read yet beyond which it is taken to be gone.
MAX_UNSENT_BYTES = 16 * 1024 * 1024
# How long a refused client may take to send the request its refusal answers.
REFUSAL_WAIT_S = 5.0
# At the end of the client's stream (a TCP half-close, stdin closed) the requests already
# received are still answered, for at most this long.
DRAIN_S = 10.0

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_NOT_INITIALIZED = -32002
REQUEST_FAILED = -32803  # LSP: a valid request the server could not serve

_HEADER_START = re.compile(rb"content-length[ \t]*:", re.IGNORECASE)
_HEADER_NAME = re.compile(rb"[A-Za-z0-9_-]+[ \t]*:")
_NAME_SO_FAR = re.compile(rb"[A-Za-z0-9_-]+[ \t]*")
_HEADER_LINE = re.compile(rb"([A-Za-z0-9_-]+)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?\n")
_CHUNK = 64 * 1024


class ByteSource(Protocol):
    async def read(self) -> bytes:
        """The next bytes of the stream, b"" at its end. Cancelling the call loses nothing."""
        ...


class StreamSource:
    """An asyncio stream (a TCP connection)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def read(self) -> bytes:
        return await self._reader.read(_CHUNK)


class ThreadedSource:
    """A blocking binary stream (stdin), read on a thread of its own. The queue is bounded,
    so a client writing faster than the server reads waits instead of filling memory."""

    def __init__(self, stream: BinaryIO, loop: asyncio.AbstractEventLoop) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
        self._loop = loop
        read = getattr(stream, "read1", None) or stream.read
        self._thread = threading.Thread(
            target=self._pump, args=(read,), name="fim-stdin", daemon=True
        )
        self._thread.start()

    def _pump(self, read: Callable[[int], bytes]) -> None:
        while True:
            try:
                chunk = read(_CHUNK)
            except (OSError, ValueError):
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(self._queue.put(chunk), self._loop).result()
            except (RuntimeError, asyncio.CancelledError):
                return  # the event loop has stopped
            if not chunk:
                return

    async def read(self) -> bytes:
        chunk = await self._queue.get()
        if not chunk:
            self._queue.put_nowait(b"")  # every later read sees the end too
        return chunk


@dataclass(frozen=True)
class Message:
    value: Any  # the decoded JSON body


@dataclass(frozen=True)
class Malformed:
    """A frame that carries no usable message; `code` is the JSON-RPC error it earns,
    `msg_id` the id of the request it was, where that could be read."""

    code: int
    reason: str
    msg_id: Any = None


Frame = Message | Malformed


class TooDeep(ValueError):
    """Valid JSON nested deeper than the parser's recursion allows."""


def _json(data: bytes) -> Any:
    """The JSON value of `data`; ValueError if it is not exactly one JSON value."""
    try:
        return json.loads(data)
    except RecursionError:
        raise TooDeep("JSON nested too deeply") from None


# How far into a message nested too deeply its id is looked for.
_ID_SCAN_CHARS = 4 * 1024 * 1024
_STRUCTURE = re.compile(r'["{}\[\],]')


def _top_level_id(data: bytes) -> Any:
    """The "id" member of the JSON object in `data`, found without parsing the other
    members (which may be nested too deeply to parse); None if there is none."""
    text = data[:_ID_SCAN_CHARS].decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    depth, key_next, at = 0, False, 0
    while (match := _STRUCTURE.search(text, at)) is not None:
        char, at = match.group(), match.end()
        if char == '"':
            try:
                value, at = decoder.raw_decode(text, match.start())
            except ValueError:
                return None
            if depth == 1 and key_next:
                key_next = False
                colon = re.compile(r"\s*:\s*").match(text, at)
                if colon is None:
                    return None
                if value == "id":
                    try:
                        return decoder.raw_decode(text, colon.end())[0]
                    except (ValueError, RecursionError):
                        return None
                at = colon.end()
        elif char in "{[":
            depth += 1
            key_next = depth == 1 and char == "{"
        elif char in "}]":
            depth -= 1
        elif depth == 1:  # a comma between members
            key_next = True
    return None


class FrameReader:
    """`Content-Length`-framed JSON messages from a byte stream of any quality."""

    def __init__(
        self,
        source: ByteSource,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        grace_s: float = GRACE_S,
    ) -> None:
        self._source = source
        self._max = max_message_bytes
        self._grace = grace_s
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self, timeout: float | None = None) -> bool:
        """Read more bytes into the buffer; False at the end of the stream or on timeout."""
        if self._eof:
            return False
        try:
            if timeout is None:
                chunk = await self._source.read()
            else:
                chunk = await asyncio.wait_for(self._source.read(), timeout)
        except TimeoutError:
            return False
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def next(self) -> Frame | None:
        """The next frame; None once the stream has ended."""
        while True:
            # Blank lines between frames are harmless.
            while True:
                stripped = len(self._buffer) - len(self._buffer.lstrip(b" \t\r\n"))
                del self._buffer[:stripped]
                if self._buffer or not await self._fill():
                    break
            if not self._buffer:
                return None
            # A header name split across reads: wait for its colon.
            while (
                _NAME_SO_FAR.fullmatch(self._buffer)
                and len(self._buffer) < MAX_HEADER_LINE_BYTES
                and await self._fill(timeout=self._grace)
            ):
                pass
            if _HEADER_NAME.match(self._buffer):
                length = await self._headers()
                if isinstance(length, int):
                    if length > self._max:
                        await self._skip(length)
                        return Malformed(
                            INVALID_REQUEST,
                            f"message of {length} bytes is over the limit of {self._max}",
                        )
                    return await self._body(length)
                if length is None:
                    return None
            # Not a frame (or a broken header): everything up to the next header.
            return await self._unframed()

    async def _headers(self) -> int | str | None:
        """The announced body length, with the headers consumed; "bad" if they are not a
        valid header block (nothing consumed); None at the end of the stream."""
        consumed = 0
        length: int | None = None
        while True:
            while True:
                end = self._buffer.find(b"\n", consumed)
                if 0 <= end and end - consumed < MAX_HEADER_LINE_BYTES:
                    break
                if end >= 0 or len(self._buffer) - consumed >= MAX_HEADER_LINE_BYTES:
                    return "bad"
                if not await self._fill():
                    return None if not self._buffer else "bad"
            line = bytes(self._buffer[consumed : end + 1])
            consumed = end + 1
            if not line.strip():
                if length is None:
                    return "bad"
                del self._buffer[:consumed]
                return length
            match = _HEADER_LINE.fullmatch(line)
            if match is None:
                return "bad"
            name, value = match.group(1).lower(), match.group(2)
            if name == b"content-length":
                if not value.isdigit() or length is not None:
                    return "bad"
                length = int(value)

    async def _body(self, length: int) -> Frame | None:
        while len(self._buffer) < length:
            if await self._fill(timeout=self._grace):
                continue
            if self._eof:
                break
            # Nothing new for a while: if what came is whole JSON, the length was too long.
            value = _whole_json(bytes(self._buffer))
            if value is not None:
                self._buffer.clear()
                return Message(value[0])
        body = self._take(min(length, len(self._buffer)))
        try:
            return Message(_json(body))
        except TooDeep:
            # Whole, but too deep to read: the request is still answered, by its id.
            return Malformed(
                INVALID_REQUEST, "the message is nested too deeply", _top_level_id(body)
            )
        except ValueError:
            pass
        # Announced too long: one JSON value, then the start of the next header.
        decoded = _leading_json(body)
        if decoded is not None:
            value, end = decoded
            rest = body[end:].lstrip()
            if (
                not rest
                or _HEADER_START.match(rest)
                or b"content-length"[: len(rest)] == (rest.lower())
            ):
                self._buffer[:0] = rest
                return Message(value)
        # Announced too short: the rest of the JSON comes before the next header.
        data = body + await self._until_header()
        try:
            return Message(_json(data))
        except ValueError as exc:
            problem = f"the message body is not JSON: {exc}"
        # ... and perhaps a message without headers after it.
        decoded = _leading_json(data)
        if decoded is None:
            return Malformed(PARSE_ERROR, problem)
        value, end = decoded
        self._buffer[:0] = data[end:]
        return Message(value)

    async def _until_header(self, start: int = 0) -> bytes:
        """The bytes up to the next `Content-Length` header at or after `start` (all of
        them if none comes within the grace time), consumed. At most the message limit is
        kept."""
        dropped = False
        searched = start
        while True:
            match = _HEADER_START.search(self._buffer, max(searched, start))
            if match is not None:
                return b"" if dropped else self._take(match.start())
            searched = len(self._buffer) - 32  # a header may be split across reads
            if len(self._buffer) > self._max:
                keep = bytes(self._buffer[-32:])
                self._buffer[:] = keep
                searched, start, dropped = 0, 0, True
            if not await self._fill(timeout=self._grace):
                data = self._take(len(self._buffer))
                return b"" if dropped else data

    async def _unframed(self) -> Frame:
        """Bytes that are not a frame: a message sent without headers is still handled;
        anything else is a parse error."""
        # A broken header's own `Content-Length` is not the next frame's.
        data = await self._until_header(start=1)
        try:
            return Message(_json(data))
        except ValueError:
            # Not quoted: the bytes may be a document's text.
            return Malformed(PARSE_ERROR, f"not an LSP frame ({len(data)} bytes)")

    async def _skip(self, length: int) -> None:
        """Drop an over-long body as it arrives, without keeping it, stopping early at a
        header (an announced length far beyond what was sent must not swallow the
        stream)."""
        left = length
        while left > 0:
            match = _HEADER_START.search(self._buffer, 0, min(left, len(self._buffer)))
            if match is not None:
                del self._buffer[: match.start()]
                return
            if len(self._buffer) >= left:
                del self._buffer[:left]
                return
            n = max(len(self._buffer) - 32, 0)  # a header may be split across reads
            del self._buffer[:n]
            left -= n
            if not await self._fill(timeout=self._grace):
                del self._buffer[: min(left, len(self._buffer))]
                return


def _leading_json(data: bytes) -> tuple[Any, int] | None:
    """The JSON value at the start of `data` and where it ends, if there is one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    stripped = text.lstrip()
    try:
        value, end = json.JSONDecoder().raw_decode(stripped)
    except (ValueError, RecursionError):
        return None
    end += len(text) - len(stripped)
    return value, len(text[:end].encode("utf-8"))


def _whole_json(data: bytes) -> tuple[Any] | None:
    try:
        return (_json(data),)
    except ValueError:
        return None


def _size(value: Any) -> int:
    """The bytes `value` takes as JSON, for a log line that must not show it."""
    try:
        return len(json.dumps(value))
    except (TypeError, ValueError, RecursionError):
        return -1


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class Session:
    """One client's conversation with one language server."""

    def __init__(self, server: LanguageServer, frames: FrameReader) -> None:
        self.server = server
        self.protocol = server.protocol
        self.frames = frames
        self.initialized = False
        self.shut_down = False
        self.exit_code: int | None = None
        self.last_active = time.monotonic()  # when the client last sent something

    def idle_for(self) -> float | None:
        """Seconds since the client last sent anything; None while a request runs."""
        if any(not f.done() for f in self.protocol._request_futures.values()):
            return None
        return time.monotonic() - self.last_active

    def send_error(self, msg_id: Any, code: int, message: str) -> None:
        response = {
            "jsonrpc": "2.0",
            "id": msg_id if _valid_id(msg_id) else None,
            "error": {"code": code, "message": message},
        }
        self.protocol._send_data(response)

    async def run(self) -> int:
        """Serve until `exit` or the end of the stream; the exit code LSP asks for."""
        try:
            while self.exit_code is None:
                frame = await self.frames.next()
                if frame is None:
                    await self._drain()
                    break
                self.last_active = time.monotonic()
                if isinstance(frame, Malformed):
                    logger.warning("bad frame: %s", frame.reason)
                    if frame.reason:
                        self.send_error(frame.msg_id, frame.code, frame.reason)
                    continue
                if self.handle(frame.value):
                    # Let the request's handler start now: it reads the document as the
                    # client had it when it asked, before a later didChange or didClose
                    # already in the buffer is applied.
                    await asyncio.sleep(0)
        finally:
            self._cancel_requests()
        if self.exit_code is not None:
            return self.exit_code
        return 0 if self.shut_down else 1

    async def _drain(self) -> None:
        """Let the requests already received finish: a client that half-closes its end
        still reads the answers."""
        deadline = time.monotonic() + DRAIN_S
        futures = self.protocol._request_futures
        while any(not f.done() for f in futures.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # the answers' callbacks write them out

    def _cancel_requests(self) -> None:
        for future in list(self.protocol._request_futures.values()):
            future.cancel()

    def handle(self, value: Any) -> bool:
        """Check one message against JSON-RPC and the LSP lifecycle, then hand it to
        pygls; a request that cannot be served is answered with the error here. True if
        a request went to its handler."""
        if not isinstance(value, dict):
            self.send_error(None, INVALID_REQUEST, "a message must be a JSON object")
            return False
        has_id = "id" in value
        msg_id = value.get("id")
        method = value.get("method")
        if value.get("jsonrpc") != "2.0":
            self.send_error(msg_id, INVALID_REQUEST, 'a message needs "jsonrpc": "2.0"')
            return False
        if method is None:
            if _valid_id(msg_id) and ("result" in value or "error" in value):
                self._dispatch(value, None)  # the client answering a request of ours
            else:
                self.send_error(msg_id, INVALID_REQUEST, "a message needs a method")
            return False
        if not isinstance(method, str):
            self.send_error(msg_id, INVALID_REQUEST, "method must be a string")
            return False
        if has_id and not _valid_id(msg_id):
            self.send_error(None, INVALID_REQUEST, "id must be a string or an integer")
            return False
        request_id = msg_id if has_id else None
        if method == "exit":
            self.exit_code = 0 if self.shut_down else 1
            return False
        if self.shut_down:
            if has_id:
                self.send_error(msg_id, INVALID_REQUEST, f"{method}: the server is shut down")
            return False
        if method == "initialize":
            if not has_id:
                return False
            if self.initialized:
                self.send_error(msg_id, INVALID_REQUEST, "the server is already initialized")
                return False
        elif not self.initialized:
            if has_id:
                self.send_error(msg_id, SERVER_NOT_INITIALIZED, f"{method} before initialize")
            return False
        if method == "$/cancelRequest" and not has_id:
            params = value.get("params")
            target = params.get("id") if isinstance(params, dict) else None
            if not _valid_id(target) or target not in self.protocol._request_futures:
                return False  # answered already: an editor's cancel often crosses the answer
        if "params" not in value:
            value = {**value, "params": None}
        if not self._dispatch(value, request_id) or not has_id:
            return False
        if method == "initialize":
            self.initialized = True
        elif method == "shutdown":
            self.shut_down = True
        return True

    def _dispatch(self, value: dict[str, Any], request_id: Any) -> bool:
        """Hand a checked message to pygls; False (and the error answered) if it could
        not take it."""
        try:
            message = self.protocol.structure_message(value)
        except JsonRpcInvalidParams:
            # The params may be a whole document or hold a secret: their size is enough.
            reason = f"invalid params for {value.get('method')}"
            logger.warning("%s (%d bytes)", reason, _size(value.get("params")))
            if request_id is not None:
                self.send_error(request_id, INVALID_PARAMS, reason)
            return False
        except Exception as exc:
            reason = f"cannot read the message: {type(exc).__name__}"
            logger.warning("%s: %s", value.get("method"), reason)
            if request_id is not None:
                self.send_error(request_id, INVALID_REQUEST, reason)
            return False
        # pygls files the future of a notification run through a generator handler (its
        # own didOpen/didChange/didClose, initialized) under a fresh id that nothing ever
        # removes: about 1 kB per keystroke. Such futures are dropped once done.
        futures = self.protocol._request_futures
        before = set(futures) if request_id is None else None
        try:
            self.protocol.handle_message(message)
        except JsonRpcException as exc:
            if request_id is not None:
                self.send_error(request_id, exc.code, exc.message)
            return False
        except Exception as exc:
            logger.exception("handling %s failed", value.get("method"))
            if request_id is not None:
                self.send_error(request_id, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
            return False
        finally:
            if before is not None:
                for key in [k for k in futures if k not in before]:
                    if futures[key].done():
                        del futures[key]
                    else:
                        futures[key].add_done_callback(self._forgetter(key))
        return True

    def _forgetter(self, key: Any) -> Callable[[Any], None]:
        """A done-callback that drops pygls' future `key`, later: pygls may be looping over
        its futures (shutdown cancels them) when the callback runs."""
        loop = asyncio.get_running_loop()
        futures = self.protocol._request_futures

        def forget(_: Any) -> None:
            try:
                loop.call_soon_threadsafe(futures.pop, key, None)
            except RuntimeError:
                pass  # the loop is closed: so is the session

        return forget


class _StdoutWriter:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


def serve_stdio(server: LanguageServer, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Serve one client on a pair of streams; the exit code LSP asks for."""

    async def main() -> int:
        server.protocol.set_writer(_StdoutWriter(stdout))
        source = ThreadedSource(stdin, asyncio.get_running_loop())
        return await Session(server, FrameReader(source)).run()

    try:
        return asyncio.run(main())
    except BrokenPipeError:
        logger.error("the client closed its end of the connection")
        return 1


class _TcpWriter:
    """A connection's writer that hangs up on a client which stops reading: its answers
    would otherwise pile up in the server's memory."""

    def __init__(self, writer: asyncio.StreamWriter, max_unsent_bytes: int) -> None:
        self._writer = writer
        self._max = max_unsent_bytes

    def write(self, data: bytes) -> None:
        transport = self._writer.transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size() + len(data) > self._max:
            logger.warning("client stopped reading its answers: closing its session")
            transport.abort()
            return
        self._writer.write(data)

    def close(self) -> None:
        self._writer.close()


def _refusal(message: str) -> bytes:
    params = {"type": 1, "message": message}  # 1: an error
    notification = {"jsonrpc": "2.0", "method": "window/showMessage", "params": params}
    body = json.dumps(notification).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, why: str) -> None:
    """Tell a client over the session limit why, answer its first request, hang up."""
    writer.write(_refusal(why))
    frames = FrameReader(StreamSource(reader))
    try:
        frame = await asyncio.wait_for(frames.next(), REFUSAL_WAIT_S)
    except TimeoutError:
        frame = None
    if isinstance(frame, Message) and isinstance(frame.value, dict):
        msg_id = frame.value.get("id")
        if _valid_id(msg_id):
            error = {"code": REQUEST_FAILED, "message": why}
            body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": error}).encode()
            writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()


async def serve_tcp_async(
    make_server: Callable[[], LanguageServer],
    host: str,
    port: int,
    *,
    max_sessions: int = defaults.MAX_SESSIONS,
    max_unsent_bytes: int = MAX_UNSENT_BYTES,
    on_listening: Callable[[asyncio.Server], Awaitable[None] | None] | None = None,
    on_session_end: Callable[[LanguageServer], None] | None = None,
    idle_s: float = defaults.IDLE_SESSION_S,
) -> None:
    """Serve every connection as its own session until cancelled. With every slot taken,
    a new client takes that of the session idle longest (`idle_s` at least)."""
    active: dict[asyncio.Task[Any], tuple[Session, asyncio.StreamWriter]] = {}

    def evict_idle() -> bool:
        """Close the session idle longest if it has been idle `idle_s`; True if one was."""
        idle = [(s.idle_for(), task, s, w) for task, (s, w) in active.items()]
        idle = [entry for entry in idle if entry[0] is not None and entry[0] >= idle_s]
        if not idle:
            return False
        seconds, task, session, writer = max(idle, key=lambda entry: entry[0])
        why = (
            f"fim-server: this session was idle for {seconds:.0f} s and another client "
            f"needed its slot (--max-sessions {max_sessions}); reconnect to go on"
        )
        logger.warning("%s (%s)", why, writer.get_extra_info("peername"))
        warning = types.ShowMessageParams(type=types.MessageType.Warning, message=why)
        session.protocol.notify(types.WINDOW_SHOW_MESSAGE, warning)
        del active[task]
        writer.close()  # its session sees the end of its stream and ends
        return True

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(active) >= max_sessions and not evict_idle():
                why = (
                    f"fim-server: refused: {len(active)} clients are connected, the most it "
                    f"serves at once (--max-sessions), and none has been idle {idle_s:.0f} s"
                )
                logger.warning("%s (%s)", why, peer)
                await _refuse(reader, writer, why)
                return
            server = make_server()
            server.protocol.set_writer(_TcpWriter(writer, max_unsent_bytes))
            session = Session(server, FrameReader(StreamSource(reader)))
            active[task] = (session, writer)
            logger.info("session opened: %s (%d active)", peer, len(active))
            try:
                code = await session.run()
                logger.info("session closed: %s (exit code %d)", peer, code)
            finally:
                if on_session_end is not None:
                    on_session_end(server)
        except (ConnectionError, OSError) as exc:
            logger.info("session %s lost: %s", peer, exc)
        finally:
            active.pop(task, None)
            writer.close()

    listener = await asyncio.start_server(connection, host, port)
    async with listener:
        if on_listening is not None:
            result = on_listening(listener)
            if result is not None:
                await result
        await listener.serve_forever()


def serve_tcp(
    make_server: Callable[[], LanguageServer],
    host: str,
    port: int,
    *,
    max_sessions: int = defaults.MAX_SESSIONS,
    on_session_end: Callable[[LanguageServer], None] | None = None,
) -> int:
    def listening(listener: asyncio.Server) -> None:
        addresses = ", ".join(str(s.getsockname()) for s in listener.sockets)
        logger.warning("fim-server listening on %s", addresses)

    try:
        asyncio.run(
            serve_tcp_async(
                make_server,
                host,
                port,
                max_sessions=max_sessions,
                on_listening=listening,
                on_session_end=on_session_end,
            )
        )
    except KeyboardInterrupt:
        pass
    return 0
