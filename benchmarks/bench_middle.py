"""Quality against the llama.cpp layout's `middle_lines` for a real model through
fim-server: exact match, empty answers and edit similarity of `fim-server eval`'s tasks
when the lines since the last row that is a multiple of N go after the FIM middle token
as the middle written so far (context/window.py). N = 1 is the cursor's line alone, the
layout before it. The values alternate task by task on one model server; exact match
does not depend on load (greedy decoding: a value's answers are the same in any order).

    .venv/bin/python benchmarks/bench_middle.py --model qwen2.5-coder-0.5b --values 1,8,16
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import sys
import time
from pathlib import Path

from results_file import write_results

from fim_server.backends import BackendSpec
from fim_server.config.settings import UserSettings
from fim_server.engine import Engine, EngineSettings
from fim_server.eval.tasks import BENCHMARKS, SUITES, load_suite, normalise, spread

DEFAULT_SUITES = {
    "humaneval-single": 40,
    "humaneval-multi": 20,
    "humaneval-random": 20,
    "safim-block": 20,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--values", default="1,8", help="middle_lines values (1,8)")
    parser.add_argument(
        "--suite",
        action="append",
        choices=list(SUITES),
        help="suites (default: HumanEval single 40, multi 20, random 20, SAFIM block 20)",
    )
    parser.add_argument("--limit", type=int, help="tasks per suite (overrides the defaults)")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = parser.parse_args()
    values = [int(v) for v in args.values.split(",")]
    suites = {s: args.limit or DEFAULT_SUITES.get(s, 20) for s in args.suite or DEFAULT_SUITES}
    # A long timeout: the figures are the model's answers, whatever the machine's load.
    spec = BackendSpec(model_path=args.model, timeout_ms=600_000)
    engine = Engine(EngineSettings(backend=spec, cache_size=0))
    engine.configure(UserSettings(min_confidence=0.0))
    engine.start_loading().result()
    backend = engine.backend
    if engine.load_error is not None or backend is None:
        raise SystemExit(str(engine.load_error))
    answers: list[dict] = []
    started = time.monotonic()
    try:
        for suite, limit in suites.items():
            for i, task in enumerate(spread(load_suite(BENCHMARKS, suite), limit)):
                for n in values[i % len(values) :] + values[: i % len(values)]:
                    backend.middle_lines = n  # what the engine reads at each request
                    t0 = time.perf_counter()
                    text = engine.complete_blocking(task.document, task.offset).text
                    answers.append(
                        {
                            "suite": suite,
                            "task": i,
                            "middle_lines": n,
                            "text": text,
                            "exact": normalise(text) == normalise(task.reference),
                            "empty": not text.strip(),
                            "similarity": difflib.SequenceMatcher(
                                None, normalise(text), normalise(task.reference)
                            ).ratio(),
                            "ms": (time.perf_counter() - t0) * 1000,
                        }
                    )
                print(
                    f"{suite} {i + 1}/{limit} {time.monotonic() - started:.0f}s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        engine.close()
    table = [
        "| suite | middle_lines | exact | empty | edit sim | p50 ms (loaded) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    summary = {}
    for suite in suites:
        for n in values:
            mine = [a for a in answers if a["suite"] == suite and a["middle_lines"] == n]
            row = {
                "tasks": len(mine),
                "exact": sum(a["exact"] for a in mine),
                "empty": sum(a["empty"] for a in mine),
                "edit_similarity": statistics.mean(a["similarity"] for a in mine),
                "p50_ms": statistics.median(a["ms"] for a in mine),
            }
            summary[f"{suite} | {n}"] = row
            table.append(
                f"| {suite} | {n} | {row['exact']}/{row['tasks']} | {row['empty']} | "
                f"{row['edit_similarity']:.3f} | {row['p50_ms']:.0f} |"
            )
    markdown = "\n".join(table) + "\n"
    print(markdown)
    if args.out:
        meta = {"model": args.model, "values": values, "summary": summary, "answers": answers}
        write_results(args.out, meta, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
