"""Typing replay: the ghost text a user sees, measured through the real server over LSP.

The files typed are code from projects outside every corpus here (benchmarks/data/outside,
their licences and sources in its SOURCES.md): `--set check` (the default) or `tune`, the
two disjoint sets of each language; the gate thresholds are chosen on `tune` and checked
on `check`. `--set corpus` picks held-out files of the embedded model's corpus split
instead (fim_model.corpus.is_held_out: folders it never trained on) from this machine's
code (fim_model.sources.default_roots), a few per language, seeded. In each file, a fixed
number of lines (seeded) are typed again character by
character, with the rest of the file present: each line is emptied after its indentation
(as an editor's auto-indent leaves it), then every keystroke is a didChange and an inline
completion request. With `--write-through` (a run of consecutive lines) the run is written
as new code instead: its lines are gone at the start, and after each one the replay types
the line break and the next line's indentation (Enter and an editor's auto-indent), so the
code below the cursor is the code after the run throughout, as when a user writes new
lines; blank and comment lines inside the run are pasted whole, without requests. When
the suggestion is exactly what comes next the replay accepts it (Tab), or, when only its
start is, the longest run of its whole words that is (partial accept, word by word); an
acceptance is one keystroke too. Otherwise it types the next character itself.

Prints, per language (Python, JavaScript/TypeScript, Go, Rust, Java, C/C++) and over
all: characters typed by completions, suggestions shown per keystroke, acceptance rate
(suggestions accepted per suggestion shown), whole accepts and partial (word) accepts
apart with the characters each typed, keystroke latency p50/p95 (client side), model
runs per keystroke and the cache hit rate (from the server's fim/stats). Every shown
suggestion is recorded with its
confidence, so the acceptance rate and characters saved of every confidence gate can be
computed from one run at gate 0 (an approximation: a hidden suggestion cannot be typed
through, so the real run at a gate differs a little; the replay at the chosen gate
checks it). Writes the events and summaries as JSON, the tables as markdown and the gate
curve as a PNG.

    .venv/bin/python benchmarks/typing_replay.py            # gate 0 + curve, then the default gate
    .venv/bin/python benchmarks/typing_replay.py --set tune --gates 0 --out /tmp/tune
    .venv/bin/python benchmarks/typing_replay.py --gates 0.3 --out /tmp/replay
    .venv/bin/python benchmarks/typing_replay.py --server-cmd "fim-server --stdio --model DIR"

Any backend works: the server command picks it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shlex
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import tree_sitter
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from fim_model.corpus import is_held_out
from fim_model.sources import SourceRoot, decode_source, default_roots, language_of
from fim_server.cleanup import gate as gate_module
from fim_server.config import defaults
from fim_server.context.languages import LANGUAGES, parse

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "results" / "typing-replay"
DEFAULT_SERVER = f"{shlex.quote(sys.executable)} -m fim_server --stdio"
# Code from outside projects, in two disjoint sets (SOURCES.md says where each file is from).
OUTSIDE = REPO / "benchmarks" / "data" / "outside"
OUTSIDE_SETS = ("tune", "check")
DEFAULT_LANGUAGES = ("python", "javascript", "typescript", "go", "rust", "java", "c", "cpp")
# How the figures group languages: one row for JavaScript and TypeScript, one for C and C++.
REPORT_GROUP = {"typescript": "javascript", "tsx": "javascript", "cpp": "c"}
GROUP_NAMES = {"javascript": "javascript/typescript", "c": "c/cpp"}
# LSP language ids, where they differ from the corpus's names.
LANGUAGE_IDS = {"bash": "shellscript", "tsx": "typescriptreact"}
# Lines worth typing: long enough for a completion to save something, short enough that a
# handful of them fit the keystroke budget.
MIN_LINE_CHARS = 6
MAX_LINE_CHARS = 80
# A "word" for partial accept: a run of word characters or of punctuation, with the
# blanks before it (how editors step through ghost text with Ctrl+Right).
_WORD = re.compile(r"\s*(?:\w+|[^\w\s]+)|\s+")
# The targets a default gate is chosen for: 30% of the suggestions shown accepted (issue
# 26), and at least 4% of the characters typed by completions (issue 20).
TARGET_ACCEPTANCE = 0.30
TARGET_SAVED = 0.04


# -- picking held-out files ------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutFile:
    path: str  # corpus path: "label/relative/path"
    language: str
    text: str


def _refuse_benchmarks(roots: list[SourceRoot]) -> None:
    """Evaluation benchmarks are never typed: a source root inside a benchmarks folder
    (this repository's, or any other) stops the replay."""
    for root in roots:
        if "benchmarks" in root.location.resolve().parts:
            raise SystemExit(f"refusing to replay files from a benchmark folder: {root.location}")


@cache
def _names(root: SourceRoot) -> list[str]:
    """Relative paths of the files `root` would give the corpus, without reading them."""
    if root.location.suffix == ".zip":
        with zipfile.ZipFile(root.location) as zf:
            names = zf.namelist()
    else:
        names = [
            p.relative_to(root.location).as_posix()
            for p in root.location.rglob("*")
            if p.is_file() and not p.is_symlink()
        ]
    # The corpus's own filter (skipped folders, languages), so that "held out" means
    # exactly what it meant for training.
    return [name for name in sorted(names) if root._wanted(PurePosixPath(name))]


def _read(root: SourceRoot, name: str) -> bytes | None:
    try:
        if root.location.suffix == ".zip":
            with zipfile.ZipFile(root.location) as zf:
                return zf.read(name)
        return (root.location / name).read_bytes()
    except (OSError, KeyError):
        return None


def _in_comment_or_string(tree: tree_sitter.Tree, row: int, column: int) -> bool:
    node = tree.root_node.named_descendant_for_point_range((row, column), (row, column))
    while node is not None:
        if "comment" in node.type or "string" in node.type:
            return True
        node = node.parent
    return False


def typable_lines(text: str, language: str, tree: tree_sitter.Tree | None = None) -> list[int]:
    """Rows worth typing: code (not comments, docstrings and other strings: licence
    headers would swamp the figures), ASCII (so columns are LSP positions), not too short
    nor too long. `tree`: the text's parse, where the caller has it."""
    tree = tree or parse(LANGUAGES[language], text.encode("utf-8"))
    rows = []
    for row, line in enumerate(text.split("\n")):
        body = line.strip()
        indent = len(line) - len(line.lstrip())
        if not (line.isascii() and MIN_LINE_CHARS <= len(body) <= MAX_LINE_CHARS):
            continue
        if "\t" in body or line.endswith(" ") or _in_comment_or_string(tree, row, indent):
            continue
        rows.append(row)
    return rows


def held_out_files(
    language: str, count: int, lines: int, seed: int, roots: list[SourceRoot]
) -> list[HeldOutFile]:
    """`count` held-out files of `language` with at least `lines` typable lines, picked
    with `seed` among every held-out file of that language on this machine."""
    _refuse_benchmarks(roots)
    candidates: list[tuple[SourceRoot, str]] = []
    for root in roots:
        if language not in root.languages:
            continue
        for name in _names(root):
            path = f"{root.label}/{name}"
            # Nor a package's own benchmark suite (site-packages/x/benchmarks/...).
            if "benchmarks" in PurePosixPath(path).parts:
                continue
            if language_of(PurePosixPath(name)) == language and is_held_out(path):
                candidates.append((root, name))
    random.Random(f"{seed}:{language}").shuffle(candidates)
    picked: list[HeldOutFile] = []
    for root, name in candidates:
        raw = _read(root, name)
        text = decode_source(raw) if raw is not None else None
        if text is None or "\r" in text or len(typable_lines(text, language)) < lines:
            continue
        picked.append(HeldOutFile(f"{root.label}/{name}", language, text))
        if len(picked) == count:
            break
    return picked


def outside_files(which: str, languages: list[str], lines: int) -> list[HeldOutFile]:
    """Every file of the outside set `which` ("tune" or "check") in one of `languages`
    with at least `lines` typable lines, in path order."""
    picked: list[HeldOutFile] = []
    for path in sorted((OUTSIDE / which).rglob("*")):
        rel = PurePosixPath(path.relative_to(OUTSIDE).as_posix())
        language = language_of(rel)
        if language not in languages or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if "\r" in text or len(typable_lines(text, language)) < lines:
            continue
        picked.append(HeldOutFile(f"outside/{rel}", language, text))
    return picked


def report_group(language: str) -> str:
    """The row of the figures `language` counts in: "javascript/typescript", "c/cpp", or
    the language itself."""
    group = REPORT_GROUP.get(language, language)
    return GROUP_NAMES.get(group, group)


def chosen_rows(file: HeldOutFile, lines: int, seed: int, consecutive: bool = False) -> list[int]:
    """`lines` typable rows of `file`, picked with `seed`: anywhere in the file (each row
    a jump, a cold prompt for the model server), or with `consecutive` a run of typable
    rows one after the other from a random start (typing through a stretch of the file,
    where the server's prompt cache carries from one line to the next)."""
    rows = typable_lines(file.text, file.language)
    pick = random.Random(f"{seed}:{file.path}")
    if consecutive:
        start = pick.randrange(max(len(rows) - lines, 0) + 1)
        return rows[start : start + lines]
    return sorted(pick.sample(rows, min(lines, len(rows))))


def emptied_line(file: HeldOutFile, row: int) -> tuple[str, int, str]:
    """`file` with line `row` emptied after its indentation (as an editor's auto-indent
    leaves a new line): the document, the cursor's offset there, and the line's code."""
    lines = file.text.split("\n")
    line = lines[row]
    indent = len(line) - len(line.lstrip())
    offset = sum(len(text) + 1 for text in lines[:row]) + indent
    document = file.text[:offset] + file.text[offset + len(line) - indent :]
    return document, offset, line[indent:]


@dataclass(frozen=True)
class LineToType:
    """One line of a write-through run: typed after `indent` (with requests) when `typed`,
    else pasted whole; then, unless it is the run's last, the line break and the next
    line's indentation."""

    row: int
    indent: str
    body: str
    typed: bool
    next_indent: str | None  # None: the run's last line


# Nodes whose children are statements (each grammar's names): a run of new code may end
# between two of them, or before one (a compound statement's body).
STATEMENT_CONTAINERS = frozenset(
    {
        "module", "block", "program", "statement_block", "class_body", "source_file",
        "declaration_list", "field_declaration_list", "compound_statement",
        "translation_unit", "constructor_body", "interface_body", "enum_body",
    }
)  # fmt: skip


def _last_row(node: tree_sitter.Node) -> int:
    row, column = node.end_point
    return row - 1 if column == 0 and row > node.start_point[0] else row


def between_statements(tree: tree_sitter.Tree, row: int) -> bool:
    """Whether the line break after `row` falls between statements (or before a body):
    the code below it then reads as code of its own, as it does when a user writes new
    lines above it. Not inside one statement (`if (` / `a` | `and b` / `):`)."""
    node = tree.root_node  # down to the deepest node the line break falls inside
    while inside := next(
        (c for c in node.children if c.start_point[0] <= row < _last_row(c)), None
    ):
        node = inside
    if node.parent is None or node.type in STATEMENT_CONTAINERS:
        return True
    after = next(
        (c for c in node.children if c.start_point[0] > row and "comment" not in c.type), None
    )
    return after is not None and after.type in STATEMENT_CONTAINERS


def write_through_plan(file: HeldOutFile, rows: list[int]) -> tuple[str, list[LineToType]]:
    """The document a write-through run starts from (the rows `rows[0]` to `rows[-1]`
    gone but for the first one's indentation) and the lines to write, in order. Writing
    them all gives `file.text` back. A run that would start or end inside a statement
    is widened to the statement's first and last rows (the rows it gains that are
    typable are typed): the code below the cursor is then whole statements."""
    lines = file.text.split("\n")
    first, last = rows[0], rows[-1]
    typed = set(rows)
    tree = parse(LANGUAGES[file.language], file.text.encode("utf-8"))
    while first > 0 and not between_statements(tree, first - 1):
        first -= 1
    while last < len(lines) - 1 and not between_statements(tree, last):
        last += 1
    typed |= set(typable_lines(file.text, file.language, tree)) & set(range(first, last + 1))

    def indent_of(row: int) -> str:
        return lines[row][: len(lines[row]) - len(lines[row].lstrip())]

    start = lines[:first] + [indent_of(first)] + lines[last + 1 :]
    plan = [
        LineToType(
            row,
            indent_of(row),
            lines[row][len(indent_of(row)) :],
            row in typed,
            indent_of(row + 1) if row < last else None,
        )
        for row in range(first, last + 1)
    ]
    return "\n".join(start), plan


# -- accepting -------------------------------------------------------------------------


def accepted_chars(suggestion: str, wanted: str) -> tuple[int, bool]:
    """Characters of `suggestion` a user would take when `wanted` is what they are about
    to type, and whether that is the whole suggestion (else whole words of it)."""
    if suggestion and wanted.startswith(suggestion):
        return len(suggestion), True
    taken = 0
    for word in _WORD.finditer(suggestion):
        if not wanted.startswith(suggestion[: word.end()]):
            break
        taken = word.end()
    return taken, False


# -- the replay ------------------------------------------------------------------------


@dataclass
class Keystroke:
    language: str
    path: str
    row: int
    column: int
    latency_ms: float
    suggestion: str  # the ghost text shown ("" when none)
    confidence: float | None  # the gate's score of the last completion (fim/stats)
    model_confidence: float | None  # the backend's part of it
    accepted: int  # characters of the suggestion accepted
    full: bool  # the whole suggestion was accepted
    model_runs: int  # model runs this keystroke caused
    cached: bool  # answered from the cache or by typing-through
    gated: bool  # a completion was hidden by the confidence gate


@dataclass
class Replay:
    gate: float
    server: str
    backend: str | None = None
    files: dict[str, list[str]] = field(default_factory=dict)  # language -> corpus paths
    typed_chars: dict[str, int] = field(default_factory=dict)  # language -> line characters
    keystrokes: list[Keystroke] = field(default_factory=list)
    server_stats: dict[str, Any] = field(default_factory=dict)  # fim/stats at the end


async def _stats(client: LanguageClient) -> dict[str, Any]:
    return (await client.protocol.send_request_async("fim/stats", None))._asdict()


async def _wait_for_model(client: LanguageClient, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = await _stats(client)
        if current["modelReady"]:
            return current
        if current["modelError"]:
            raise SystemExit(f"the server could not load its model: {current['modelError']}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the model did not load within {timeout:.0f} s")
        await asyncio.sleep(0.1)


def _change(uri: str, version: int, row: int, start: int, end: int, text: str):
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[
            types.TextDocumentContentChangePartial(
                range=types.Range(
                    start=types.Position(line=row, character=start),
                    end=types.Position(line=row, character=end),
                ),
                text=text,
            )
        ],
    )


async def _suggest(client: LanguageClient, uri: str, row: int, column: int) -> str:
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=row, character=column),
        )
    )
    if not result or not result.items:
        return ""
    item = result.items[0]
    text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
    # The rest of a replayed line is empty, so a suggestion replaces nothing; one that
    # claims a range is not what comes next.
    if item.range is not None and item.range.start != item.range.end:
        return ""
    return text


