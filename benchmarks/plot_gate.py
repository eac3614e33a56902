"""One backend's confidence gate on outside code: the curves of its tune and check replays.

Reads the gate-0 replays (benchmarks/typing_replay.py --gates 0) of a backend on the two
outside sets, and draws acceptance rate and characters typed by completions against the
gate, for all languages and for Python alone, with the backend's default threshold
(fim_server/cleanup/gate.py) marked. Prints the figures at that threshold, read off each curve
(offline: a hidden suggestion cannot be typed through, so a real run at the gate differs
a little).

    .venv/bin/python benchmarks/plot_gate.py --backend llama.cpp \\
        --tune results/gate/llama.cpp/tune/gate-0.00.json \\
        --check results/gate/llama.cpp/check/gate-0.00.json --out results/gate/llama.cpp.png
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from typing_replay import Replay, gate_curve, load, report_group

from fim_server.cleanup import gate as gate_module


def only(replay: Replay, group: str) -> Replay:
    """The part of `replay` in one language group ("all": the whole of it)."""
    if group == "all":
        return replay
    return replace(
        replay,
        keystrokes=[k for k in replay.keystrokes if report_group(k.language) == group],
        typed_chars={group: replay.typed_chars.get(group, 0)},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", required=True, help="the backend's name, as in gate.py")
    parser.add_argument("--tune", type=Path, required=True)
    parser.add_argument("--check", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    threshold = gate_module.default_min_confidence(args.backend)
    runs = {"tune": load(args.tune)}
    if args.check is not None:
        runs["check"] = load(args.check)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    for name, run in runs.items():
        for group, style in (("all", "-"), ("python", "--")):
            part = only(run, group)
            if not part.keystrokes:
                continue
            curve = gate_curve(part)
            gates = [p["gate"] for p in curve if p["shown"]]
            label = f"{name}, {group} ({sum(part.typed_chars.values())} chars typed)"
            color = "tab:blue" if name == "tune" else "tab:orange"
            left.plot(gates, [100 * p["acceptance_rate"] for p in curve if p["shown"]], style,
                      color=color, label=label)  # fmt: skip
            right.plot(gates, [100 * p["chars_saved"] for p in curve if p["shown"]], style,
                       color=color, label=label)  # fmt: skip
            point = curve[round(threshold * 100)]
            print(
                f"{name:<5} {group:<6} at {threshold:.2f}: acceptance "
                f"{100 * point['acceptance_rate']:.1f}% ({point['accepted']}/{point['shown']}), "
                f"characters {100 * point['chars_saved']:.1f}%; ungated "
                f"{100 * curve[0]['acceptance_rate']:.1f}% and {100 * curve[0]['chars_saved']:.1f}%"
            )
    for ax, ylabel in ((left, "acceptance rate (% of suggestions shown)"),
                       (right, "characters typed by completions (%)")):  # fmt: skip
        ax.axvline(threshold, color="crimson", lw=1, label=f"default gate {threshold:.2f}")
        ax.set_xlabel("gate (minConfidence)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    backend = next(iter(runs.values())).backend
    fig.suptitle(f"Confidence gate on outside code: {backend}", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
