"""Print one markdown table comparing checkpoints from `fim-server eval --out` files.

    python benchmarks/side_by_side.py NAME=results.json [NAME=more.json ...]

A NAME may be given several files (one per suite); their suites are merged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = [
    ("humaneval-single", "pass@1"),
    ("humaneval-single", "exact"),
    ("humaneval-multi", "pass@1"),
    ("humaneval-random", "pass@1"),
    ("safim-block", "pass@1"),
    ("safim-control", "pass@1"),
    ("safim-api", "exact"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", nargs="+", metavar="NAME=FILE")
    args = ap.parse_args()
    models: dict[str, dict[str, dict]] = {}
    for item in args.results:
        name, _, path = item.partition("=")
        models.setdefault(name, {}).update(json.loads(Path(path).read_text())["summary"])
    header = ["model"] + [f"{suite} {metric}" for suite, metric in COLUMNS]
    header += ["passes/token", "tok/s", "single-line p50 ms"]
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")
    for name, summary in models.items():
        cells = [name]
        for suite, metric in COLUMNS:
            s = summary.get(suite)
            cells.append(
                "—" if s is None or s[metric] is None else f"{s[metric]}% (n={s['tasks']})"
            )
        tokens = sum(s["tokens"] for s in summary.values())
        passes = sum(s["passes_per_token"] * s["tokens"] for s in summary.values() if s["tokens"])
        rates = [s["tokens_per_s"] for s in summary.values() if s["tokens_per_s"]]
        single = summary.get("humaneval-single", {}).get("latency_p50_ms")
        cells.append(f"{passes / tokens:.2f}" if tokens else "—")
        cells.append(f"{sorted(rates)[len(rates) // 2]:.0f}" if rates else "—")
        cells.append(f"{single:.0f}" if single else "—")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