async def _type_line(
    client: LanguageClient,
    file: HeldOutFile,
    uri: str,
    version: int,
    row: int,
    indent: int,
    body: str,
    replay: Replay,
) -> int:
    """Type `body` at column `indent` of `row`, a request before every keystroke, taking
    what the suggestions get right; returns the document's version after it."""
    before = await _stats(client)
    typed = 0
    while typed < len(body):
        column = indent + typed
        started = time.perf_counter()
        suggestion = await _suggest(client, uri, row, column)
        latency_ms = (time.perf_counter() - started) * 1000
        after = await _stats(client)
        taken, full = accepted_chars(suggestion, body[typed:])
        replay.keystrokes.append(
            Keystroke(
                language=file.language,
                path=file.path,
                row=row,
                column=column,
                latency_ms=latency_ms,
                suggestion=suggestion,
                confidence=after["lastConfidence"],
                model_confidence=after["lastModelConfidence"],
                accepted=taken,
                full=full,
                model_runs=after["modelRuns"] - before["modelRuns"],
                cached=after["cacheHits"] > before["cacheHits"],
                gated=after["gated"] > before["gated"],
            )
        )
        before = after
        if taken:
            # What the editor packages send when Tab (or a partial accept) takes it.
            accepted = {"uri": uri, "chars": taken, "partial": not full}
            client.protocol.notify("fim/accepted", accepted)
        insert = body[typed : typed + max(taken, 1)]
        version += 1
        client.text_document_did_change(_change(uri, version, row, column, column, insert))
        typed += len(insert)
    return version


