"""`fim-server eval`: the whole completion pipeline (context, model, post-processing, as
the server runs it) scored on public infilling benchmarks.

Each task's document and cursor go through `Engine.complete_blocking`; the inserted text
is scored by exact match and, where the task has tests, by running the completed program
in the sandbox (pass@1 with greedy decoding). Programs run on worker threads while the
model writes the next completion.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TextIO

from ..completion import Completion
from .sandbox import Outcome, SandboxLimits, run_python
from .tasks import Task, normalise, output_matches


class Completer(Protocol):
    def complete_blocking(self, text: str, offset: int) -> Completion: ...


class EmptyAnswers:
    """The floor every model must beat: insert nothing. Some tasks pass without the
    removed code (a line whose effect the tests never see)."""

    def complete_blocking(self, text: str, offset: int) -> Completion:
        return Completion("", None, "empty baseline")


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    suite: str
    completion: str
    exact: bool
    passed: bool | None  # None: the task has no tests (exact match only)
    detail: str  # why it failed: "error", "timeout", "wrong output", ""
    tokens: int
    forward_passes: int
    model_ms: float
    latency_ms: float
    ended: bool = False  # the model also wrote its end-of-middle token


def check(task: Task, completion: str, limits: SandboxLimits) -> tuple[bool | None, str]:
    """Run the task's tests on the completed program; (passed, why not)."""
    if task.test_program:
        run = run_python(task.program(completion), limits=limits)
        return run.outcome is Outcome.OK, "" if run.outcome is Outcome.OK else run.outcome.value
    if task.unit_tests:
        program = task.program(completion)
        for test in task.unit_tests:
            run = run_python(program, test.stdin, limits)
            if run.outcome is not Outcome.OK:
                return False, run.outcome.value
            if not any(output_matches(run.stdout, expected) for expected in test.outputs):
                return False, "wrong output"
        return True, ""
    return None, ""


class _Progress:
    def __init__(self, suite: str, total: int, stream: TextIO | None) -> None:
        self.suite, self.total, self.stream = suite, total, stream
        self.done = self.exact = self.tokens = self.passes = 0
        self.started = time.perf_counter()

    def update(self, exact: bool, tokens: int, passes: int) -> None:
        self.done += 1
        self.exact += exact
        self.tokens += tokens
        self.passes += passes
        if self.stream is None:
            return
        redraw = self.stream.isatty()
        if not redraw and self.done % max(1, self.total // 10) and self.done != self.total:
            return  # a log file gets about ten lines per suite, not one per task
        width = 24
        filled = width * self.done // max(self.total, 1)
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            ("\r" if redraw else "") + f"{self.suite:18s} [{bar}] {self.done}/{self.total}"
            f" exact {100 * self.exact / self.done:5.1f}%"
            f" {self.passes / max(self.tokens, 1):.2f} passes/token"
            f" {elapsed:5.0f}s eta {eta:4.0f}s"
        )
        if self.done == self.total or not redraw:
            self.stream.write("\n")
        self.stream.flush()


def evaluate(
    engine: Completer,
    tasks: list[Task],
    limits: SandboxLimits | None = None,
    workers: int = 2,
    progress: TextIO | None = sys.stderr,
) -> list[TaskResult]:
    limits = limits or SandboxLimits()
    bar = _Progress(tasks[0].suite if tasks else "", len(tasks), progress)
    pending: list[tuple[Task, Completion, Future[tuple[bool | None, str]]]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for task in tasks:
            completion = engine.complete_blocking(task.document, task.offset)
            exact = normalise(completion.text) == normalise(task.reference)
            bar.update(exact, completion.tokens, completion.forward_passes)
            checked = pool.submit(check, task, completion.text, limits)
            pending.append((task, completion, checked))
        results = []
        for task, completion, checked in pending:
            passed, detail = checked.result()
            results.append(
                TaskResult(
                    task.task_id,
                    task.suite,
                    completion.text,
                    normalise(completion.text) == normalise(task.reference),
                    passed,
                    detail,
                    completion.tokens,
                    completion.forward_passes,
                    completion.model_ms,
                    completion.latency_ms,
                    completion.ended,
                )
            )
    return results


def summarise(results: list[TaskResult]) -> dict[str, float | int | None]:
    n = len(results)
    tested = [r for r in results if r.passed is not None]
    tokens = sum(r.tokens for r in results)
    model_s = sum(r.model_ms for r in results) / 1000
    return {
        "tasks": n,
        "pass@1": round(100 * sum(bool(r.passed) for r in tested) / len(tested), 1)
        if tested
        else None,
        "exact": round(100 * sum(r.exact for r in results) / n, 1) if n else None,
        "non_empty": round(100 * sum(bool(r.completion) for r in results) / n, 1) if n else None,
        "timeouts": sum(r.detail == "timeout" for r in results),
        "tokens": tokens,
        "passes_per_token": round(sum(r.forward_passes for r in results) / tokens, 3)
        if tokens
        else None,
        # <eom> is a token the model writes too, as an autoregressive model's end of text is.
        "passes_per_token_with_eom": round(
            sum(r.forward_passes for r in results) / (tokens + sum(r.ended for r in results)), 3
        )
        if tokens
        else None,
        "tokens_per_s": round(tokens / model_s, 1) if model_s else None,
        "latency_p50_ms": round(statistics.median(r.latency_ms for r in results), 1) if n else None,
    }


def markdown_table(summaries: dict[str, dict[str, float | int | None]], model: str) -> str:
    def cell(value: float | int | None, suffix: str = "") -> str:
        return "—" if value is None else f"{value}{suffix}"

    lines = [
        f"Model: `{model}`",
        "",
        "| suite | tasks | pass@1 | exact | non-empty | passes/token | (<eom> counted) "
        "| tok/s | p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for suite, s in summaries.items():
        lines.append(
            f"| {suite} | {s['tasks']} | {cell(s['pass@1'], '%')} | {cell(s['exact'], '%')} "
            f"| {cell(s['non_empty'], '%')} | {cell(s['passes_per_token'])} "
            f"| {cell(s.get('passes_per_token_with_eom'))} "
            f"| {cell(s['tokens_per_s'])} | {cell(s['latency_p50_ms'])} |"
        )
    return "\n".join(lines) + "\n"


def write_results(
    path: Path, model: str, summaries: dict, results: dict[str, list[TaskResult]]
) -> None:
    payload = {
        "model": model,
        "summary": summaries,
        "tasks": {suite: [asdict(r) for r in rs] for suite, rs in results.items()},
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")
