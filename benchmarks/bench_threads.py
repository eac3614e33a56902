"""llama.cpp's generation threads on this machine: what a keystroke costs, quiet and with
one other busy process.

A keystroke that runs the model costs one new prompt token (the prompt before it is in
the server's cache) and a few generated ones. Generation threads wait for each other at
every layer, so a thread that loses its core to another process stalls the rest. This
starts one llama-server per `--threads` value (the managed server's other arguments:
`fim_server/backends/llama_server.py`), sends each the same keystroke-like requests in
rounds, alternating servers, with and without a busy process at normal priority (an
editor, a build) on one core, and prints medians: the new token's prompt ms, ms per
generated token, and the request's wall time.

    .venv/bin/python benchmarks/bench_threads.py --threads 1,2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
from pathlib import Path

import httpx

from fim_server.backends import gguf
from fim_server.backends.llama_server import CTX_SIZE, ManagedServer, cpu_threads, find_binary

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "inventory.py"
GENERATED = 8  # tokens per request: a typical single-line answer is 3-10


class GenerationThreadsServer(ManagedServer):
    """The managed server's command with `--threads` (generation) set, the rest as is."""

    def __init__(self, model: str, generation: int, poll: int | None = None) -> None:
        binary = find_binary()
        assert binary is not None, "llama-server not found"
        path, _ = gguf.model_file(model)
        super().__init__(binary, path, threads=cpu_threads(), ctx_size=CTX_SIZE)
        self.generation = generation
        self.poll = poll

    def command(self) -> list[str]:
        args = super().command()
        args[args.index("--threads") + 1] = str(self.generation)
        if self.poll is not None:
            args += ["--poll", str(self.poll)]
        return args


def variant(name: str) -> tuple[int, int | None]:
    """`2` (two generation threads, llama.cpp's default polling) or `2p0` (and --poll 0:
    waiting threads sleep instead of spinning)."""
    threads, _, poll = name.partition("p")
    return int(threads), int(poll) if poll else None


def server(model: str, name: str) -> ManagedServer:
    started = GenerationThreadsServer(model, *variant(name))
    started.start()
    return started


def _busy() -> None:
    while True:
        pass


def keystrokes(client: httpx.Client, url: str, n: int) -> list[dict[str, float]]:
    """`n` requests that each add one token to a cached prompt and generate GENERATED;
    the first (which fills the cache) is left out."""
    source = EXAMPLE.read_text()
    prompt = (
        "<|repo_name|>project\n<|file_sep|>file\n<|fim_prefix|>"
        + source[:600]
        + "<|fim_suffix|>"
        + source[600:900]
        + "<|fim_middle|>    x"
    )
    rows = []
    for i in range(n + 1):
        body = {
            "prompt": prompt + "abcdefghijklmnopqrstuvwxyz"[i % 26],
            "n_predict": GENERATED,
            "ignore_eos": True,
            "temperature": 0,
            "top_k": 1,
            "n_probs": 1,
            "cache_prompt": True,
        }
        answer = client.post(url + "/completion", json=body)
        answer.raise_for_status()
        t = answer.json()["timings"]
        rows.append(
            {
                "prompt_ms": t["prompt_ms"],
                "ms_per_token": t["predicted_ms"] / max(t["predicted_n"], 1),
                "wall_ms": answer.elapsed.total_seconds() * 1000,
            }
        )
    return rows[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument(
        "--threads",
        default="1,2",
        help="comma-separated --threads values; 2p0 is two threads with --poll 0",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=8, help="per server, round and load")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    counts = args.threads.split(",")
    servers = {t: server(args.model, t) for t in counts}
    client = httpx.Client(timeout=120, trust_env=False)
    results: dict[str, list[dict[str, float]]] = {}
    try:
        for _ in range(args.rounds):
            for busy in (False, True):
                competitor = None
                if busy:
                    competitor = multiprocessing.Process(target=_busy, daemon=True)
                    competitor.start()
                try:
                    for t in counts:
                        key = f"threads {t}, {'one busy process' if busy else 'quiet'}"
                        results.setdefault(key, []).extend(
                            keystrokes(client, servers[t].url, args.requests)
                        )
                finally:
                    if competitor is not None:
                        competitor.terminate()
                        competitor.join()
    finally:
        for s in servers.values():
            s.stop()
    summary = {
        key: {k: round(statistics.median(r[k] for r in rows), 1) for k in rows[0]}
        for key, rows in results.items()
    }
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at the end")
    print("| generation threads, machine | new prompt token ms | ms / generated token | wall ms |")
    print("|---|---:|---:|---:|")
    for key, s in summary.items():
        print(f"| {key} | {s['prompt_ms']} | {s['ms_per_token']} | {s['wall_ms']:.0f} |")
    if args.out:
        args.out.write_text(
            json.dumps({"args": vars(args) | {"out": str(args.out)}, "summary": summary}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
