"""The Language Server Protocol front end.

Handlers only translate LSP requests into engine calls and the engine's answers back
into LSP results; all completion logic lives in the engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import difflib
import logging
import uuid
from concurrent.futures import Future
from dataclasses import asdict
from typing import Any
from urllib.parse import unquote

from cattrs import Converter
from cattrs.errors import ClassValidationError
from lsprotocol import types
from pygls.capabilities import get_capability
from pygls.exceptions import JsonRpcInternalError, JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter, lsp_method
from pygls.protocol.json_rpc import (
    JsonRPCNotification,
    JsonRPCRequestMessage,
    JsonRPCResponseMessage,
)

from .. import __version__
from ..completion import Completion
from ..config.settings import SETTING_KEYS, apply_settings, backend_spec
from ..context.documents import (
    Document,
    Position,
    PositionError,
    TextChange,
    line_start_at,
    units_of,
)
from ..engine import Engine
from ..stats import EngineStats

logger = logging.getLogger(__name__)

SERVER_NAME = "fim-server"
STATS_REQUEST = "fim/stats"
# Sent by the editor packages when the user accepts a completion (Tab, or a partial accept):
# params {"uri": str, "chars": int, "partial": bool}.
ACCEPTED_NOTIFICATION = "fim/accepted"


class InvalidRequest(JsonRpcInvalidParams):
    """A request naming a document or position the server cannot use (code -32602)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def document_key(uri: str) -> str:
    # Clients differ in how they quote URIs (`%3A` or `:`); one spelling keys the store.
    return unquote(uri)


def open_document(server: FimLanguageServer, uri: str) -> Document:
    """An open document, as the editor has it; only open documents are trusted, since a
    file on disk may differ from the editor's buffer."""
    document = server.engine.documents.get(document_key(uri))
    if document is None:
        raise InvalidRequest(f"document is not open: {uri}")
    return document


def cursor_offset(document: Document, position: types.Position, encoding: str) -> int:
    """Code-point offset into the document of an LSP position in the negotiated encoding
    (UTF-16 code units by default)."""
    try:
        return document.offset_at(Position(position.line, position.character), encoding)
    except PositionError as exc:
        raise InvalidRequest(str(exc)) from None


def stats_payload(stats: EngineStats) -> dict[str, Any]:
    """`fim/stats` result: the engine counters with camelCase keys, as LSP results use."""

    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(word.title() for word in rest)

    return {camel(k): v for k, v in asdict(stats).items()}


def text_changes(params: types.DidChangeTextDocumentParams) -> list[TextChange]:
    changes = []
    for change in params.content_changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            start, end = change.range.start, change.range.end
            changes.append(
                TextChange(
                    change.text,
                    Position(start.line, start.character),
                    Position(end.line, end.character),
                )
            )
        else:
            changes.append(TextChange(change.text))
    return changes


def _label(text: str) -> str:
    first, _, rest = text.strip().partition("\n")
    return first + (" …" if rest else "")


