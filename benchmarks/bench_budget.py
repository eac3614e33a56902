"""Quality against the context budget for a real model through fim-server: exact match
and edit similarity of `fim-server eval`'s tasks at each `contextTokens`, with the
prompt's size (characters sent) so that its cost can be read off a measured prompt speed.
Budgets alternate task by task, so machine load hits each alike; exact match does not
depend on load.

    .venv/bin/python benchmarks/bench_budget.py --model qwen2.5-coder-0.5b --limit 40
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import sys
import time
from pathlib import Path

from results_file import write_results

from fim_server.backends import BackendSpec, llama_server
from fim_server.config.settings import UserSettings
from fim_server.engine import Engine, EngineSettings
from fim_server.eval.tasks import BENCHMARKS, SUITES, load_suite, normalise, spread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--budgets", default="128,256,512,1024")
    parser.add_argument("--suite", action="append", choices=list(SUITES))
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--server-arg", action="append", default=[], help="extra llama-server argument"
    )
    args = parser.parse_args()
    if args.server_arg:
        command = llama_server.ManagedServer.command
        llama_server.ManagedServer.command = lambda self: command(self) + args.server_arg
    budgets = [int(b) for b in args.budgets.split(",")]
    suites = args.suite or ["humaneval-single", "safim-block"]
    # A long timeout: the figures are the model's answers, whatever the machine's load.
    spec = BackendSpec(model_path=args.model, timeout_ms=600_000)
    engine = Engine(EngineSettings(backend=spec, cache_size=0))
    engine.start_loading().result()
    if engine.load_error is not None:
        raise SystemExit(str(engine.load_error))
    backend = engine.backend
    rows: dict[str, dict[int, dict[str, list[float]]]] = {}
    try:
        for suite in suites:
            tally = {b: {"exact": [], "sim": [], "chars": [], "ms": []} for b in budgets}
            for i, task in enumerate(spread(load_suite(BENCHMARKS, suite), args.limit)):
                for budget in budgets[i % len(budgets) :] + budgets[: i % len(budgets)]:
                    engine.configure(UserSettings(min_confidence=0.0, context_tokens=budget))
                    started = time.perf_counter()
                    c = engine.complete_blocking(task.document, task.offset)
                    t = tally[budget]
                    t["ms"].append((time.perf_counter() - started) * 1000)
                    t["exact"].append(normalise(c.text) == normalise(task.reference))
                    t["sim"].append(
                        difflib.SequenceMatcher(
                            None, normalise(c.text), normalise(task.reference)
                        ).ratio()
                    )
                    sent = getattr(backend, "last_prompt_chars", 0)
                    t["chars"].append(sent)
                print(f"{suite} {i + 1}", file=sys.stderr, flush=True)
            rows[suite] = tally
    finally:
        engine.close()
    lines = ["| suite | contextTokens | exact | edit sim | prompt chars (mean) | p50 ms (loaded) |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    summary = {}
    for suite, tally in rows.items():
        for budget, t in tally.items():
            n = len(t["exact"])
            summary[f"{suite}/{budget}"] = {
                "tasks": n, "exact": sum(t["exact"]), "sim": statistics.mean(t["sim"]),
                "chars": statistics.mean(t["chars"]), "p50_ms": statistics.median(t["ms"]),
            }  # fmt: skip
            s = summary[f"{suite}/{budget}"]
            lines.append(
                f"| {suite} | {budget} | {s['exact']}/{n} | {s['sim']:.2f} | {s['chars']:.0f} | "
                f"{s['p50_ms']:.0f} |"
            )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        write_results(
            args.out,
            summary,
            table,
            "The latency column is not comparable between budgets: they alternate on one "
            "server, whose prompt cache serves a task's later budgets from its earlier ones, "
            "and the machine was loaded by other work.",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
