"""The real models side by side, in one run: what fim-server makes of each, against the
model served raw.

For each task of `fim-server eval`'s suites (an even spread, `--limit` per suite), every
configuration answers in turn, the order rotating from task to task so that whatever
else loads the machine hits each alike:

- `embedded`: fim-server's embedded model, through the whole pipeline;
- `fim:MODEL`: fim-server serving a packaged GGUF model (its own llama-server), through
  the whole pipeline (context window, modes, post-processing) with the default settings;
- `raw:MODEL`: llama.cpp's `/infill` alone on a llama-server of its own: the whole
  document before and after the cursor as `input_prefix` / `input_suffix` (llama.cpp
  keeps at most 3/4 of a batch of the prefix), greedy, `n_predict` the pipeline's budget
  for the task's mode, `stop` at the line break on the single-line suite. The floor
  fim-server must not fall under.

The confidence gate is off (minConfidence 0) and the completion cache off: pass@1 scores
every answer written; the gate is the typing replay's business. Prints per suite and
configuration: exact match, pass@1 (the completed program's tests in the eval sandbox),
edit similarity to the removed code, empty answers, and latency p50/p95 (the complete
call, context building and post-processing included for fim-server). Writes JSON and a
markdown table.

    .venv/bin/python benchmarks/bench_real.py --limit 25 --out results/real-model/side-by-side
"""

from __future__ import annotations

import argparse
import difflib
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from results_file import write_results

from fim_server.backends import BackendSpec, gguf
from fim_server.backends.llama_server import CTX_SIZE, ManagedServer, cpu_threads, find_binary
from fim_server.config.defaults import BLOCK_TOKENS, LINE_TOKENS
from fim_server.config.settings import UserSettings
from fim_server.engine import Engine, EngineSettings
from fim_server.eval.run import check
from fim_server.eval.sandbox import SandboxLimits
from fim_server.eval.tasks import BENCHMARKS, SUITES, Task, load_suite, normalise, spread


class Answerer(Protocol):
    name: str

    def answer(self, task: Task) -> str: ...

    def close(self) -> None: ...


class Pipeline:
    """fim-server's engine, as `fim-server eval` runs it."""

    def __init__(self, name: str, spec: BackendSpec) -> None:
        self.name = name
        self.engine = Engine(EngineSettings(backend=spec, cache_size=0))
        self.engine.configure(UserSettings(min_confidence=0.0))
        self.engine.start_loading().result()
        if self.engine.load_error is not None:
            raise SystemExit(f"{name}: {self.engine.load_error}")

    def answer(self, task: Task) -> str:
        return self.engine.complete_blocking(task.document, task.offset).text

    def close(self) -> None:
        self.engine.close()


class RawInfill:
    """llama.cpp's /infill on the whole document, nothing before or after it."""

    def __init__(self, name: str, model: str) -> None:
        binary = find_binary()
        if binary is None:
            raise SystemExit("llama-server not found")
        path, _ = gguf.model_file(model)
        self.name = name
        self.server = ManagedServer(binary, path, threads=cpu_threads(), ctx_size=CTX_SIZE)
        self.server.start()
        self.client = httpx.Client(timeout=600, trust_env=False)

    def answer(self, task: Task) -> str:
        single = task.suite == "humaneval-single"
        body: dict[str, Any] = {
            "input_prefix": task.document[: task.offset],
            "input_suffix": task.document[task.offset :],
            "n_predict": LINE_TOKENS if single else BLOCK_TOKENS,
            "temperature": 0,
            "top_k": 1,
            "cache_prompt": True,
        }
        if single:
            body["stop"] = ["\n"]
        response = self.client.post(f"{self.server.url}/infill", json=body)
        response.raise_for_status()
        return response.json()["content"]

    def close(self) -> None:
        self.client.close()
        self.server.stop()


@dataclass
class Tally:
    exact: int = 0
    passed: int = 0
    tested: int = 0
    empty: int = 0
    similarity: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        n = len(self.latency_ms)
        lat = sorted(self.latency_ms)
        return {
            "tasks": n,
            "exact": self.exact,
            "pass@1": self.passed / self.tested if self.tested else None,
            "edit_similarity": statistics.mean(self.similarity) if self.similarity else None,
            "empty": self.empty,
            "p50_ms": statistics.median(lat) if lat else None,
            "p95_ms": lat[min(n - 1, round(0.95 * (n - 1)))] if lat else None,
        }


