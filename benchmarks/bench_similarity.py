"""How close the embedded model's cleaned completions come to the removed code: edit
similarity (difflib ratio, 0-1), exact matches, non-empty answers and passes per answer
token, per suite of `fim-server eval`, through the real engine (context, modes,
post-processing; the confidence gate off). pass@1 barely moves for a model this weak;
edit similarity shows a change in decoding long before it does.

    .venv/bin/python benchmarks/bench_similarity.py --limit 150 --out results/x.json

Run it at two commits to compare a change in decoding.
"""

from __future__ import annotations

import argparse
import difflib
import json
import time
from pathlib import Path

import torch

from fim_server.config.settings import UserSettings
from fim_server.engine import Engine, EngineSettings
from fim_server.eval.tasks import BENCHMARKS, SUITES, load_suite, spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=150, help="tasks per suite (150)")
    parser.add_argument("--suite", action="append", choices=list(SUITES), help="repeatable")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    engine = Engine(EngineSettings(cache_size=0))
    engine.configure(UserSettings(min_confidence=0))
    figures: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    print(f"{'suite':18} {'tasks':>5} {'similarity':>10} {'exact':>5} {'non-empty':>9} "
          f"{'passes/token':>12}")  # fmt: skip
    for suite in args.suite or list(SUITES):
        tasks = spread(load_suite(BENCHMARKS, suite), args.limit)
        similarity, exact, nonempty, tokens, passes = 0.0, 0, 0, 0, 0
        for task in tasks:
            completion = engine.complete_blocking(task.document, task.offset, path="task.py")
            similarity += difflib.SequenceMatcher(None, completion.text, task.reference).ratio()
            exact += completion.text.strip() == task.reference.strip()
            nonempty += bool(completion.text)
            tokens += completion.tokens
            passes += completion.forward_passes
        row = {
            "tasks": len(tasks),
            "similarity": similarity / len(tasks),
            "exact": exact,
            "nonempty": nonempty,
            "passes_per_token": passes / max(tokens, 1),
        }
        figures[suite] = row
        print(f"{suite:18} {row['tasks']:5d} {row['similarity']:10.3f} {exact:5d} "
              f"{nonempty:9d} {row['passes_per_token']:12.3f}", flush=True)  # fmt: skip
    engine.close()
    print(f"{time.perf_counter() - started:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