async def replay_file(
    client: LanguageClient,
    file: HeldOutFile,
    rows: list[int],
    replay: Replay,
    write_through: bool = False,
) -> None:
    """Type `rows` of `file` again: each emptied in the whole file, or with
    `write_through` (consecutive rows) as new code (`write_through_plan`)."""
    # A URI under the replay's own scheme: the server reads nothing from disk anyway.
    uri = f"file:///replay/{file.path}"
    text, plan = write_through_plan(file, rows) if write_through else (file.text, [])
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri,
                language_id=LANGUAGE_IDS.get(file.language, file.language),
                version=1,
                text=text,
            )
        )
    )
    version = 1
    if write_through:
        for line in plan:
            indent = len(line.indent)
            if line.typed:
                version = await _type_line(
                    client, file, uri, version, line.row, indent, line.body, replay
                )
            elif line.body:
                version += 1
                client.text_document_did_change(
                    _change(uri, version, line.row, indent, indent, line.body)
                )
            if line.next_indent is not None:  # Enter, and the editor's auto-indent
                end = indent + len(line.body)
                version += 1
                client.text_document_did_change(
                    _change(uri, version, line.row, end, end, "\n" + line.next_indent)
                )
    else:
        lines = file.text.split("\n")
        for row in rows:
            line = lines[row]
            indent = len(line) - len(line.lstrip())
            version += 1
            client.text_document_did_change(_change(uri, version, row, indent, len(line), ""))
            version = await _type_line(
                client, file, uri, version, row, indent, line[indent:], replay
            )
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


