"""The diffusion claim, measured: the autoregressive twin against its block-diffusion control.

Starts one real `fim-server --model FOLDER` per model (LSP over stdio, completion cache
off) and asks every server for an inline completion at the same held-out spans of the
repository's evaluation suites (HumanEval-Infilling single-line and multi-line, SAFIM
block; fim_server/eval/tasks.py), interleaved request by request and in rotating order,
so that whatever else loads the machine hits every model alike. Each request is a new
document (a fresh cache miss) and triggerKind Invoked (no debounce). All servers get the
same settings: minConfidence 0 (nothing hidden by the gate) and the same contextTokens.

Per model: tokens/s in the model and forward passes per generated token (the server's
`fim/stats` counters, read before and after each request), client-side latency p50/p95,
and exact match of the inserted text against the removed reference (normalised as
`fim-server eval` does). Because post-processing may rightly cut or reject text, the
raw model output is scored too: `--raw` runs each model in this process on the same
prefix and suffix (trimmed by whole lines to the same token window), without the
server's context building or post-processing.

    .venv/bin/python benchmarks/bench_twins.py --n 30 --out results/twins/twins.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from fim_server.config import defaults
from fim_server.eval.tasks import BENCHMARKS, Task, load_suite, normalise, spread

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = (
    f"autoregressive={ROOT / 'benchmarks/twins/autoregressive'}",
    f"diffusion={ROOT / 'benchmarks/twins/diffusion'}",
    f"shipped={ROOT / 'fim_model/checkpoint'}",
)
DEFAULT_SUITES = ("humaneval-single", "humaneval-multi", "safim-block")


@dataclass(frozen=True)
class Row:
    """One request to one model."""

    model: str
    task_id: str
    suite: str
    completion: str
    exact: bool
    first_line: bool  # the first line of the completion is the reference's first line
    mode: str | None
    tokens: int
    forward_passes: int
    model_ms: float
    latency_ms: float
    raw: str | None = None  # the model's own output, no server context or post-processing
    raw_exact: bool | None = None
    raw_first_line: bool | None = None


def first_line(text: str) -> str:
    return normalise(text).split("\n", 1)[0].strip()


def position(document: str, offset: int) -> types.Position:
    """LSP position (UTF-16 columns) of a code-point offset."""
    before = document[:offset]
    line = before.count("\n")
    column = before[before.rfind("\n") + 1 :]
    return types.Position(line=line, character=len(column.encode("utf-16-le")) // 2)


class Server:
    """One fim-server process over stdio and its `fim/stats`."""

    def __init__(self, name: str, folder: Path, context_tokens: int) -> None:
        self.name, self.folder, self.context_tokens = name, folder, context_tokens
        self.client = LanguageClient("fim-bench-twins", "0.1")

        @self.client.feature(types.WINDOW_LOG_MESSAGE)
        def log_message(params: types.LogMessageParams) -> None:
            if params.type <= types.MessageType.Warning:
                print(f"{name}: {params.message}", file=sys.stderr)

        self.command = [
            sys.executable, "-m", "fim_server", "--stdio", "--cache-size", "0",
            "--model", str(folder),
        ]  # fmt: skip

    async def start(self, timeout: float) -> None:
        await self.client.start_io(*self.command)
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(
                    text_document=types.TextDocumentClientCapabilities(
                        inline_completion=types.InlineCompletionClientCapabilities()
                    )
                ),
                initialization_options={
                    "fim": {"minConfidence": 0, "contextTokens": self.context_tokens}
                },
            )
        )
        self.client.initialized(types.InitializedParams())
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.stats()
            if stats["modelReady"]:
                return
            if stats["modelError"] or time.monotonic() > deadline:
                raise SystemExit(f"{self.name}: the model did not load: {stats['modelError']}")
            await asyncio.sleep(0.1)

    async def stats(self) -> dict[str, Any]:
        return (await self.client.protocol.send_request_async("fim/stats", None))._asdict()

    async def complete(self, task: Task) -> Row:
        uri = f"file:///tmp/fim-twins/{self.name}/{uuid.uuid4().hex}.py"
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=task.document
                )
            )
        )
        before = await self.stats()
        started = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Invoked
                ),
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=position(task.document, task.offset),
            )
        )
        latency_ms = (time.perf_counter() - started) * 1000
        after = await self.stats()
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )
        if after["cacheHits"] != before["cacheHits"]:
            raise SystemExit(f"{self.name}: a request was answered from the cache")
        text = result.items[0].insert_text if result and result.items else ""
        assert isinstance(text, str)
        return Row(
            model=self.name,
            task_id=task.task_id,
            suite=task.suite,
            completion=text,
            exact=normalise(text) == normalise(task.reference),
            first_line=bool(first_line(task.reference))
            and first_line(text) == first_line(task.reference),
            mode=after["lastMode"],
            tokens=after["tokensGenerated"] - before["tokensGenerated"],
            forward_passes=after["forwardPasses"] - before["forwardPasses"],
            model_ms=after["modelMs"] - before["modelMs"],
            latency_ms=latency_ms,
        )

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()


class RawModel:
    """The model alone, in this process: what it writes before the server's post-processing."""

    def __init__(self, folder: Path, context_tokens: int) -> None:
        from fim_model import InfillModel

        self.model = InfillModel.load(folder)
        self.prefix_tokens = context_tokens * 3 // 4  # as ContextSettings.sized_for splits it
        self.suffix_tokens = context_tokens - self.prefix_tokens

    def _fit(self, lines: list[str], budget: int, keep_end: bool) -> str:
        """Whole lines nearest the cursor, within `budget` tokens."""
        kept: list[str] = []
        for line in reversed(lines) if keep_end else lines:
            if kept and self.model.count_tokens("\n".join([line, *kept])) > budget:
                break
            kept.insert(0, line) if keep_end else kept.append(line)
        return "\n".join(kept)

    def complete(self, task: Task, mode: str | None) -> str:
        prefix = self._fit(task.document[: task.offset].split("\n"), self.prefix_tokens, True)
        suffix = self._fit(task.document[task.offset :].split("\n"), self.suffix_tokens, False)
        block = mode not in ("single_line", "rest_of_line")
        return self.model.infill(
            prefix,
            suffix,
            max_tokens=defaults.BLOCK_TOKENS if block else defaults.LINE_TOKENS,
            single_line=not block,
        ).text


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def summarise(rows: list[Row]) -> dict[str, Any]:
    tokens = sum(r.tokens for r in rows)
    passes = sum(r.forward_passes for r in rows)
    model_s = sum(r.model_ms for r in rows) / 1000
    latencies = [r.latency_ms for r in rows]
    raw = [r for r in rows if r.raw_exact is not None]
    return {
        "requests": len(rows),
        "non_empty": sum(bool(r.completion) for r in rows),
        "exact": sum(r.exact for r in rows),
        "first_line": sum(r.first_line for r in rows),
        "raw_exact": sum(bool(r.raw_exact) for r in raw) if raw else None,
        "raw_first_line": sum(bool(r.raw_first_line) for r in raw) if raw else None,
        "tokens": tokens,
        "forward_passes": passes,
        "model_s": round(model_s, 3),
        "tokens_per_s": round(tokens / model_s, 1) if model_s else None,
        "passes_per_token": round(passes / tokens, 3) if tokens else None,
        "ms_per_pass": round(1000 * model_s / passes, 2) if passes else None,
        "latency_p50_ms": round(percentile(latencies, 0.5), 1),
        "latency_p95_ms": round(percentile(latencies, 0.95), 1),
        "latency_mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
    }


