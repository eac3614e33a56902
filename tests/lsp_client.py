"""What the LSP tests do as a client: open a document, ask for an inline completion,
read and wait on `fim/stats`."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient


async def get_stats(client: LanguageClient) -> dict[str, Any]:
    return (await client.protocol.send_request_async("fim/stats", None))._asdict()


async def wait_for(client: LanguageClient, check, timeout: float, what: str) -> dict[str, Any]:
    """Poll fim/stats until `check(stats)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        stats = await get_stats(client)
        if check(stats):
            return stats
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; stats: {stats}")
        await asyncio.sleep(0.01)


def open_document(client: LanguageClient, text: str) -> str:
    """Open a new Python document holding `text`; its URI (a fresh name every call)."""
    uri = f"file:///tmp/fim-test/{uuid.uuid4().hex}.py"
    item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))
    return uri


def inline_params(
    uri: str,
    line: int,
    character: int,
    trigger: types.InlineCompletionTriggerKind = types.InlineCompletionTriggerKind.Automatic,
) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(trigger_kind=trigger),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
    )