async def run_replay(
    files: list[HeldOutFile],
    rows: dict[str, list[int]],
    args: argparse.Namespace,
    gate: float | None,
) -> Replay:
    """Type `files` through the server at minConfidence `gate` (None: the backend's own
    default, which the replay records from fim/stats)."""
    command = shlex.split(args.server_cmd)
    replay = Replay(gate=gate or 0.0, server=args.server_cmd)
    options: dict[str, Any] = {"debounceMs": args.debounce_ms}
    if gate is not None:
        options["minConfidence"] = gate
    client = LanguageClient("fim-typing-replay", "0.1")
    await client.start_io(command[0], *command[1:])
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                )
            ),
            initialization_options={"fim": options},
        )
    )
    client.initialized(types.InitializedParams())
    try:
        ready = await _wait_for_model(client, args.timeout)
        replay.backend = ready["backendDescription"]
        replay.gate = ready["minConfidence"]  # the gate in force, the backend's or ours
        for file in files:
            file_rows = rows[file.path]
            group = report_group(file.language)
            replay.files.setdefault(group, []).append(file.path)
            lines = file.text.split("\n")
            replay.typed_chars[group] = replay.typed_chars.get(group, 0) + sum(
                len(lines[r].strip()) for r in file_rows
            )
            await replay_file(client, file, file_rows, replay, args.write_through)
            print(f"  {file.language:<11} {file.path}", file=sys.stderr)
        replay.server_stats = await _stats(client)
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    return replay