def table(summaries: dict[str, dict[str, Any]], suites: dict[str, dict[str, dict]]) -> str:
    n = next(iter(summaries.values()))["requests"]
    lines = [
        f"| model | tokens/s | passes/token | ms/pass | p50 ms | p95 ms | exact /{n} "
        f"| first line | raw exact | raw first line | non-empty |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summaries.items():
        lines.append(
            f"| {name} | {s['tokens_per_s']} | {s['passes_per_token']} | {s['ms_per_pass']} "
            f"| {s['latency_p50_ms']} | {s['latency_p95_ms']} | {s['exact']} "
            f"| {s['first_line']} | {s['raw_exact']} | {s['raw_first_line']} "
            f"| {s['non_empty']} |"
        )
    lines += ["", "| model | suite | exact | first line | raw exact | tokens/s | passes/token |"]
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for name, per_suite in suites.items():
        for suite, s in per_suite.items():
            lines.append(
                f"| {name} | {suite} | {s['exact']}/{s['requests']} | {s['first_line']} "
                f"| {s['raw_exact']} | {s['tokens_per_s']} | {s['passes_per_token']} |"
            )
    return "\n".join(lines) + "\n"


def ratios(summaries: dict[str, dict[str, Any]], a: str, b: str) -> dict[str, float | None]:
    """a / b of the figures the issue asks for."""
    if a not in summaries or b not in summaries:
        return {}

    def ratio(key: str) -> float | None:
        x, y = summaries[a][key], summaries[b][key]
        return round(x / y, 3) if x is not None and y else None

    keys = ("tokens_per_s", "passes_per_token", "ms_per_pass", "latency_p50_ms", "exact")
    return {key: ratio(key) for key in keys}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    models = dict(spec.split("=", 1) for spec in args.model)
    tasks: list[Task] = []
    per_suite = [spread(load_suite(args.benchmarks, s), args.n) for s in args.suites]
    for group in zip(*per_suite, strict=False):  # suites interleaved too
        tasks.extend(group)
    servers = [Server(name, Path(folder), args.context_tokens) for name, folder in models.items()]
    raw = (
        {name: RawModel(Path(folder), args.context_tokens) for name, folder in models.items()}
        if args.raw
        else {}
    )
    load_before = os.getloadavg()
    rows: list[Row] = []
    started = time.time()
    try:
        for server in servers:
            await server.start(args.timeout)
        for i, task in enumerate(tasks):
            order = servers[i % len(servers) :] + servers[: i % len(servers)]
            for server in order:
                row = await server.complete(task)
                if raw:
                    text = raw[server.name].complete(task, row.mode)
                    row = Row(
                        **{
                            **asdict(row),
                            "raw": text,
                            "raw_exact": normalise(text) == normalise(task.reference),
                            "raw_first_line": bool(first_line(task.reference))
                            and first_line(text) == first_line(task.reference),
                        }
                    )
                rows.append(row)
            if args.progress:
                print(f"{i + 1}/{len(tasks)} {task.task_id}", file=sys.stderr, flush=True)
    finally:
        for server in servers:
            await server.stop()
    summaries = {name: summarise([r for r in rows if r.model == name]) for name in models}
    suites = {
        name: {
            s: summarise([r for r in rows if r.model == name and r.suite == s]) for s in args.suites
        }
        for name in models
    }
    return {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "settings": {"minConfidence": 0, "contextTokens": args.context_tokens, "cacheSize": 0},
        "spans_per_suite": args.n,
        "suites": list(args.suites),
        "models": {name: _training(Path(folder)) for name, folder in models.items()},
        "summary": summaries,
        "per_suite": suites,
        "ratio_autoregressive_over_diffusion": ratios(summaries, "autoregressive", "diffusion"),
        "rows": [asdict(r) for r in rows],
    }


def _training(folder: Path) -> dict[str, Any]:
    info = json.loads((folder / "training.json").read_text())
    try:
        shown = folder.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        shown = str(folder)
    return {
        "folder": shown,
        "block_size": info["config"]["block_size"],
        "steps": info["steps"],
        "final_heldout_loss": info["final_heldout_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME=FOLDER",
        help="a model to run (repeatable; default: the twins and the shipped model)",
    )
    parser.add_argument("--n", type=int, default=30, help="spans per suite (default 30)")
    parser.add_argument("--suites", nargs="+", default=list(DEFAULT_SUITES))
    parser.add_argument("--benchmarks", type=Path, default=BENCHMARKS)
    parser.add_argument(
        "--context-tokens",
        type=int,
        default=349,
        help="every server's window (default 349: the shipped and diffusion models' own; "
        "the autoregressive twin was trained with 379)",
    )
    parser.add_argument("--raw", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--timeout", type=float, default=300, help="seconds to load a model")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--text", type=Path, help="write the tables as markdown")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()
    args.model = args.model or list(DEFAULT_MODELS)
    import torch

    torch.set_num_threads(defaults.THREADS)  # the raw runs, as the server runs the model
    result = asyncio.run(run(args))
    text = table(result["summary"], result["per_suite"])
    ratio = result["ratio_autoregressive_over_diffusion"]
    footer = (
        f"\n{result['date']}, {result['wall_s']} s, load average {result['load_average_before']}"
        f" -> {result['load_average_after']} on {result['cpus']} CPUs\n"
        f"autoregressive / diffusion: {json.dumps(ratio)}\n"
    )
    print(text + footer)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.text:
        args.text.parent.mkdir(parents=True, exist_ok=True)
        args.text.write_text(f"`{result['command']}`\n\n" + text + footer)


if __name__ == "__main__":
    main()
