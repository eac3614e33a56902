"""The embedded model over LSP, in one run: every speed figure the README gives.

Starts the real server (`python -m fim_server --stdio`, its defaults: cache on, adaptive
debounce, the confidence gate) and, as an editor would, measures:

- cold single-line completions: end-to-end latency p50/p95 of inline completions with
  triggerKind Invoked (no debounce), each on its own freshly opened document, so every
  one misses the cache (checked with fim/stats); the position's mode is the server's own
  choice (fim/stats lastMode): rest of line or single line go here. Next to it the
  server's own time (fim/stats lastLatencyMs) and the model's (modelMs);
- cold multi-line completions: the same at positions where the server picks a block
  (budget blockTokens, 64 by default);
- a replayed typing session (benchmarks/typing_replay.py's: held-out files of this
  machine, retyped character by character with automatic triggers, so the server's
  adaptive debounce applies): latency p50/p95 and the cache hit rate;
- the server process's memory: VmRSS after the model load, and at the end VmHWM (peak)
  and VmRSS, from /proc/<pid>/status; and its CPU time per request in each phase (the
  figure to read when other processes share the machine);

then, in this process with the same checkpoint and torch threads (benchmarks/
bench_speed.py's measurements):

- one forward pass over a cached block of 16, next to plain matmuls of the same FLOPs
  timed in the same loop, and the operators that take a pass's time (profile);
- forward passes per generated token over the `bench_lsp` positions and an even spread of
  every evaluation suite, and the distribution of tokens committed per pass.

Cold positions come from examples/*.py (benchmarks/bench_lsp.py's: a statement cut after
its `=`, `return` or `(`, a function body removed) and then the evaluation suites'
documents, until --n of each kind are measured. Three requests warm the server up first
(not counted). Prints the load average at the start and the end: on a busy machine the
wall-clock figures measure the wait for a core.

    .venv/bin/python benchmarks/bench_embedded.py --out results/speed/embedded.json
    .venv/bin/python benchmarks/bench_embedded.py --quick      # smoke run, ~1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bench_lsp  # the scripts next to this one (on sys.path when it runs)
import bench_speed
import torch
import typing_replay
from lsprotocol import types
from pygls.lsp.client import LanguageClient

import fim_model
from fim_model.sources import default_roots
from fim_server.config import defaults
from fim_server.eval.tasks import BENCHMARKS, load_suite, spread

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SERVER = f"{shlex.quote(sys.executable)} -m fim_server --stdio"
# Issue 14's targets, without debounce on an idle machine.
TARGET_SINGLE_P50_MS = 30.0
TARGET_MULTI_P50_MS = 120.0
SINGLE_MODES = ("rest_of_line", "single_line")
MULTI_MODES = ("multi_line",)
WARM_UP = 3
# Suites whose documents supply cold positions once examples/ runs out, in this order.
COLD_SUITES = (
    "humaneval-single",
    "humaneval-multi",
    "safim-api",
    "safim-block",
    "safim-control",
    "humaneval-random",
)


@dataclass
class Cold:
    """One cold inline completion."""

    source: str
    mode: str
    client_ms: float  # request sent -> answer received
    server_ms: float  # the engine's own time (fim/stats lastLatencyMs)
    model_ms: float  # of which the model ran
    tokens: int
    passes: int
    cached: bool
    shown: bool  # non-empty answer (the confidence gate may hide one)


@dataclass
class ServerProcess:
    pid: int
    clock_ticks: int = field(default_factory=lambda: os.sysconf("SC_CLK_TCK"))

    def status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def cpu_ms(self) -> float:
        """User + system CPU time of the whole process (every thread)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / self.clock_ticks


# -- positions ------------------------------------------------------------------------


def cold_pool(quick: bool) -> list[tuple[str, str, int]]:
    """(source, document, offset): examples/ first, then the suites round-robin."""
    pool = [("examples", doc, off) for doc, off in bench_speed.lsp_positions(ROOT / "examples", 20)]
    per_suite = 10 if quick else 80
    suites = [spread(load_suite(BENCHMARKS, s), per_suite) for s in COLD_SUITES]
    for i in range(per_suite):
        for name, tasks in zip(COLD_SUITES, suites, strict=True):
            if i < len(tasks):
                pool.append((name, tasks[i].document, tasks[i].offset))
    return pool