# -- figures ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(keystrokes: list[Keystroke], typed_chars: int) -> dict[str, Any]:
    shown = [k for k in keystrokes if k.suggestion]
    accepted = [k for k in shown if k.accepted]
    whole = [k for k in accepted if k.full]
    partial = [k for k in accepted if not k.full]
    n = max(len(keystrokes), 1)
    return {
        "keystrokes": len(keystrokes),
        "line_chars": typed_chars,
        "chars_by_completion": sum(k.accepted for k in accepted),
        "chars_saved": sum(k.accepted for k in accepted) / max(typed_chars, 1),
        "shown": len(shown),
        "shown_per_keystroke": len(shown) / n,
        "accepted": len(accepted),
        "accepted_full": len(whole),
        "accepted_partial": len(partial),
        "chars_by_full": sum(k.accepted for k in whole),
        "chars_by_partial": sum(k.accepted for k in partial),
        "acceptance_rate": len(accepted) / max(len(shown), 1),
        "full_acceptance_rate": len(whole) / max(len(shown), 1),
        "gated": sum(k.gated for k in keystrokes),
        "latency_p50_ms": percentile([k.latency_ms for k in keystrokes], 0.5),
        "latency_p95_ms": percentile([k.latency_ms for k in keystrokes], 0.95),
        "model_runs_per_keystroke": sum(k.model_runs for k in keystrokes) / n,
        "cache_hit_rate": sum(k.cached for k in keystrokes) / n,
    }