class FimProtocol(LanguageServerProtocol):
    """pygls' protocol without its own copy of each document: the engine's DocumentStore
    (text and parse tree together) is the one copy, kept by the handlers below. A request
    cancelled before its answer is sent gets -32800 (RequestCancelled). A client's errors
    (a message that does not fit its method, a position outside the document) are
    answered without pygls' ERROR log: its tracebacks quote the values they choked on (a
    document, a header), so they go to DEBUG."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Requests whose handler had finished, but whose answer was not yet sent, when
        # their cancel came: pygls sends an answer from the handler's done-callback, a
        # loop turn after it finishes, and would send the result of such a request.
        self._cancelled_unsent: set[Any] = set()

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        future = self._request_futures.get(msg_id)
        if future is not None and future.done() and not future.cancelled():
            self._cancelled_unsent.add(msg_id)
        super()._handle_cancel_notification(msg_id)

    def structure_message(self, data: dict[str, Any]) -> Any:
        # pygls' own choice of message type; only what is logged differs.
        if "jsonrpc" not in data:
            return data
        if "id" not in data:
            kind = self.get_message_type(data.get("method", "")) or JsonRPCNotification
        elif "error" in data:
            kind = types.ResponseErrorMessage
        elif "method" in data:
            kind = self.get_message_type(data["method"]) or JsonRPCRequestMessage
        else:
            kind = self._result_types.pop(data["id"], None) or JsonRPCResponseMessage
        try:
            return self._converter.structure(data, kind)
        except ClassValidationError as exc:
            logger.debug("%s does not fit its method", data.get("method"), exc_info=True)
            raise JsonRpcInvalidParams() from exc
        except Exception as exc:
            logger.debug("cannot read %s", data.get("method"), exc_info=True)
            raise JsonRpcInternalError() from exc

    def _send_handler_result(self, future: Future[Any], *, msg_id: Any) -> None:
        if msg_id in self._cancelled_unsent:
            self._cancelled_unsent.discard(msg_id)
            future = concurrent.futures.Future()
            future.cancel()  # pygls answers a cancelled request with -32800
        error = None if future.cancelled() else future.exception()
        if not isinstance(error, JsonRpcInvalidParams):
            super()._send_handler_result(future, msg_id=msg_id)
            return
        self._request_futures.pop(msg_id, None)
        logger.debug("request %s refused: %s", msg_id, error.message, exc_info=error)
        self._send_response(msg_id, error=error.to_response_error())

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        yield self.fm.features[types.TEXT_DOCUMENT_DID_OPEN], (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        yield self.fm.features[types.TEXT_DOCUMENT_DID_CHANGE], (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        yield self.fm.features[types.TEXT_DOCUMENT_DID_CLOSE], (params,), None


def _strict_position(value: Any, _: type) -> types.Position:
    if not isinstance(value, dict):
        raise TypeError("a position must be an object")
    line, character = value["line"], value["character"]
    for number in (line, character):
        if not isinstance(number, int) or isinstance(number, bool):
            raise TypeError("a position's line and character must be integers")
    return types.Position(line=line, character=character)


def lsp_converter() -> Converter:
    """pygls' converter, with positions taken strictly: cattrs makes the integers 1, 5
    and 1 of `1.5`, `"5"` and `true`, so a client's wrong position would be completed at
    a place it never named instead of being refused (-32602)."""
    converter = default_converter()
    converter.register_structure_hook(types.Position, _strict_position)
    return converter


class FimLanguageServer(LanguageServer):
    def __init__(self, engine: Engine) -> None:
        super().__init__(
            SERVER_NAME,
            __version__,
            protocol_cls=FimProtocol,
            converter_factory=lsp_converter,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        )
        self.engine = engine
        # The backend the command line chose; the client's settings may replace its parts.
        self._command_line_backend = engine.settings.backend
        self._initialized = False
        self._reported_failure: str | None = None  # the backend failure last shown

    @property
    def position_encoding(self) -> str:
        encoding = self.workspace.position_encoding
        return str(getattr(encoding, "value", encoding) or "utf-16")

    def configure(self, payload: Any, origin: str) -> None:
        """Apply settings from the client; report bad values and keep serving."""
        update = apply_settings(self.engine.user_settings, payload)
        for key in update.ignored:
            # A name is only quoted when it is a known one misspelt: any other string a
            # client sends as a key may be anything (a pasted key, code).
            near = difflib.get_close_matches(key, SETTING_KEYS, n=1)
            if near:
                logger.info("%s: unknown setting %r ignored (%s?)", origin, key, near[0])
            else:
                logger.info("%s: an unknown setting ignored", origin)
        for error in update.errors:
            message = f"fim-server: {error}"
            logger.warning("%s: %s", origin, error)
            self.window_show_message(types.ShowMessageParams(types.MessageType.Warning, message))
            self.window_log_message(types.LogMessageParams(types.MessageType.Warning, message))
        self.engine.configure(update.settings)
        logger.info("settings (%s): %s", origin, update.settings)
        spec = backend_spec(self._command_line_backend, update.settings)
        if spec != self.engine.settings.backend:
            logger.info("%s: switching to the %s backend", origin, spec.kind)
            self.engine.switch_backend(spec)
            self._reported_failure = None
            if self._initialized:  # else `initialized` reports the load
                asyncio.ensure_future(self.report_model_load())

    def report_failure(self, completion: Completion) -> None:
        """Tell the user once when the backend fails (a remote server down, a refused
        key), not on every keystroke: again only after it has answered in between."""
        if completion.failure is None:
            if not completion.cached and completion.model_ms > 0:
                self._reported_failure = None
            return
        if completion.failure == self._reported_failure:
            return
        self._reported_failure = completion.failure
        message = f"fim-server: no completions: {completion.failure}"
        self.window_show_message(types.ShowMessageParams(types.MessageType.Warning, message))
        self.window_log_message(types.LogMessageParams(types.MessageType.Warning, message))

    async def complete_at(
        self, uri: str, position: types.Position, invoked: bool
    ) -> list[tuple[str, types.Range]]:
        """Each text the completion at `position` offers (the first, then the other
        candidates) with the range that text replaces; none when there is nothing."""
        document = open_document(self, uri)
        offset = cursor_offset(document, position, self.position_encoding)
        text = document.text  # the document may change while the model runs
        completion = await self.engine.complete(text, offset, uri=document.uri, invoked=invoked)
        self.report_failure(completion)
        if not completion.text:
            logger.debug(
                "no completion at %s:%d:%d: %s",
                uri,
                position.line,
                position.character,
                completion.reason,
            )
            return []
        # A position inside a surrogate pair (or a UTF-8 sequence) stands for the end of
        # that character: the range starts there, never inside it. (A position past the
        # line's end is the end, as LSP says; the client's own position is kept.)
        encoding = self.position_encoding
        line_start = line_start_at(text, offset)
        start = max(position.character, units_of(text[line_start:offset], encoding))
        offers = []
        for candidate in (completion, *completion.others):
            replaced = text[offset : offset + candidate.replace_chars]
            end = start + units_of(replaced, encoding)
            offers.append(
                (
                    candidate.text,
                    types.Range(
                        types.Position(position.line, start), types.Position(position.line, end)
                    ),
                )
            )
        return offers

    async def report_model_load(self) -> None:
        """Show the background model load as work-done progress, then its outcome."""
        token: str | None = None
        if not self.engine.ready and self.engine.load_error is None:
            self.window_log_message(
                types.LogMessageParams(types.MessageType.Info, "fim-server: loading the model")
            )
            if get_capability(self.client_capabilities, "window.work_done_progress", False):
                token = f"fim-server/load/{uuid.uuid4()}"
                try:
                    await self.work_done_progress.create_async(token)
                except Exception:
                    logger.warning("client refused a progress token", exc_info=True)
                    token = None
            if token is not None:
                self.work_done_progress.begin(
                    token, types.WorkDoneProgressBegin(title="fim-server: loading the model")
                )
            await self.engine.wait_loaded()
        error = self.engine.load_error
        if token is not None:
            message = "failed" if error else "ready"
            self.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        if error is not None:
            message = f"fim-server could not load its model ({error}); completions are off"
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, message))
            self.window_log_message(types.LogMessageParams(types.MessageType.Error, message))
        else:
            stats = self.engine.stats()
            self.window_log_message(
                types.LogMessageParams(
                    types.MessageType.Info,
                    f"fim-server: model ready in {stats.load_ms:.0f} ms: "
                    f"{stats.backend_description}",
                )
            )


def word_before(text: str, offset: int) -> str:
    """The identifier characters right before `offset`: what a client filters completion
    items by (eglot: the symbol at point, whatever the edit's range)."""
    start = offset
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    return text[start:offset]


def completion_list(word: str, offers: list[tuple[str, types.Range]]) -> types.CompletionList:
    """The offers as completion items whose labels start with `word`; the edit itself
    still starts at the cursor. Incomplete: the answer depends on the exact cursor, so
    the client must ask again as the user types rather than filter this list.
    Candidates keep their order."""
    items = [
        types.CompletionItem(
            label=_label(word + text),
            kind=types.CompletionItemKind.Snippet,
            detail=SERVER_NAME,
            sort_text=f"{rank:02d}",
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(range=replaced, new_text=text),
        )
        for rank, (text, replaced) in enumerate(offers)
    ]
    return types.CompletionList(is_incomplete=True, items=items)


def create_server(engine: Engine) -> FimLanguageServer:
    server = FimLanguageServer(engine)

    @server.feature(types.INITIALIZE)
    def initialize(params: types.InitializeParams) -> None:
        server.configure(params.initialization_options or {}, "initializationOptions")

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(params: types.DidChangeConfigurationParams) -> None:
        server.configure(params.settings, "workspace/didChangeConfiguration")

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        engine.documents.open(document_key(item.uri), item.text, item.language_id, item.version)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        uri = document_key(params.text_document.uri)
        try:
            engine.documents.change(
                uri, params.text_document.version, text_changes(params), server.position_encoding
            )
        except KeyError:
            logger.warning("change to a document that is not open, ignored: %s", uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        engine.documents.close(document_key(params.text_document.uri))

    @server.feature(types.INITIALIZED)
    async def initialized(params: types.InitializedParams) -> None:
        server._initialized = True
        engine.start_loading()  # no-op when the command line already started it
        await server.report_model_load()

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        params: types.InlineCompletionParams,
    ) -> types.InlineCompletionList:
        invoked = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        offers = await server.complete_at(params.text_document.uri, params.position, invoked)
        return types.InlineCompletionList(
            items=[types.InlineCompletionItem(insert_text=t, range=r) for t, r in offers]
        )

    # For clients without inline completion: the same text as one completion item.
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(params: types.CompletionParams) -> types.CompletionList:
        # Asked for explicitly unless the client says it re-asks as the user types.
        invoked = params.context is None or (
            params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        )
        # Clients filter items by the word before the cursor (eglot: the symbol at point,
        # whatever the edit's range), so the label starts with that word; the edit itself
        # still starts at the cursor.
        document = open_document(server, params.text_document.uri)
        offset = cursor_offset(document, params.position, server.position_encoding)
        word = word_before(document.text, offset)
        offers = await server.complete_at(params.text_document.uri, params.position, invoked)
        return completion_list(word, offers)

    @server.feature(STATS_REQUEST)
    def stats(params: Any) -> dict[str, Any]:
        return stats_payload(engine.stats())

    @server.feature(ACCEPTED_NOTIFICATION)
    def accepted(params: Any) -> None:
        uri, chars = getattr(params, "uri", None), getattr(params, "chars", 0)
        engine.accepted(
            document_key(uri) if isinstance(uri, str) else None,
            chars if isinstance(chars, int) and not isinstance(chars, bool) else 0,
            getattr(params, "partial", False) is True,
        )

    @server.feature(types.SHUTDOWN)
    def shutdown(params: None) -> None:
        engine.close()

    return server
