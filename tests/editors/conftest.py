"""Shared setup of the editor tests: the document typed into each editor and the
completion the server itself gives there, so no test hard-codes model text."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient

REPO = Path(__file__).resolve().parents[2]
EDITORS = REPO / "editors"
BIN = Path(sys.executable).parent

# The file opened in the editor; the test types TYPED at the end of its last line. There
# the shipped model completes the line (with "(path)", confident enough to clear the
# default confidence gate), and none of the completions shown while TYPED is typed starts
# with its next character, so what the editor shows at the end comes from the model, not
# from typing through an earlier completion. TYPED has no brackets, which editors would
# close by themselves.
BEFORE = "import os\n\npath = os.path.\n"
TYPED = "join"
AFTER = BEFORE.replace("os.path.\n", "os.path." + TYPED + "\n")
LINE = 3  # 1-based line of the cursor
COL = len("path = os.path." + TYPED) + 1  # 1-based column after the typed text


# The bracket case: the file has `path = os.path.join` and the test types `(`, which the
# editor closes by itself (`()`, cursor between). There the server answers with a range
# that replaces the `)` (replace_chars >= 1): accepting must not leave a `)` too many.
BRACKET_BEFORE = "import os\n\npath = os.path.join\n"
BRACKET_LINE = 3
BRACKET_TYPED_LINE = "path = os.path.join()"  # after typing "(" with auto-closing
BRACKET_COL = len("path = os.path.join(") + 1  # 1-based column of the cursor, before ")"

# Several candidates: the editors ask for CANDIDATES suggestions at the end of TYPED (in
# AFTER), where the server offers more than one distinct text, and cycle through them.
CANDIDATES = 3

# Test instrumentation: a folder whose sitecustomize.py holds the server's model load
# until the file named by FIM_TEST_LOAD_GATE exists (see load_gate/sitecustomize.py).
LOAD_GATE = Path(__file__).resolve().parent / "load_gate"


def gated_env(gate: Path) -> dict[str, str]:
    """Environment for an editor whose fim-server must wait for `gate` to load the model."""
    path = os.environ.get("PYTHONPATH")
    return {
        "PYTHONPATH": str(LOAD_GATE) + (os.pathsep + path if path else ""),
        "FIM_TEST_LOAD_GATE": str(gate),
    }


def next_word(text: str) -> str:
    """What accepting the next word takes of a suggestion: spaces, then punctuation, then
    word characters (`(values` of `(values)`), as the editor packages define it."""
    match = re.match(r"\s*[^\w\s]*\w*", text)
    assert match is not None
    return match.group(0)


def next_line(text: str) -> str:
    """What accepting the next line takes: up to the line break, or a leading line break
    and the next line."""
    match = re.match(r"\n?[^\n]*", text)
    assert match is not None
    return match.group(0)


def editor_available(missing: list[str]) -> pytest.MarkDecorator:
    """Skip a test module whose editor is not installed here, with the reason; where
    FIM_EDITOR_TESTS=require (CI, which installs them all) a missing editor is an error."""
    if missing and os.environ.get("FIM_EDITOR_TESTS") == "require":
        pytest.fail("editor tests required but missing: " + "; ".join(missing), pytrace=False)
    return pytest.mark.skipif(bool(missing), reason="not installed: " + "; ".join(missing))


def server_command() -> list[str]:
    """How the editors start the server under test: this environment's fim-server."""
    script = BIN / "fim-server"
    if not script.exists():
        pytest.fail(f"{script} is missing: install the package with pip install -e .")
    return [str(script)]


def find_program(name: str, *candidates: Path) -> str | None:
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