def summaries(replay: Replay) -> dict[str, dict[str, Any]]:
    table = {
        group: summarise(
            [k for k in replay.keystrokes if report_group(k.language) == group],
            replay.typed_chars[group],
        )
        for group in replay.typed_chars
    }
    table["all"] = summarise(replay.keystrokes, sum(replay.typed_chars.values()))
    return table


def gate_curve(replay: Replay, score: str = "confidence") -> list[dict[str, float]]:
    """Acceptance rate and characters saved had the suggestions below each gate been
    hidden (from a replay at gate 0; `score`: "confidence", the gate's, or
    "model_confidence", the backend's alone)."""
    shown = [k for k in replay.keystrokes if k.suggestion]
    total = max(sum(replay.typed_chars.values()), 1)
    curve = []
    for step in range(101):
        gate = step / 100
        kept = [k for k in shown if gate <= 0 or (getattr(k, score) or 0.0) >= gate]
        taken = [k for k in kept if k.accepted]
        curve.append(
            {
                "gate": gate,
                "shown": len(kept),
                "accepted": len(taken),
                "acceptance_rate": len(taken) / len(kept) if kept else 0.0,
                "chars_saved": sum(k.accepted for k in taken) / total,
            }
        )
    return curve


def choose_gate(curve: list[dict[str, float]]) -> tuple[float, str]:
    """The gate users would want, and why: among the gates that meet both targets, the one
    that keeps the most characters typed by completions (the lowest); where none does,
    the one with the best acceptance rate among those keeping at least TARGET_SAVED of
    the characters (wrong ghost text costs more than a missing one); where none keeps
    that much, the best product of acceptance rate and characters saved."""
    meeting = [
        p
        for p in curve
        if p["acceptance_rate"] >= TARGET_ACCEPTANCE and p["chars_saved"] >= TARGET_SAVED
    ]
    if meeting:
        best = max(meeting, key=lambda p: (p["chars_saved"], -p["gate"]))
        return best["gate"], "the gate that meets both targets with the most characters saved"
    useful = [p for p in curve if p["chars_saved"] >= TARGET_SAVED and p["shown"]]
    if useful:
        best = max(useful, key=lambda p: (p["acceptance_rate"], -p["gate"]))
        return best["gate"], (
            f"no gate meets both targets; the best acceptance rate among the gates keeping "
            f"{100 * TARGET_SAVED:.0f}% of the characters typed by completions"
        )
    useful = [p for p in curve if p["shown"]]
    best = max(useful, key=lambda p: (p["acceptance_rate"] * p["chars_saved"], -p["gate"]))
    return best["gate"], (
        "no gate keeps enough characters; the best acceptance rate x characters saved"
    )