def lsp_position(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return types.Position(line=line, character=bench_lsp.utf16(text[start:], offset - start))


# -- the LSP phases -------------------------------------------------------------------


stats = bench_lsp.stats


async def cold_request(
    client: LanguageClient, uri: str, text: str, offset: int
) -> tuple[dict[str, Any], dict[str, Any], float, bool]:
    """fim/stats before and after, the client-side latency, and whether it answered."""
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=text
            )
        )
    )
    before = await stats(client)  # also: the open is processed before the clock starts
    started = time.perf_counter()
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=lsp_position(text, offset),
        )
    )
    client_ms = (time.perf_counter() - started) * 1000
    after = await stats(client)
    client.text_document_did_close(
        types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
    )
    return before, after, client_ms, bool(result and result.items)


async def run_cold(client: LanguageClient, pool: list, n: int, server: ServerProcess) -> dict:
    for i in range(WARM_UP):
        _, text, offset = pool[i % len(pool)]
        await cold_request(client, f"file:///bench-embedded/warm-up-{i}.py", text, offset)
    runs: list[Cold] = []
    singles = multis = skipped = 0
    cpu = {"single": 0.0, "multi": 0.0}
    for i, (source, text, offset) in enumerate(pool):
        if singles >= n and multis >= n:
            break
        cpu_before = server.cpu_ms()
        before, after, client_ms, shown = await cold_request(
            client, f"file:///bench-embedded/{i}-{source}.py", text, offset
        )
        mode = after["lastMode"]
        kind = "single" if mode in SINGLE_MODES else "multi" if mode in MULTI_MODES else None
        ran = after["modelRuns"] - before["modelRuns"]
        cached = after["cacheHits"] > before["cacheHits"]
        if kind is None or (not ran and not cached):
            skipped += 1  # no completion offered here (mode none)
            continue
        if (kind == "single" and singles >= n) or (kind == "multi" and multis >= n):
            continue
        cpu[kind] += server.cpu_ms() - cpu_before
        singles += kind == "single"
        multis += kind == "multi"
        runs.append(
            Cold(
                source=source,
                mode=mode,
                client_ms=client_ms,
                server_ms=after["lastLatencyMs"],
                model_ms=after["modelMs"] - before["modelMs"],
                tokens=after["tokensGenerated"] - before["tokensGenerated"],
                passes=after["forwardPasses"] - before["forwardPasses"],
                cached=cached,
                shown=shown,
            )
        )
    return {
        # The budgets are the server's defaults (--setting may change others, not these).
        "single": summarise_cold(
            [r for r in runs if r.mode in SINGLE_MODES], cpu["single"], defaults.LINE_TOKENS
        ),
        "multi": summarise_cold(
            [r for r in runs if r.mode in MULTI_MODES], cpu["multi"], defaults.BLOCK_TOKENS
        ),
        "positions_without_completion": skipped,
        "requests": [asdict(r) for r in runs],
    }


def summarise_cold(runs: list[Cold], server_cpu_ms: float, budget: int) -> dict:
    if not runs:
        return {"n": 0}
    p = typing_replay.percentile
    client = [r.client_ms for r in runs]
    server = [r.server_ms for r in runs]
    tokens = sum(r.tokens for r in runs)
    passes = sum(r.passes for r in runs)
    model_ms = sum(r.model_ms for r in runs)
    full = [r for r in runs if r.tokens >= budget]
    modes: dict[str, int] = {}
    for r in runs:
        modes[r.mode] = modes.get(r.mode, 0) + 1
    return {
        "n": len(runs),
        "modes": modes,
        "cache_hits": sum(r.cached for r in runs),  # 0: every one was cold
        "shown": sum(r.shown for r in runs),
        "p50_ms": round(p(client, 0.5), 1),
        "p95_ms": round(p(client, 0.95), 1),
        "mean_ms": round(statistics.fmean(client), 1),
        "server_p50_ms": round(p(server, 0.5), 1),
        "server_p95_ms": round(p(server, 0.95), 1),
        "model_p50_ms": round(p([r.model_ms for r in runs], 0.5), 1),
        "server_cpu_ms_per_request": round(server_cpu_ms / len(runs), 1),
        "outside_model_p50_ms": round(p([r.client_ms - r.model_ms for r in runs], 0.5), 1),
        "tokens_p50": p([r.tokens for r in runs], 0.5),
        "tokens_mean": round(tokens / len(runs), 1),
        "tokens_max": max(r.tokens for r in runs),
        "at_budget": len(full),  # stopped by the token budget
        # Those alone: a full budget's latency (64 tokens for a block by default).
        "at_budget_p50_ms": round(p([r.client_ms for r in full], 0.5), 1) if full else None,
        "passes_p50": p([r.passes for r in runs], 0.5),
        "passes_mean": round(passes / len(runs), 1),
        "passes_per_token": round(passes / tokens, 3) if tokens else None,
        "model_ms_per_pass": round(model_ms / passes, 2) if passes else None,
    }


