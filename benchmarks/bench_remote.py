"""Latency of fim-server with a remote backend, as an editor sees it, and where it goes.

Starts the real LSP server over stdio with `--backend ... --endpoint ...` and, at the
positions benchmarks/bench_lsp.py uses (a statement cut after its `=`, a function body
removed), measures three requests a user makes:

- cold: the first request at a position (context, one HTTP request, post-processing);
- cached: the same request again (answered from the completion cache);
- typing-through: the user types the first character of the shown completion.

For cold requests the time is split using the server's own debug log (one `remote
timing:` line per HTTP request): the inference server's own time (llama.cpp reports it
in `timings`), the network and HTTP around it, and what fim-server adds (context,
post-processing, JSON-RPC). The debounce is set to 0 so that it does not hide in the
figures.

    .venv/bin/python benchmarks/bench_remote.py --backend openai --endpoint http://127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_lsp import _edit, _position, find_tasks, percentile, stats
from lsprotocol import types
from pygls.lsp.client import LanguageClient

TIMING = re.compile(r"remote timing: wall_ms=([\d.]+) first_byte_ms=([\d.]+) server_ms=([\d.-]+)")


@dataclass
class Samples:
    cold: list[float] = field(default_factory=list)
    cached: list[float] = field(default_factory=list)
    typed: list[float] = field(default_factory=list)
    # (client ms, backend ms from fim/stats, the server's own ms from the log or None) of
    # the cold requests that reached the server
    remote: list[tuple[float, float, float | None]] = field(default_factory=list)
    log: Path | None = None  # the LSP server's stderr
    non_empty: int = 0


def params(uri: str, position: types.Position) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic
        ),
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=position,
    )


async def ask(client: LanguageClient, uri: str, position: types.Position) -> tuple[float, str]:
    started = time.perf_counter()
    result = await client.text_document_inline_completion_async(params(uri, position))
    ms = (time.perf_counter() - started) * 1000
    text = result.items[0].insert_text if result and result.items else ""
    return ms, text if isinstance(text, str) else ""


async def run_file(client: LanguageClient, path: Path, limit: int, samples: Samples) -> None:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    uri = path.resolve().as_uri()
    item = types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))
    version = 1
    for task in find_tasks(text, limit):
        start, end = _position(lines, *task.start), _position(lines, *task.end)
        version += 1
        client.text_document_did_change(_edit(uri, version, start, end, ""))
        model_ms = (await stats(client))["modelMs"]
        mark = samples.log.stat().st_size if samples.log else 0
        cold_ms, completion = await ask(client, uri, start)
        samples.cold.append(cold_ms)
        backend_ms = (await stats(client))["modelMs"] - model_ms
        if backend_ms > 0:
            server_ms = None
            if samples.log:
                with samples.log.open() as log:
                    log.seek(mark)
                    found = TIMING.findall(log.read())
                if len(found) == 1 and found[0][2] != "-":
                    server_ms = float(found[0][2])
            samples.remote.append((cold_ms, backend_ms, server_ms))
        samples.cached.append((await ask(client, uri, start))[0])
        if completion and not completion[0].isspace():
            samples.non_empty += 1
            version += 1
            client.text_document_did_change(_edit(uri, version, start, start, completion[0]))
            after = types.Position(line=start.line, character=start.character + 1)
            samples.typed.append((await ask(client, uri, after))[0])
            version += 1
            client.text_document_did_change(_edit(uri, version, start, after, ""))
        version += 1
        client.text_document_did_change(_edit(uri, version, start, start, task.removed))
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"  {name:<34} n=0"
    return (
        f"  {name:<34} n={len(values):<4} p50={percentile(values, 0.5):8.1f}"
        f"  p95={percentile(values, 0.95):8.1f}  mean={statistics.fmean(values):8.1f}"
    )


def report(samples: Samples, before: dict[str, Any], after: dict[str, Any]) -> None:
    print(f"backend: {after['backendDescription']}")
    print(
        f"requests: {len(samples.cold)} cold ({samples.non_empty} non-empty, "
        f"{len(samples.remote)} reached the server), "
        f"cache hits: {after['cacheHits'] - before['cacheHits']}, "
        f"errors: {after['errors'] - before['errors']}"
    )
    print("latency, client side (ms):")
    print(line("cold (context + HTTP + cleanup)", samples.cold))
    print(line("cached (same request again)", samples.cached))
    print(line("typing-through (one char typed)", samples.typed))
    print("where the time of a cold request that reached the server goes (ms):")
    print(line("client side, in all", [c for c, _, _ in samples.remote]))
    print(line("the backend call (HTTP, streamed)", [b for _, b, _ in samples.remote]))
    timed = [(b, s) for _, b, s in samples.remote if s is not None]
    if timed:
        print(line("  the inference server's own time", [s for _, s in timed]))
        print(line("  network, HTTP and streaming", [b - s for b, s in timed]))
    print(line("fim-server (context, cleanup, LSP)", [c - b for c, b, _ in samples.remote]))


async def main_async(args: argparse.Namespace) -> None:
    files = sorted(Path(args.examples).glob("*.py"))
    if not files:
        raise SystemExit(f"no .py files in {args.examples}")
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    server = [
        sys.executable, "-m", "fim_server", "--stdio", "--log-level", "DEBUG",
        "--backend", args.backend, "--endpoint", args.endpoint,
    ]  # fmt: skip
    if args.remote_model:
        server += ["--remote-model", args.remote_model]
    command = f"exec {shlex.join(server)} 2>{shlex.quote(log.name)}"
    client = LanguageClient("fim-bench-remote", "0.1")
    await client.start_io("sh", "-c", command)
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                )
            ),
            initialization_options={"fim": {"debounceMs": 0, "crossFile": False}},
        )
    )
    client.initialized(types.InitializedParams())
    samples = Samples(log=Path(log.name))
    try:
        deadline = time.monotonic() + 60
        while not (before := await stats(client))["modelReady"]:
            if before["modelError"] or time.monotonic() > deadline:
                raise SystemExit(f"the backend did not load: {before['modelError']}")
            await asyncio.sleep(0.05)
        # One request to open the pooled connection and warm the server's prompt cache,
        # as a session's first keystroke does; not counted.
        warm = Path(tempfile.gettempdir()) / "fim-bench-remote-warmup.py"
        warm.write_text("def warm_up(a, b):\n    return a\n", encoding="utf-8")
        await run_file(client, warm, 1, Samples())
        before = await stats(client)
        for path in files:
            await run_file(client, path, args.n, samples)
        after = await stats(client)
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    report(samples, before, after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", required=True, choices=["mercury", "openai", "llama.cpp"])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--remote-model")
    parser.add_argument("--n", type=int, default=10, help="positions per file (default 10)")
    parser.add_argument("--examples", default=str(Path(__file__).resolve().parents[1] / "examples"))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