def plot_curve(replay: Replay, chosen: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for score, label, style in (
        ("confidence", "gate score (model confidence + post-processing)", "-"),
        ("model_confidence", "model confidence alone", "--"),
    ):
        curve = gate_curve(replay, score)
        xs = [100 * p["chars_saved"] for p in curve if p["shown"]]
        ys = [100 * p["acceptance_rate"] for p in curve if p["shown"]]
        ax.plot(xs, ys, style, label=label)
        if score == "confidence":
            for p in curve:
                if p["shown"] and round(p["gate"] * 100) % 10 == 0:
                    x, y = 100 * p["chars_saved"], 100 * p["acceptance_rate"]
                    ax.annotate(f"{p['gate']:.1f}", (x, y), fontsize=7, alpha=0.7)
            point = next(p for p in curve if abs(p["gate"] - chosen) < 1e-9)
            ax.plot(
                [100 * point["chars_saved"]],
                [100 * point["acceptance_rate"]],
                "o",
                color="crimson",
                label=f"gate chosen on this curve: {chosen:.2f}",
            )
    ax.axhline(100 * TARGET_ACCEPTANCE, color="grey", lw=0.8, ls=":")
    ax.axvline(100 * TARGET_SAVED, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("characters typed by completions (%)")
    ax.set_ylabel("acceptance rate (% of suggestions shown)")
    ax.set_title("Typing replay: the confidence gate from 0 to 1", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def markdown(replay: Replay) -> str:
    rows = [
        f"Gate (minConfidence) {replay.gate:.2f}; backend: {replay.backend}",
        "",
        "| language | keystrokes | chars typed by completions | shown / keystroke "
        "| acceptance rate | whole accepts (chars) | word accepts (chars) "
        "| hidden by the gate | latency p50 / p95 (ms) "
        "| model runs / keystroke | cache hits |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for language, s in summaries(replay).items():
        name = f"**{language}**" if language == "all" else language
        rows.append(
            f"| {name} | {s['keystrokes']} "
            f"| {100 * s['chars_saved']:.1f}% ({s['chars_by_completion']}/{s['line_chars']}) "
            f"| {s['shown_per_keystroke']:.2f} "
            f"| {100 * s['acceptance_rate']:.1f}% ({s['accepted']}/{s['shown']}) "
            f"| {s['accepted_full']} ({s['chars_by_full']}) "
            f"| {s['accepted_partial']} ({s['chars_by_partial']}) "
            f"| {s['gated']} "
            f"| {s['latency_p50_ms']:.0f} / {s['latency_p95_ms']:.0f} "
            f"| {s['model_runs_per_keystroke']:.2f} | {100 * s['cache_hit_rate']:.0f}% |"
        )
    return "\n".join(rows) + "\n"


def write(replay: Replay, out: Path, extra: dict[str, Any] | None = None) -> str:
    out.mkdir(parents=True, exist_ok=True)
    name = f"gate-{replay.gate:.2f}"
    data = {
        "gate": replay.gate,
        "server": replay.server,
        "backend": replay.backend,
        "files": replay.files,
        "summaries": summaries(replay),
        "server_stats": replay.server_stats,
        **(extra or {}),
        "keystrokes": [asdict(k) for k in replay.keystrokes],
    }
    (out / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    table = markdown(replay)
    (out / f"{name}.md").write_text(table)
    return table


def load(path: Path) -> Replay:
    data = json.loads(path.read_text())
    replay = Replay(gate=data["gate"], server=data["server"], backend=data["backend"])
    replay.files = data["files"]
    replay.typed_chars = {k: v["line_chars"] for k, v in data["summaries"].items() if k != "all"}
    replay.keystrokes = [Keystroke(**k) for k in data["keystrokes"]]
    replay.server_stats = data.get("server_stats", {})
    return replay


def _gates(text: str) -> list[float | None]:
    gates: list[float | None] = []
    for part in text.split(","):
        if part == "default":
            gates.append(None)
            continue
        value = float(part)
        if not 0 <= value <= 1:
            raise argparse.ArgumentTypeError(f"a gate must be between 0 and 1, got {part}")
        gates.append(value)
    return gates


async def main_async(args: argparse.Namespace) -> None:
    languages = args.languages.split(",")
    files: list[HeldOutFile] = []
    if args.set in OUTSIDE_SETS:
        files = outside_files(args.set, languages, args.lines)
    else:
        roots = default_roots()
        for language in languages:
            found = held_out_files(language, args.files, args.lines, args.seed, roots)
            if not found:
                print(f"no held-out {language} files on this machine; skipped", file=sys.stderr)
            files += found
    if not files:
        raise SystemExit("no held-out files found for any language")
    consecutive = args.consecutive or args.write_through
    rows = {f.path: chosen_rows(f, args.lines, args.seed, consecutive) for f in files}
    args.out.mkdir(parents=True, exist_ok=True)
    for gate in args.gates:
        print(
            f"replay of {args.set} at gate {'(the backend default)' if gate is None else gate}:",
            file=sys.stderr,
        )
        replay = await run_replay(files, rows, args, gate)
        extra: dict[str, Any] = {"set": args.set}
        if gate == 0:
            curve = gate_curve(replay)
            chosen, why = choose_gate(curve)
            extra |= {
                "chosen_gate": chosen,
                "why": why,
                "curve": curve,
                "curve_model_confidence": gate_curve(replay, "model_confidence"),
            }
        print(write(replay, args.out, extra))  # before the plot: a missing matplotlib loses nothing
        if gate == 0:
            plot_curve(replay, chosen, args.out / "gate-curve.png")
        server = replay.server_stats
        rate = server.get("acceptanceRate")
        print(
            f"the server's fim/stats: {server.get('completions')} shown, {server.get('gated')} "
            f"hidden by the gate, {server.get('accepted')} accepted "
            f"({server.get('acceptedChars')} characters), acceptance rate "
            f"{'n/a' if rate is None else f'{100 * rate:.1f}%'}\n"
        )
        if gate == 0:
            point = curve[round(chosen * 100)]
            backend = replay.server_stats.get("backend")
            print(
                f"gate from the curve: {chosen:.2f} ({why}): offline acceptance "
                f"{100 * point['acceptance_rate']:.1f}%, characters saved "
                f"{100 * point['chars_saved']:.1f}% (the {backend} backend's default is "
                f"{gate_module.default_min_confidence(backend):.2f})\n"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set",
        choices=[*OUTSIDE_SETS, "corpus"],
        default="check",
        help="the files typed: an outside set (benchmarks/data/outside), or 'corpus': "
        "held-out files of the embedded model's corpus split on this machine",
    )
    parser.add_argument("--languages", default=",".join(DEFAULT_LANGUAGES))
    parser.add_argument(
        "--files", type=int, default=3, help="with --set corpus: held-out files per language"
    )
    parser.add_argument("--lines", type=int, default=4, help="lines typed per file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--consecutive",
        action="store_true",
        help="type a run of consecutive lines of each file instead of lines anywhere in it",
    )
    parser.add_argument(
        "--write-through",
        action="store_true",
        help="write a run of consecutive lines as new code: the run is gone at the start, "
        "and each line break is typed (implies --consecutive)",
    )
    parser.add_argument(
        "--gates",
        type=_gates,
        default=[0.0, None],
        help="comma-separated minConfidence values to replay at; 'default': the backend's "
        "own default gate (fim_server/cleanup/gate.py). Default: 0,default",
    )
    parser.add_argument("--debounce-ms", type=int, default=defaults.DEBOUNCE_MS)
    parser.add_argument(
        "--server-cmd",
        default=DEFAULT_SERVER,
        help=f"command that starts the server on stdio (default: {DEFAULT_SERVER})",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the model")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
