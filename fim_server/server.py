"""The Language Server Protocol front end.

Handlers only translate LSP requests into engine calls and the engine's answers back
into LSP results; all completion logic lives in the engine.
"""

from __future__ import annotations

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
from .engine import Completion, Engine, EngineStats

logger = logging.getLogger(__name__)

SERVER_NAME = "fim-server"
STATS_REQUEST = "fim/stats"


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


def _label(text: str) -> str:
    first, _, rest = text.strip().partition("\n")
    return first + (" …" if rest else "")


class FimLanguageServer(LanguageServer):
    def __init__(self, engine: Engine) -> None:
        super().__init__(
            SERVER_NAME, __version__, text_document_sync_kind=types.TextDocumentSyncKind.Incremental
        )
        self.engine = engine

    async def complete_at(self, uri: str, position: types.Position) -> Completion:
        document = open_document(self, uri)
        offset = cursor_offset(document, position)
        completion = await self.engine.complete(document.source, offset)
        if not completion.text:
            logger.debug(
                "no completion at %s:%d:%d: %s",
                uri,
                position.line,
                position.character,
                completion.reason,
            )
        return completion

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
            ms = self.engine.stats().load_ms
            self.window_log_message(
                types.LogMessageParams(
                    types.MessageType.Info, f"fim-server: model ready ({ms:.0f} ms)"
                )
            )


def create_server(engine: Engine) -> FimLanguageServer:
    server = FimLanguageServer(engine)

    @server.feature(types.INITIALIZED)
    async def initialized(params: types.InitializedParams) -> None:
        engine.start_loading()  # no-op when the command line already started it
        await server.report_model_load()

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        params: types.InlineCompletionParams,
    ) -> types.InlineCompletionList:
        completion = await server.complete_at(params.text_document.uri, params.position)
        if not completion.text:
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(
            insert_text=completion.text,
            range=types.Range(start=params.position, end=params.position),
        )
        return types.InlineCompletionList(items=[item])

    # For clients without inline completion: the same text as one completion item.
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(params: types.CompletionParams) -> types.CompletionList:
        completion = await server.complete_at(params.text_document.uri, params.position)
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
                range=types.Range(start=params.position, end=params.position),
                new_text=completion.text,
            ),
        )
        return types.CompletionList(is_incomplete=True, items=[item])

    @server.feature(STATS_REQUEST)
    def stats(params: Any) -> dict[str, Any]:
        return stats_payload(engine.stats())

    @server.feature(types.SHUTDOWN)
    def shutdown(params: None) -> None:
        engine.close()

    return server