@pytest.fixture(scope="session")
def expected_completion(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What `fim-server complete` prints for AFTER at the cursor: the text every editor
    must show as ghost text and insert on accept."""
    folder = tmp_path_factory.mktemp("expected")
    path = folder / "mean.py"
    path.write_text(AFTER, encoding="utf-8")
    result = subprocess.run(
        [*server_command(), "complete", f"{path}:{LINE}:{COL}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout.removesuffix("\n")
    if not text:
        pytest.fail(
            "the model gives no completion for the editor tests' document "
            f"({result.stderr.strip()}); pick a document where it does"
        )
    return text


def complete(text: str, line: int, col: int, folder: Path) -> tuple[str, int]:
    """`fim-server complete` on `text` at (line, col), 1-based: the completion and how many
    characters after the cursor it replaces."""
    path = folder / "complete.py"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [*server_command(), "complete", f"{path}:{line}:{col}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    replace = re.search(r"replace_chars=(\d+)", result.stderr)
    assert replace is not None, result.stderr
    text = result.stdout.removesuffix("\n")
    if not text:
        pytest.fail(
            "the model gives no completion for an editor test's document "
            f"({result.stderr.strip()}); pick a document where it does"
        )
    return text, int(replace.group(1))


@pytest.fixture(scope="session")
def bracket_completion(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """What `fim-server complete` gives between the brackets of BRACKET_TYPED_LINE: the
    text and how many characters after the cursor it replaces (at least the `)`)."""
    text = BRACKET_BEFORE.replace("os.path.join\n", "os.path.join()\n")
    completion, replace = complete(
        text, BRACKET_LINE, BRACKET_COL, tmp_path_factory.mktemp("bracket")
    )
    if replace < 1:
        pytest.fail(f"the server no longer replaces the closing bracket ({completion!r})")
    return completion, replace


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A project folder holding the file to edit (BEFORE)."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "mean.py").write_text(BEFORE, encoding="utf-8")
    (folder / "join.py").write_text(BRACKET_BEFORE, encoding="utf-8")
    return folder


async def _inline_items(text: str, line: int, col: int, settings: dict) -> list[tuple[str, int]]:
    """The server's textDocument/inlineCompletion items for `text` at (line, col), 1-based,
    over LSP with initializationOptions `settings`: (text, characters replaced) each."""
    client = LanguageClient("fim-editor-tests", "1")
    await client.start_io(*server_command(), "--stdio")
    try:
        await client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(), initialization_options=settings
            )
        )
        client.initialized(types.InitializedParams())
        async with asyncio.timeout(300):
            while True:
                stats = await client.protocol.send_request_async("fim/stats", None)
                if stats.modelReady or stats.modelError:
                    break
                await asyncio.sleep(0.1)
        uri = "file:///fim-editor-tests/mean.py"
        document = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=document))
        result = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Invoked
                ),
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line - 1, character=col - 1),
            )
        )
        items = result.items if isinstance(result, types.InlineCompletionList) else result or []
        offers = []
        for item in items:
            assert isinstance(item.insert_text, str) and item.range is not None, item
            offers.append((item.insert_text, item.range.end.character - (col - 1)))
        await client.shutdown_async(None)
        client.exit(None)
        return offers
    finally:
        await client.stop()


@pytest.fixture(scope="session")
def candidate_completions(expected_completion: str) -> list[str]:
    """What the server offers at the end of TYPED in AFTER with `candidates` CANDIDATES,
    over LSP: the texts the editors must cycle through, the first one the usual
    completion."""
    offers = asyncio.run(_inline_items(AFTER, LINE, COL, {"candidates": CANDIDATES}))
    texts = [text for text, _ in offers]
    if len(set(texts)) < 2:
        pytest.fail(
            f"the server offers {texts!r} with candidates={CANDIDATES} at the editor tests' "
            "cursor; pick a document where it offers at least two distinct completions"
        )
    assert len(texts) == len(set(texts)) <= CANDIDATES, texts
    assert texts[0] == expected_completion, (texts, expected_completion)
    # The editor tests read the ghost text as the whole suggestion: nothing after the
    # cursor is replaced here.
    assert all(replaced == 0 for _, replaced in offers), offers
    return texts