async def run_typing(
    client: LanguageClient,
    files: list,
    rows: dict,
    command: str,
    server: ServerProcess,
    write_through: bool = False,
) -> dict:
    if not files:
        return {"keystrokes": 0}
    before = await stats(client)
    # The server's own gate, read back: --setting minConfidence=... shows here too.
    replay = typing_replay.Replay(gate=before["minConfidence"], server=command)
    cpu_before = server.cpu_ms()
    typed = 0
    for file in files:
        lines = file.text.split("\n")
        typed += sum(len(lines[r].strip()) for r in rows[file.path])
        replay.files.setdefault(file.language, []).append(file.path)
        await typing_replay.replay_file(client, file, rows[file.path], replay, write_through)
    after = await stats(client)
    summary = typing_replay.summarise(replay.keystrokes, typed)
    keep = (
        "keystrokes",
        "latency_p50_ms",
        "latency_p95_ms",
        "cache_hit_rate",
        "model_runs_per_keystroke",
        "shown",
        "accepted",
        "chars_saved",
    )
    out = {k: summary[k] for k in keep}
    out["latency_p50_ms"] = round(out["latency_p50_ms"], 1)
    out["latency_p95_ms"] = round(out["latency_p95_ms"], 1)
    requests = after["requests"] - before["requests"]
    out["server_requests"] = requests
    out["server_cache_hits"] = after["cacheHits"] - before["cacheHits"]
    out["server_cache_hit_rate"] = round(out["server_cache_hits"] / max(requests, 1), 3)
    out["superseded"] = after["superseded"] - before["superseded"]
    out["speculative"] = after["speculative"] - before["speculative"]
    out["server_cpu_ms_per_keystroke"] = round(
        (server.cpu_ms() - cpu_before) / max(len(replay.keystrokes), 1), 1
    )
    out["files"] = replay.files
    # Each keystroke, for reading the tail: where, how long, whether the model ran.
    out["events"] = [
        {
            "path": k.path,
            "row": k.row,
            "column": k.column,
            "ms": round(k.latency_ms, 1),
            "model_runs": k.model_runs,
            "cached": k.cached,
            "suggestion": k.suggestion,
        }
        for k in replay.keystrokes
    ]
    return out


