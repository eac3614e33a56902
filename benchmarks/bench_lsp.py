"""Latency and throughput of fim-server as an editor sees it.

Starts the real server over stdio, waits for its model, then for each Python file in
--examples replays "the user deleted some code and waits for the completion":

- single_line: a one-line statement cut after its `=`, `return` or first `(`;
- multi_line: a function body removed (its docstring kept).

Each position is an incremental didChange that removes the code, an inline completion
request, and a didChange that puts the code back. Every position is distinct and the
default server command turns the completion cache off, so no answer comes from the
cache. Prints client-side latency percentiles, model tokens/s and forward passes per
generated token (from the server's fim/stats), and simple quality counts.

    .venv/bin/python benchmarks/bench_lsp.py --n 20
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from fim_server.context.languages import LANGUAGES

DEFAULT_SERVER = f"{shlex.quote(sys.executable)} -m fim_server --stdio --cache-size 0"


@dataclass(frozen=True)
class Task:
    kind: str  # "single_line" or "multi_line"
    start: tuple[int, int]  # (line, code-point column) of the cursor
    end: tuple[int, int]  # end of the code removed before asking
    removed: str  # the original code: the ideal completion


@dataclass
class Outcome:
    task: Task
    latency_ms: float
    text: str
    parses: bool


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    stats_before: dict[str, Any] = field(default_factory=dict)
    stats_after: dict[str, Any] = field(default_factory=dict)


def utf16(line: str, column: int) -> int:
    return len(line[:column].encode("utf-16-le")) // 2


def _single_line_cursor(line: str, indent: int) -> int | None:
    """Where a user might pause while typing this statement."""
    body = line[indent:]
    for marker in (" = ", "return ", "("):
        at = body.find(marker)
        if at >= 0:
            column = indent + at + len(marker)
            return column if line[column:].strip() else None
    return None


def find_tasks(text: str, limit: int) -> list[Task]:
    """Up to `limit` positions, alternating kinds, spread over the file."""
    tree = tree_sitter.Parser(LANGUAGES["python"].tree_sitter_language).parse(text.encode("utf-8"))
    lines = text.split("\n")
    singles: list[Task] = []
    multis: list[Task] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(reversed(node.children))
        if node.type in ("expression_statement", "return_statement"):
            row = node.start_point.row
            if row != node.end_point.row or node.parent is None:
                continue
            line = lines[row]
            indent = len(line) - len(line.lstrip())
            column = _single_line_cursor(line, indent)
            if column is not None and not line.lstrip().startswith(('"', "'")):
                singles.append(Task("single_line", (row, column), (row, len(line)), line[column:]))
        elif node.type == "function_definition":
            body = node.child_by_field_name("body")
            if body is None:
                continue
            statements = [c for c in body.named_children if c.type != "comment"]
            first = statements[0] if statements else None
            if (
                first is not None
                and first.type == "expression_statement"
                and first.named_children
                and first.named_children[0].type == "string"
            ):
                statements = statements[1:]
            # A body on the def line itself is not where a user waits for a block.
            if not statements or statements[0].start_point.row == node.start_point.row:
                continue
            row = statements[0].start_point.row
            indent = len(lines[row]) - len(lines[row].lstrip())
            end_row = body.end_point.row
            removed = "\n".join(lines[row : end_row + 1])[indent:]
            multis.append(
                Task("multi_line", (row, indent), (end_row, len(lines[end_row])), removed)
            )

    def spread(tasks: list[Task], k: int) -> list[Task]:
        if len(tasks) <= k:
            return tasks
        return [tasks[i * len(tasks) // k] for i in range(k)]

    multis = spread(multis, limit // 2)
    singles = spread(singles, limit - len(multis))
    tasks = [t for pair in zip(singles, multis, strict=False) for t in pair]
    tasks += singles[len(multis) :] + multis[len(singles) :]
    return tasks[:limit]


def _position(lines: list[str], line: int, column: int) -> types.Position:
    return types.Position(line=line, character=utf16(lines[line], column))


def _edit(uri: str, version: int, start: types.Position, end: types.Position, text: str):
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[
            types.TextDocumentContentChangePartial(
                range=types.Range(start=start, end=end), text=text
            )
        ],
    )


async def stats(client: LanguageClient) -> dict[str, Any]:
    return (await client.protocol.send_request_async("fim/stats", None))._asdict()


async def wait_for_model(client: LanguageClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        current = await stats(client)
        if current["modelReady"]:
            return
        if current["modelError"]:
            raise SystemExit(f"the server could not load its model: {current['modelError']}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the model did not load within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def run_file(client: LanguageClient, path: Path, limit: int, report: Report) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    uri = path.resolve().as_uri()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=text
            )
        )
    )
    version = 1
    for task in find_tasks(text, limit):
        start = _position(lines, *task.start)
        end = _position(lines, *task.end)
        version += 1
        client.text_document_did_change(_edit(uri, version, start, end, ""))
        started = time.perf_counter()
        result = await client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=start,
            )
        )
        latency_ms = (time.perf_counter() - started) * 1000
        completion = result.items[0].insert_text if result and result.items else ""
        assert isinstance(completion, str)
        edited_lines = (
            lines[: task.start[0]]
            + [lines[task.start[0]][: task.start[1]] + lines[task.end[0]][task.end[1] :]]
            + lines[task.end[0] + 1 :]
        )
        edited = "\n".join(edited_lines)
        offset = sum(len(x) + 1 for x in edited_lines[: task.start[0]]) + task.start[1]
        report.outcomes.append(
            Outcome(task, latency_ms, completion, _parses(edited, offset, completion))
        )
        version += 1
        client.text_document_did_change(_edit(uri, version, start, start, task.removed))
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


def _parses(text: str, offset: int, completion: str) -> bool:
    try:
        ast.parse(text[:offset] + completion + text[offset:])
    except SyntaxError:
        return False
    return True


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_report(report: Report, files: int) -> None:
    outcomes = report.outcomes
    if not outcomes:
        print("no positions found")
        return
    before, after = report.stats_before, report.stats_after
    requests = after["requests"] - before["requests"]
    tokens = after["tokensGenerated"] - before["tokensGenerated"]
    passes = after["forwardPasses"] - before["forwardPasses"]
    model_s = (after["modelMs"] - before["modelMs"]) / 1000
    non_empty = [o for o in outcomes if o.text]
    print(f"files: {files}  requests: {len(outcomes)} (server counted {requests})")
    print(f"non-empty completions: {len(non_empty)}/{len(outcomes)}")
    print("latency, client side (ms):")
    for kind in ("all", "single_line", "multi_line"):
        values = [o.latency_ms for o in outcomes if kind in ("all", o.task.kind)]
        if values:
            print(
                f"  {kind:<12} n={len(values):<4} p50={percentile(values, 0.5):8.1f}"
                f"  p95={percentile(values, 0.95):8.1f}  mean={statistics.fmean(values):8.1f}"
            )
    print(
        f"model: {tokens} tokens, {passes} forward passes, "
        f"{model_s * 1000:.0f} ms in the model, cache hits {after['cacheHits']}"
    )
    if tokens:
        print(f"  tokens/s (model time): {tokens / model_s:.0f}" if model_s else "")
        print(f"  forward passes per generated token: {passes / tokens:.3f}")
    singles = [o for o in outcomes if o.task.kind == "single_line"]
    exact = sum(o.text.strip() == o.task.removed.strip() for o in singles)
    print(f"quality: single-line exact match {exact}/{len(singles)}; ", end="")
    print(f"non-empty completions that parse {sum(o.parses for o in non_empty)}/{len(non_empty)}")


async def main_async(args: argparse.Namespace) -> None:
    files = sorted(Path(args.examples).glob("*.py"))
    if not files:
        raise SystemExit(f"no .py files in {args.examples}")
    command = shlex.split(args.server_cmd)
    client = LanguageClient("fim-bench", "0.1")

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def log_message(params: types.LogMessageParams) -> None:
        print(f"server: {params.message}", file=sys.stderr)

    await client.start_io(command[0], *command[1:])
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                )
            )
        )
    )
    client.initialized(types.InitializedParams())
    report = Report()
    try:
        await wait_for_model(client, args.timeout)
        report.stats_before = await stats(client)
        for path in files:
            await run_file(client, path, args.n, report)
        report.stats_after = await stats(client)
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    print_report(report, len(files))
    if args.show:
        for o in report.outcomes:
            print(f"--- {o.task.kind} line {o.task.start[0] + 1}: {o.latency_ms:.0f} ms")
            print(f"want: {o.task.removed!r}\ngot:  {o.text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="positions per file (default 20)")
    parser.add_argument("--examples", default=str(Path(__file__).resolve().parents[1] / "examples"))
    parser.add_argument(
        "--server-cmd",
        default=DEFAULT_SERVER,
        help=f"command that starts the server on stdio (default: {DEFAULT_SERVER})",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the model")
    parser.add_argument("--show", action="store_true", help="print every completion")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