def answerers(names: list[str]) -> list[Answerer]:
    made: list[Answerer] = []
    for name in names:
        kind, _, model = name.partition(":")
        if kind == "embedded":
            made.append(Pipeline(name, BackendSpec(model_path=gguf.EMBEDDED)))
        elif kind == "fim":
            # A long timeout: the figures are the model's answers whatever the machine's
            # load; latency is measured apart from it.
            made.append(Pipeline(name, BackendSpec(model_path=model, timeout_ms=600_000)))
        elif kind == "raw":
            made.append(RawInfill(name, model))
        else:
            raise SystemExit(f"unknown configuration {name!r}")
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=25, help="tasks per suite (25)")
    parser.add_argument("--suite", action="append", choices=list(SUITES))
    parser.add_argument(
        "--configs",
        default="embedded,raw:qwen2.5-coder-0.5b,fim:qwen2.5-coder-0.5b,"
        "raw:qwen2.5-coder-1.5b,fim:qwen2.5-coder-1.5b",
    )
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    parser.add_argument(
        "--answers", type=Path, help="also write every answer: a JSON line per task and config"
    )
    args = parser.parse_args()
    answers = args.answers.open("w") if args.answers else None
    suites = args.suite or [
        "humaneval-single",
        "humaneval-multi",
        "humaneval-random",
        "safim-block",
    ]
    tasks = {s: spread(load_suite(BENCHMARKS, s), args.limit) for s in suites}
    configs = answerers(args.configs.split(","))
    tallies = {(s, c.name): Tally() for s in suites for c in configs}
    limits = SandboxLimits(wall_s=10, cpu_s=10)
    checks: list[tuple[Tally, Any]] = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            for suite, suite_tasks in tasks.items():
                for i, task in enumerate(suite_tasks):
                    order = configs[i % len(configs) :] + configs[: i % len(configs)]
                    for config in order:
                        t0 = time.perf_counter()
                        text = config.answer(task)
                        tally = tallies[(suite, config.name)]
                        tally.latency_ms.append((time.perf_counter() - t0) * 1000)
                        tally.exact += normalise(text) == normalise(task.reference)
                        tally.empty += not text.strip()
                        tally.similarity.append(
                            difflib.SequenceMatcher(
                                None, normalise(text), normalise(task.reference)
                            ).ratio()
                        )
                        if answers is not None:
                            record = {"suite": suite, "task": task.task_id, "config": config.name,
                                      "text": text, "reference": task.reference}  # fmt: skip
                            answers.write(json.dumps(record) + "\n")
                            answers.flush()
                        if task.executable:
                            checks.append((tally, pool.submit(check, task, text, limits)))
                    print(
                        f"{suite} {i + 1}/{len(suite_tasks)} {time.monotonic() - started:.0f}s",
                        file=sys.stderr,
                        flush=True,
                    )
            for tally, future in checks:
                passed, _ = future.result()
                if passed is not None:
                    tally.tested += 1
                    tally.passed += passed
        finally:
            for config in configs:
                config.close()
            if answers is not None:
                answers.close()
    rows = {f"{s} | {c}": t.summary() for (s, c), t in tallies.items()}
    table = ["| suite | configuration | exact | pass@1 | edit sim | empty | p50 ms | p95 ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for key, r in rows.items():
        suite, config = key.split(" | ")

        def f(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        table.append(
            f"| {suite} | {config} | {r['exact']}/{r['tasks']} | {f(r['pass@1'], '.2f')} | "
            f"{f(r['edit_similarity'], '.2f')} | {r['empty']} | {f(r['p50_ms'], '.0f')} | "
            f"{f(r['p95_ms'], '.0f')} |"
        )
    markdown = "\n".join(table) + "\n"
    print(markdown)
    if args.out:
        meta = {"limit": args.limit, "configs": [c.name for c in configs], "results": rows}
        write_results(args.out, meta, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