def setting(text: str) -> tuple[str, Any]:
    """`blockMs=800` -> ("blockMs", 800): a setting for --setting, its value as JSON."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=JSON, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{key}: {value!r} is not JSON") from None


async def lsp_phases(args: argparse.Namespace, files: list, rows: dict) -> dict:
    command = shlex.split(args.server_cmd)
    client = LanguageClient("fim-bench-embedded", "0.1")
    launched = time.perf_counter()
    await client.start_io(command[0], *command[1:])
    assert client._server is not None
    server = ServerProcess(client._server.pid)
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                )
            ),
            initialization_options={"fim": dict(args.setting)} if args.setting else None,
        )
    )
    client.initialized(types.InitializedParams())
    out: dict[str, Any] = {}
    try:
        await bench_lsp.wait_for_model(client, args.timeout)
        ready = await stats(client)
        out["backend"] = ready["backendDescription"]
        out["load_ms"] = round(ready["loadMs"])
        out["start_to_ready_ms"] = round((time.perf_counter() - launched) * 1000)
        # What a user waits for after opening the editor: the first ghost text.
        example = (ROOT / "examples" / "inventory.py").read_text()
        offset = sum(len(line) + 1 for line in example.split("\n")[:24]) + 8  # 25:9
        _, _, first_ms, shown = await cold_request(
            client, "file:///bench-embedded/first.py", example, offset
        )
        out["first_completion"] = {
            "client_ms": round(first_ms),
            "start_to_first_completion_ms": round((time.perf_counter() - launched) * 1000),
            "shown": shown,
        }
        rss_loaded = server.status_kb("VmRSS")
        print("cold completions ...", file=sys.stderr)
        out["cold"] = await run_cold(client, cold_pool(args.quick), args.n, server)
        print("typing replay ...", file=sys.stderr)
        out["typing"] = await run_typing(
            client, files, rows, args.server_cmd, server, args.write_through
        )
        out["rss"] = {
            "after_load_mb": round(rss_loaded / 1024, 1),
            "peak_mb": round(server.status_kb("VmHWM") / 1024, 1),
            "end_mb": round(server.status_kb("VmRSS") / 1024, 1),
        }
        after = await stats(client)
        out["server_passes_per_token"] = (
            round(after["forwardPasses"] / after["tokensGenerated"], 3)
            if after["tokensGenerated"]
            else None
        )
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    return out


# -- the in-process phase -------------------------------------------------------------


def model_phase(args: argparse.Namespace, threads: int) -> dict:
    torch.set_num_threads(threads)
    model = fim_model.InfillModel.load()
    print("passes and profile ...", file=sys.stderr)
    requests = bench_speed.collect_requests(model, args.per_suite)
    context = bench_speed._block_context(model, requests)
    variant = bench_speed.current_variant(model, context)
    cfg = model.model.cfg
    flops = bench_speed.pass_flops(cfg, len(context) + cfg.block_size)
    plain = bench_speed.time_passes([variant], flops, model, args.reps)
    ops = bench_speed.top_ops(variant, reps=max(args.reps // 10, 5))
    bench_speed.run_requests([variant], requests)
    s = bench_speed.summary([variant], requests, plain, flops)
    v = s["variants"][variant.name]
    return {
        "torch_threads": torch.get_num_threads(),
        "pass_flops": flops,
        "block_context_tokens": len(context),
        "pass_wall_p50_ms": v["pass_wall_p50_ms"],
        "pass_cpu_p50_ms": v["pass_cpu_p50_ms"],
        "plain_matmuls": plain,
        "ratio_to_block_shaped_matmul_cpu": v["ratio_to_block_shaped_matmul_cpu"],
        "ratio_to_square_matmul_cpu": v["ratio_to_square_matmul_cpu"],
        "ratio_to_own_matmuls_cpu": v["ratio_to_own_matmuls_cpu"],
        "top_ops": ops,
        "requests": len(requests),
        "passes_per_token": v["suites"],
        "tokens_per_pass": v["tokens_per_pass"],
    }


# -- report ---------------------------------------------------------------------------


def targets(cold: dict) -> dict:
    """Issue 14's targets against the cold p50s, and what meeting them would take: the
    time outside the model stays, so the passes share what is left of the target."""
    out = {}
    for kind, target in (("single", TARGET_SINGLE_P50_MS), ("multi", TARGET_MULTI_P50_MS)):
        c = cold[kind]
        if not c["n"] or not c["passes_p50"]:
            out[kind] = {"target_ms": target, "measured_p50_ms": None, "met": None}
            continue
        outside = c["outside_model_p50_ms"]
        per_pass = c["model_ms_per_pass"]
        out[kind] = {
            "target_ms": target,
            "measured_p50_ms": c["p50_ms"],
            "met": c["p50_ms"] <= target,
            "passes_p50": c["passes_p50"],
            "model_ms_per_pass": per_pass,
            "outside_model_ms": outside,
            "pass_ms_needed": round(max(target - outside, 0.0) / c["passes_p50"], 2),
            "passes_needed_at_this_pass_time": round(max(target - outside, 0.0) / per_pass, 1),
        }
    return out


def server_threads(command: str) -> int:
    words = shlex.split(command)
    if "--threads" in words[:-1]:
        return int(words[words.index("--threads") + 1]) or torch.get_num_threads()
    return defaults.THREADS


def print_report(r: dict) -> None:
    m = r["machine"]
    print(
        f"commit {m['commit']}; {m['cpus']} CPUs; load average (1 min) {m['load_start']} at "
        f"the start, {m['load_end']} at the end; torch threads: server {m['server_threads']}"
        + (f", pass timing {r['pass']['torch_threads']}" if r["pass"] else "")
    )
    print(f"server: {r['server_cmd']}\nbackend: {r['backend']} (loaded in {r['load_ms']} ms)")
    for kind, target in (("single", TARGET_SINGLE_P50_MS), ("multi", TARGET_MULTI_P50_MS)):
        c = r["cold"][kind]
        if not c["n"]:
            print(f"cold {kind}-line: no positions")
            continue
        verdict = "meets" if c["p50_ms"] <= target else "misses"
        print(
            f"cold {kind}-line (Invoked, cache misses {c['n'] - c['cache_hits']}/{c['n']}): "
            f"p50 {c['p50_ms']:.1f} ms, p95 {c['p95_ms']:.1f} ms ({verdict} p50 <= "
            f"{target:.0f} ms)\n"
            f"    server p50 {c['server_p50_ms']:.1f} / p95 {c['server_p95_ms']:.1f} ms, model "
            f"p50 {c['model_p50_ms']:.1f} ms, server CPU {c['server_cpu_ms_per_request']:.1f} "
            f"ms/request; tokens p50 {c['tokens_p50']} (mean {c['tokens_mean']}, "
            f"{c['at_budget']} at the budget: p50 {c['at_budget_p50_ms']} ms), passes p50 "
            f"{c['passes_p50']} (mean "
            f"{c['passes_mean']}), {c['passes_per_token']} passes/token, "
            f"{c['model_ms_per_pass']} ms/pass; modes {c['modes']}; shown {c['shown']}"
        )
    t = r["typing"]
    if not t["keystrokes"]:
        print("typing replay: no held-out files of these languages on this machine")
    else:
        print_typing(t)
    f = r["first_completion"]
    print(
        f"start to ready {r['start_to_ready_ms']} ms; the first completion (inventory.py:25:9) "
        f"{f['client_ms']} ms, {f['start_to_first_completion_ms']} ms from the start, "
        f"shown: {f['shown']!r}"
    )
    if r["pass"] is not None:
        print_pass(r)
    print_targets(r)


def print_typing(t: dict) -> None:
    print(
        f"typing replay ({t['keystrokes']} keystrokes, lines {t.get('rows', 'anywhere')}, "
        "automatic triggers, adaptive debounce): "
        f"p50 {t['latency_p50_ms']:.1f} ms, p95 {t['latency_p95_ms']:.1f} ms; cache hit rate "
        f"{100 * t['cache_hit_rate']:.1f}% (server: {t['server_cache_hits']}/"
        f"{t['server_requests']} requests); model runs/keystroke "
        f"{t['model_runs_per_keystroke']:.2f}; server CPU {t['server_cpu_ms_per_keystroke']} "
        f"ms/keystroke"
    )


def print_pass(r: dict) -> None:
    p = r["pass"]
    shaped = next(v for k, v in p["plain_matmuls"].items() if k.startswith("block"))
    print(
        f"one pass (cached block of 16, {p['block_context_tokens']} context tokens, "
        f"{p['pass_flops'] / 1e6:.1f} MFLOP): CPU p50 {p['pass_cpu_p50_ms']:.2f} ms, wall "
        f"{p['pass_wall_p50_ms']:.2f} ms; x{p['ratio_to_block_shaped_matmul_cpu']} a "
        f"block-shaped matmul of the same FLOPs ({shaped['cpu_p50_ms']:.2f} ms), "
        f"x{p['ratio_to_square_matmul_cpu']} a square one, "
        f"x{p['ratio_to_own_matmuls_cpu']} its own weight matmuls"
    )
    print("  profile, by self CPU time per pass:")
    for op in p["top_ops"]:
        print(
            f"    {op['op'][:36]:36s} {op['calls_per_pass']:6.1f} calls "
            f"{op['self_cpu_us_per_pass']:8.1f} us  {100 * op['share']:4.1f}%"
        )
    cells = "  ".join(f"{s}: {row['passes_per_token']}" for s, row in p["passes_per_token"].items())
    print(f"passes per generated token ({p['requests']} requests in process): {cells}")
    cells = "  ".join(
        f"{s}: {row.get('passes_per_token_with_eom')}" for s, row in p["passes_per_token"].items()
    )
    print(f"  the same, <eom> counted as a token the model writes: {cells}")
    print(f"  over the LSP run (fim/stats): {r['server_passes_per_token']}")
    hist = p["tokens_per_pass"] or {}
    total = sum(hist.values()) or 1
    cells = "  ".join(f"{k}: {100 * n / total:.1f}%" for k, n in hist.items())
    print(f"  tokens committed per pass: {cells}")


def print_targets(r: dict) -> None:
    for kind, goal in r["targets"].items():
        if goal["measured_p50_ms"] is None:
            continue
        print(
            f"target {kind}-line p50 <= {goal['target_ms']:.0f} ms: "
            f"{'met' if goal['met'] else 'not met'} ({goal['measured_p50_ms']:.1f} ms); "
            f"p50 {goal['passes_p50']} passes at {goal['model_ms_per_pass']} ms each in the "
            f"server, {goal['outside_model_ms']:.1f} ms outside the model: meeting it with "
            f"these passes takes {goal['pass_ms_needed']} ms/pass, or "
            f"{goal['passes_needed_at_this_pass_time']} passes at this pass time"
        )
    rss = r["rss"]
    print(
        f"server RSS: {rss['after_load_mb']} MB after the load; peak (VmHWM) "
        f"{rss['peak_mb']} MB, at the end {rss['end_mb']} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few of everything")
    parser.add_argument("--n", type=int, help="cold positions of each kind (60; quick 6)")
    parser.add_argument("--languages", help="typing replay languages (python,java,c,cpp)")
    parser.add_argument("--files", type=int, help="typing replay files per language (1)")
    parser.add_argument("--lines", type=int, help="typing replay lines per file (4; quick 2)")
    parser.add_argument("--seed", type=int, default=0, help="typing replay seed (0)")
    parser.add_argument(
        "--consecutive",
        action="store_true",
        help="typing replay: a run of consecutive lines of each file, not lines anywhere",
    )
    parser.add_argument(
        "--write-through",
        action="store_true",
        help="typing replay: write a run of consecutive lines as new code (implies "
        "--consecutive; see benchmarks/typing_replay.py)",
    )
    parser.add_argument("--per-suite", type=int, help="passes/token: tasks per suite (30)")
    parser.add_argument("--reps", type=int, help="timed passes (200; quick 20)")
    parser.add_argument("--server-cmd", default=DEFAULT_SERVER)
    parser.add_argument(
        "--lsp-only",
        action="store_true",
        help="only the figures over LSP (any backend: --server-cmd '... --model NAME')",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the model")
    parser.add_argument(
        "--setting",
        action="append",
        type=setting,
        metavar="KEY=JSON",
        help="a setting sent in initializationOptions, e.g. blockMs=800 (repeatable; "
        "without it the server's defaults)",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    quick = args.quick
    args.n = args.n or (6 if quick else 60)
    args.languages = args.languages or ("python" if quick else "python,java,c,cpp")
    args.files = args.files or 1
    args.lines = args.lines or (2 if quick else 4)
    args.per_suite = args.per_suite or (2 if quick else 30)
    args.reps = args.reps or (20 if quick else 200)

    load_start = os.getloadavg()[0]
    roots = default_roots()
    files = []
    for language in args.languages.split(","):
        found = typing_replay.held_out_files(language, args.files, args.lines, args.seed, roots)
        if not found:
            print(f"no held-out {language} files on this machine; skipped", file=sys.stderr)
        files += found
    args.consecutive = args.consecutive or args.write_through
    rows = {
        f.path: typing_replay.chosen_rows(f, args.lines, args.seed, args.consecutive) for f in files
    }

    report: dict[str, Any] = {"server_cmd": args.server_cmd}
    report.update(asyncio.run(lsp_phases(args, files, rows)))
    if report.get("typing", {}).get("keystrokes"):
        report["typing"]["rows"] = (
            "written through"
            if args.write_through
            else "consecutive"
            if args.consecutive
            else "anywhere"
        )
    threads = server_threads(args.server_cmd)
    report["pass"] = None if args.lsp_only else model_phase(args, threads)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    report["machine"] = {
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_start": round(load_start, 2),
        "load_end": round(os.getloadavg()[0], 2),
        "server_threads": threads,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
    }
    report["targets"] = {} if args.lsp_only else targets(report["cold"])
    if args.out:  # first: a figure measured is kept even if printing it fails
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print_report(report)


if __name__ == "__main__":
    main()
