"""Speculative decoding in llama.cpp's server, for a CPU: tokens/s at equal output.

On a memory-bound CPU one pass over several positions costs about what one costs (the
diffusion idea, applied to an autoregressive server): llama.cpp can check several
guessed tokens in one pass, guessed from n-grams of the context (`--spec-type
ngram-*`) or by a smaller model with the same vocabulary (`--model-draft`: the 0.5B for
the 1.5B). This starts one llama-server per variant, sends each the same /infill
requests (`fim-server eval` tasks, multi-line budget, greedy), alternating variants task
by task, and prints per variant: generation tokens/s (llama.cpp's `predicted_per_second`,
median), prompt tokens/s, and how many answers equal the plain server's.

    .venv/bin/python benchmarks/bench_spec.py --model qwen2.5-coder-1.5b --limit 12
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import httpx
from results_file import write_results

from fim_server.backends import gguf
from fim_server.backends.llama_server import CTX_SIZE, ManagedServer, cpu_threads, find_binary
from fim_server.eval.tasks import BENCHMARKS, load_suite, spread


def server(model: str, extra: list[str]) -> ManagedServer:
    binary = find_binary()
    assert binary is not None, "llama-server not found"
    path, _ = gguf.model_file(model)
    s = ManagedServer(binary, path, threads=cpu_threads(), ctx_size=CTX_SIZE)
    base = s.command
    s.command = lambda: base() + extra  # type: ignore[method-assign]
    s.start()
    return s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--n-predict", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    variants: dict[str, list[str]] = {
        "plain": [],
        "ngram-simple": ["--spec-type", "ngram-simple"],
        "ngram-mod": ["--spec-type", "ngram-mod"],
    }
    if args.model == "qwen2.5-coder-1.5b":
        draft = str(gguf.packaged_path("qwen2.5-coder-0.5b"))
        variants["draft 0.5B"] = ["--model-draft", draft, "--spec-draft-threads", "1"]
    servers = {name: server(args.model, extra) for name, extra in variants.items()}
    client = httpx.Client(timeout=600, trust_env=False)
    tasks = spread(load_suite(BENCHMARKS, "humaneval-multi"), args.limit // 2)
    tasks += spread(load_suite(BENCHMARKS, "safim-block"), args.limit - len(tasks))
    gen: dict[str, list[float]] = {n: [] for n in variants}
    prompt: dict[str, list[float]] = {n: [] for n in variants}
    texts: dict[str, list[str]] = {n: [] for n in variants}
    names = list(variants)
    try:
        for i, task in enumerate(tasks):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                body = {
                    "input_prefix": task.document[: task.offset],
                    "input_suffix": task.document[task.offset :],
                    "n_predict": args.n_predict, "temperature": 0, "top_k": 1,
                    "cache_prompt": False,
                }  # fmt: skip
                answer = client.post(f"{servers[name].url}/infill", json=body).json()
                timings = answer["timings"]
                gen[name].append(timings["predicted_per_second"])
                prompt[name].append(timings["prompt_per_second"])
                texts[name].append(answer["content"])
            print(f"task {i + 1}/{len(tasks)}", file=sys.stderr, flush=True)
    finally:
        for s in servers.values():
            s.stop()
    rows = {}
    lines = [f"`bench_spec.py --model {args.model} --limit {args.limit}`", "",
             "| variant | generation tok/s (median) | prompt tok/s | answers equal to plain |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for name in names:
        same = sum(a == b for a, b in zip(texts[name], texts["plain"], strict=True))
        rows[name] = {
            "gen_tps": statistics.median(gen[name]),
            "prompt_tps": statistics.median(prompt[name]),
            "equal": same,
            "tasks": len(tasks),
        }
        r = rows[name]
        lines.append(
            f"| {name} | {r['gen_tps']:.1f} | {r['prompt_tps']:.0f} | {same}/{len(tasks)} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        write_results(args.out, rows, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
