"""The Language Server Protocol front end.

Handlers only translate LSP requests into engine calls and the engine's answers back
into LSP results; all completion logic lives in the engine.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pygls.capabilities import get_capability
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from . import __version__
from .completion import Completion
from .documents import Position, TextChange
from .engine import Engine
from .settings import apply_settings, backend_spec
from .stats import EngineStats

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


def open_document(server: LanguageServer, uri: str) -> TextDocument:
    """The synchronised copy of an open document; only open documents are trusted, since
    a file on disk may differ from the editor's buffer."""
    # pygls keys its documents by the unquoted URI.
    document = server.workspace.text_documents.get(unquote(uri))
    if document is None:
        raise InvalidRequest(f"document is not open: {uri}")
    return document


def cursor_offset(document: TextDocument, position: types.Position) -> int:
    """Code-point offset into `document.source` of an LSP position given in the
    negotiated encoding (UTF-16 code units by default)."""
    lines = document.lines
    ends_with_break = not lines or lines[-1].endswith(("\n", "\r"))
    last_line = len(lines) if ends_with_break else len(lines) - 1
    if position.line > last_line:
        raise InvalidRequest(
            f"line {position.line} is past the end of {document.uri} (last line {last_line})"
        )
    if position.line == len(lines):
        return len(document.source)  # the empty line after a final line break
    codec = document.position_codec
    units = codec.client_num_units(lines[position.line].rstrip("\r\n"))
    # LSP: a character past the end of the line means the end of the line.
    clamped = types.Position(line=position.line, character=min(position.character, units))
    return document.offset_at_server_position(codec.position_from_client_units(lines, clamped))


def stats_payload(stats: EngineStats) -> dict[str, Any]:
    """`fim/stats` result: the engine counters with camelCase keys, as LSP results use."""

    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(word.title() for word in rest)

    return {camel(k): v for k, v in asdict(stats).items()}


def replaced_range(
    document: TextDocument, position: types.Position, offset: int, completion: Completion
) -> types.Range:
    """The range a completion replaces: from the cursor over `replace_chars` characters
    of its line (counted in the client's position units)."""
    replaced = document.source[offset : offset + completion.replace_chars]
    units = document.position_codec.client_num_units(replaced)
    return types.Range(
        start=position,
        end=types.Position(line=position.line, character=position.character + units),
    )


def position_encoding(server: LanguageServer) -> str:
    encoding = server.workspace.position_encoding
    return str(getattr(encoding, "value", encoding) or "utf-16")


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


class FimLanguageServer(LanguageServer):
    def __init__(self, engine: Engine) -> None:
        super().__init__(
            SERVER_NAME, __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental
        )
        self.engine = engine
        # The backend the command line chose; the client's settings may replace its parts.
        self._command_line_backend = engine.settings.backend
        self._initialized = False
        self._reported_failure: str | None = None  # the backend failure last shown

    def configure(self, payload: Any, origin: str) -> None:
        """Apply settings from the client; report bad values and keep serving."""
        update = apply_settings(self.engine.user_settings, payload)
        for key in update.ignored:
            logger.info("%s: unknown setting %r ignored", origin, key)
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
        self, uri: str, position: types.Position
    ) -> tuple[Completion, TextDocument, int]:
        document = open_document(self, uri)
        offset = cursor_offset(document, position)
        completion = await self.engine.complete(
            document.source, offset, language=document.language_id, uri=document.uri
        )
        self.report_failure(completion)
        if not completion.text:
            logger.debug(
                "no completion at %s:%d:%d: %s",
                uri,
                position.line,
                position.character,
                completion.reason,
            )
        return completion, document, offset

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


def create_server(engine: Engine) -> FimLanguageServer:
    server = FimLanguageServer(engine)

    @server.feature(types.INITIALIZE)
    def initialize(params: types.InitializeParams) -> None:
        server.configure(params.initialization_options or {}, "initializationOptions")

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(params: types.DidChangeConfigurationParams) -> None:
        server.configure(params.settings, "workspace/didChangeConfiguration")

    # pygls keeps the text of open documents; the engine keeps their parse trees, updated
    # edit by edit.
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        document = open_document(server, item.uri)
        engine.documents.open(document.uri, document.source, item.language_id, item.version)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        document = open_document(server, params.text_document.uri)
        changes = text_changes(params)
        try:
            kept = engine.documents.change(
                document.uri, params.text_document.version, changes, position_encoding(server)
            )
        except KeyError:
            logger.warning("change to a document we did not see open: %s", document.uri)
            engine.documents.open(document.uri, document.source, document.language_id)
            return
        if kept.text != document.source:
            logger.warning("parse tree copy of %s drifted; re-parsing it whole", document.uri)
            engine.documents.replace_text(document.uri, document.source)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        engine.documents.close(unquote(params.text_document.uri))

    @server.feature(types.INITIALIZED)
    async def initialized(params: types.InitializedParams) -> None:
        server._initialized = True
        engine.start_loading()  # no-op when the command line already started it
        await server.report_model_load()

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        params: types.InlineCompletionParams,
    ) -> types.InlineCompletionList:
        completion, document, offset = await server.complete_at(
            params.text_document.uri, params.position
        )
        if not completion.text:
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(
            insert_text=completion.text,
            range=replaced_range(document, params.position, offset, completion),
        )
        return types.InlineCompletionList(items=[item])

    # For clients without inline completion: the same text as one completion item.
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(params: types.CompletionParams) -> types.CompletionList:
        completion, document, offset = await server.complete_at(
            params.text_document.uri, params.position
        )
        # Incomplete: the answer depends on the exact cursor, so the client must ask again
        # as the user types rather than filter this list.
        if not completion.text:
            return types.CompletionList(is_incomplete=True, items=[])
        item = types.CompletionItem(
            label=_label(completion.text),
            kind=types.CompletionItemKind.Snippet,
            detail=SERVER_NAME,
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(
                range=replaced_range(document, params.position, offset, completion),
                new_text=completion.text,
            ),
        )
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.feature(STATS_REQUEST)
    def stats(params: Any) -> dict[str, Any]:
        return stats_payload(engine.stats())

    @server.feature(ACCEPTED_NOTIFICATION)
    def accepted(params: Any) -> None:
        chars = getattr(params, "chars", 0)
        engine.accepted(chars if isinstance(chars, int) and not isinstance(chars, bool) else 0)

    @server.feature(types.SHUTDOWN)
    def shutdown(params: None) -> None:
        engine.close()

    return server
