"""The clean-up's own scoreboard: what each post-processing rule does to a backend's
answers, and how many right answers it throws away.

For each task of the eval suites (benchmarks/data: HumanEval-Infilling and SAFIM, both
Python; `--limit` per suite, an even spread) and, with `--outside-lines N`, N code lines
per language of the held-out outside projects (benchmarks/data/outside/check: each line
emptied after its indentation, as in the typing replay, rows picked by its
`typable_lines`), the backend answers the context fim-server
builds (window, mode, budget), and `clean_edit` runs on that answer with a trace of every
rule that changed it. Two decisions taken before the model runs are scored the same way,
by also asking the backend what it writes without them:

- `mode none`: positions where fim-server asks nothing (the cursor before a word, an
  opener whose body exists); the backend is asked there in the line mode;
- `literal budget`: inside comments and strings fim-server asks for fewer tokens; the
  backend is asked there with the line budget too.

"Raw" is the backend's answer to the same prompt with no clean-up (special tokens
stripped): so every difference is the clean-up's. An answer is right when the completed
document equals the one with the removed reference in it, after `normalise` (line
endings, trailing spaces, surrounding blank lines). Prints, per rule and language: answers
the rule kept, cut (shortened or changed) and dropped (nothing left); among the cut or
dropped, how many were right before the rule touched them (lost) and how many wrong ones
it made right or hid (saved); then per suite: raw right, pipeline right, and the raw right
answers that came back empty or changed (the outside lines one row per language). Writes
JSON (every task with its trace) and
markdown.

    nice -n 10 .venv/bin/python benchmarks/bench_cleanup.py --limit 8 \
        --out results/cleanup/qwen-0.5b
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zlib
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from typing_replay import (
    DEFAULT_LANGUAGES,
    HeldOutFile,
    chosen_rows,
    emptied_line,
    outside_files,
    report_group,
)

from fim_server.backends import Backend, BackendSpec, gguf, load_backend
from fim_server.backends.remote import CHARS_PER_TOKEN
from fim_server.cleanup import CleanupTrace, RuleStep, clean_edit, strip_special_tokens
from fim_server.context import CompletionContext, ContextSettings, Literal, Mode, build_context
from fim_server.context.window import CountTokens, build_window
from fim_server.eval.tasks import BENCHMARKS, SUITES, Task, load_suite, normalise, spread
from fim_server.pipeline import infill_request


@dataclass
class RuleTally:
    kept: int = 0  # answers the rule did not change (reached or not)
    cut: int = 0
    dropped: int = 0
    lost: int = 0  # cut or dropped, and right before the rule
    saved: int = 0  # wrong before the rule, and right after it or dropped by it


@dataclass
class TaskRecord:
    task_id: str
    suite: str
    language: str
    mode: str
    max_tokens: int | None
    reason: str
    raw: str  # the backend's answer (a line request where fim-server asks less)
    answer: str | None  # the answer to fim-server's request, where it differs from `raw`
    cleaned: str
    cleaned_replace: int
    raw_right: bool
    right: bool
    steps: list[dict[str, Any]] = field(default_factory=list)
    asked: bool = True  # False: replayed from an earlier run's answers
    prompt: int = 0  # crc32 of the window the backend was shown


OUTSIDE_SUITE = "outside"  # a suite name's start: "outside python", "outside go", ...
OUTSIDE_SET = "check"  # the outside files no rule or gate was tuned on


def outside_task(file: HeldOutFile, row: int) -> Task:
    """The file with line `row` emptied after its indentation, the cursor there."""
    document, offset, reference = emptied_line(file, row)
    suite = f"{OUTSIDE_SUITE} {report_group(file.language)}"
    return Task(f"{file.path}:{row + 1}", suite, document, offset, reference)


def outside_tasks(lines_per_language: int, seed: int) -> list[tuple[Task, str]]:
    """`lines_per_language` lines of each language group (JavaScript with TypeScript, C
    with C++), taken in turn from the group's files so no one file dominates; with each
    task its file's language."""
    groups: dict[str, list[HeldOutFile]] = defaultdict(list)
    for file in outside_files(OUTSIDE_SET, list(DEFAULT_LANGUAGES), 1):
        groups[report_group(file.language)].append(file)
    picked: list[tuple[Task, str]] = []
    for group in sorted(groups):
        files = groups[group]
        # A random sample of each file's share (the rows come back sorted: taking the
        # first rows of a larger sample would favour the top of the files).
        share = -(-lines_per_language // len(files))
        rows = [chosen_rows(file, share, seed) for file in files]
        taken = 0
        for turn in range(share):
            for file, file_rows in zip(files, rows, strict=True):
                if turn < len(file_rows) and taken < lines_per_language:
                    picked.append((outside_task(file, file_rows[turn]), file.language))
                    taken += 1
    return picked


def is_single_line(task: Task) -> bool:
    """Suites whose reference is one line: a block's first line is what a line request
    would have written (greedy, the same prompt)."""
    return task.suite == "humaneval-single" or task.suite.startswith(OUTSIDE_SUITE)


def remote_count_tokens(text: str) -> int:
    """How remote backends (the llama.cpp server) measure a context: in characters."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def completed(task: Task, text: str, replace_chars: int = 0) -> str:
    return task.document[: task.offset] + text + task.document[task.offset + replace_chars :]


def is_right(task: Task, text: str, replace_chars: int = 0) -> bool:
    wanted = normalise(completed(task, task.reference))
    return normalise(completed(task, text, replace_chars)) == wanted


def ask(backend: Backend, ctx: CompletionContext) -> str:
    """The backend's answer to `ctx`, the way the engine asks it."""
    request = infill_request(ctx, should_cancel=lambda: False, seed=0, count=1)
    return backend.infill(request)[0].text


def line_context(
    task: Task, ctx: CompletionContext, settings: ContextSettings, count
) -> CompletionContext:
    """`ctx` as a plain line request: the line mode and budget, the window built even
    where fim-server would ask nothing."""
    line_mode = Mode.REST_OF_LINE if ctx.line_suffix.strip() else Mode.SINGLE_LINE
    window = (
        build_window(
            task.document,
            task.offset,
            count,
            prefix_tokens=settings.prefix_tokens,
            suffix_tokens=settings.suffix_tokens,
        )
        if ctx.mode is Mode.NONE
        else None
    )
    return replace(
        ctx,
        mode=line_mode if ctx.mode is Mode.NONE else ctx.mode,
        max_tokens=settings.single_line_tokens,
        prefix=window.prefix if window is not None else ctx.prefix,
        suffix=window.suffix if window is not None else ctx.suffix,
    )


def score_task(
    backend: Backend | None,
    settings: ContextSettings,
    task: Task,
    language: str,
    count: CountTokens,
    recorded: TaskRecord | None = None,
) -> TaskRecord:
    """Ask the backend at `task` and trace the clean-up of its answer. `recorded`: an
    earlier run's record of the task, whose answers are scored again without asking when
    the context asks the same as then (the clean-up changed, the request did not)."""
    ctx = build_context(task.document, task.offset, count, settings, language=language)
    trace = CleanupTrace()
    asked_less = ctx.mode is Mode.NONE or (
        ctx.literal is not Literal.NONE and ctx.max_tokens < settings.single_line_tokens
    )
    prompt = zlib.crc32((ctx.model_prefix + "\0" + ctx.suffix).encode())
    same_request = (
        recorded is not None
        and recorded.prompt in (prompt, 0)  # 0: a run before the field (the same window)
        and recorded.mode == str(ctx.mode)
        and recorded.max_tokens in (ctx.max_tokens, None)
        and (recorded.answer is not None or not asked_less)
    )
    if same_request:
        assert recorded is not None
        raw = recorded.raw
        answer = recorded.answer if recorded.answer is not None else raw
    else:
        if backend is None:
            raise SystemExit(f"{task.task_id}: the request changed, a backend must answer")
        raw = ask(backend, line_context(task, ctx, settings, count)) if asked_less else ""
        answer = ask(backend, ctx) if ctx.mode is not Mode.NONE else ""
        if not asked_less:
            raw = answer
    if asked_less and ctx.mode is not Mode.NONE:
        # What the shorter budget cut: judged like a rule, on the first line.
        trace.record("literal budget", raw.split("\n", 1)[0], answer.split("\n", 1)[0])
    edit = clean_edit(answer if ctx.mode is not Mode.NONE else raw, ctx, trace)
    raw_text = strip_special_tokens(raw)
    if ctx.mode.is_line or ctx.mode is Mode.NONE or is_single_line(task):
        # A line request stops there; see is_single_line.
        raw_text = raw_text.split("\n", 1)[0]
    return TaskRecord(
        task.task_id,
        task.suite,
        language,
        str(ctx.mode),
        ctx.max_tokens,
        ctx.reason,
        raw,
        answer if asked_less else None,
        edit.text,
        edit.replace_chars,
        is_right(task, raw_text),
        is_right(task, edit.text, edit.replace_chars),
        [asdict(step) for step in trace.steps],
        asked=not same_request,
        prompt=prompt,
    )


def extend_spread(tasks: list[Task], limit: int | None, kept: set[str]) -> list[Task]:
    """The tasks whose ids are in `kept`, then an even spread of the others up to `limit`,
    in the suite's order: so a run grown from an earlier one reuses all its answers."""
    first = [task for task in tasks if task.task_id in kept]
    others = [task for task in tasks if task.task_id not in kept]
    wanted = len(tasks) if limit is None else max(limit - len(first), 0)
    extra = spread(others, wanted) if wanted else []
    chosen = {task.task_id for task in first + extra}
    return [task for task in tasks if task.task_id in chosen]


def tally_rules(
    records: list[TaskRecord], tasks: dict[str, Task]
) -> dict[tuple[str, str], RuleTally]:
    tallies: dict[tuple[str, str], RuleTally] = defaultdict(RuleTally)
    rules_seen: set[str] = set()
    for record in records:
        rules_seen.update(step["rule"] for step in record.steps)
    for record in records:
        task = tasks[record.task_id]
        touched = {step["rule"] for step in record.steps}
        for step_dict in record.steps:
            step = RuleStep(**step_dict)
            tally = tallies[step.rule, report_group(record.language)]
            right_before = is_right(task, step.before)
            right_after = bool(step.after.strip()) and is_right(
                task, step.after, step.after_replace
            )
            if not step.after.strip():
                tally.dropped += 1
            else:
                tally.cut += 1
            if right_before and not right_after:
                tally.lost += 1
            elif not right_before and (right_after or not step.after.strip()):
                tally.saved += 1
        for rule in rules_seen - touched:
            tallies[rule, report_group(record.language)].kept += 1
    return dict(tallies)


def report(records: list[TaskRecord], tasks: dict[str, Task]) -> tuple[str, dict[str, Any]]:
    rules = tally_rules(records, tasks)
    lines = [
        "| rule | language | kept | cut | dropped | right lost | wrong saved |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (rule, language), t in sorted(rules.items(), key=lambda kv: (-kv[1].lost, kv[0])):
        lines.append(
            f"| {rule} | {language} | {t.kept} | {t.cut} | {t.dropped} | {t.lost} | {t.saved} |"
        )
    suites: dict[str, dict[str, int]] = {}
    for record in records:
        s = suites.setdefault(
            record.suite,
            {
                "tasks": 0,
                "raw right": 0,
                "right": 0,
                "raw right, empty": 0,
                "raw right, changed": 0,
            },
        )
        s["tasks"] += 1
        s["raw right"] += record.raw_right
        s["right"] += record.right
        if record.raw_right and not record.right:
            s["raw right, empty" if not record.cleaned.strip() else "raw right, changed"] += 1
    lines += [
        "",
        "| suite | tasks | raw right | pipeline right | raw right, empty | raw right, changed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for suite, s in suites.items():
        lines.append(
            f"| {suite} | {s['tasks']} | {s['raw right']} | {s['right']} "
            f"| {s['raw right, empty']} | {s['raw right, changed']} |"
        )
    summary = {
        "rules": [
            {"rule": rule, "language": language, **asdict(t)}
            for (rule, language), t in sorted(rules.items())
        ],
        "suites": suites,
    }
    return "\n".join(lines), summary


def mark_of(record: TaskRecord) -> str:
    """Progress: right, a right answer lost, or wrong."""
    return "=" if record.right else ("!" if record.raw_right else ".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=gguf.DEFAULT_PACKAGED, help="backend model")
    parser.add_argument("--suites", nargs="*", default=list(SUITES), choices=list(SUITES))
    parser.add_argument(
        "--outside-lines", type=int, default=0, help="lines per language of outside/check"
    )
    parser.add_argument("--seed", type=int, default=0, help="which outside lines")
    parser.add_argument("--limit", type=int, default=8, help="tasks per suite")
    parser.add_argument("--limit-single", type=int, help="tasks of humaneval-single")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    parser.add_argument(
        "--replay",
        type=Path,
        help="an earlier run's JSON: its answers are scored again where the request is the same",
    )
    parser.add_argument(
        "--replay-only", action="store_true", help="with --replay: never start the backend"
    )
    parser.add_argument(
        "--context-tokens", type=int, help="the backend's context, when it is not started"
    )
    parser.add_argument(
        "--keep-replayed",
        action="store_true",
        help="with --replay: a suite's tasks are the replay's, then an even spread of the "
        "others up to the limit (a larger spread alone would pick other tasks)",
    )
    args = parser.parse_args(argv)

    recorded: dict[str, TaskRecord] = {}
    if args.replay is not None:
        for row in json.loads(args.replay.read_text())["tasks"]:
            row.setdefault("max_tokens", None)  # runs before the field: the same budgets
            row.setdefault("answer", None)
            recorded[row["task_id"]] = TaskRecord(**row)
    backend: Backend | None = None
    if not args.replay_only:
        backend = load_backend(BackendSpec(model_path=args.model, timeout_ms=120_000))
    trained = getattr(backend, "context_tokens", None) if backend is not None else None
    trained = trained or args.context_tokens
    settings = ContextSettings.sized_for(trained) if trained else ContextSettings()
    count = backend.count_tokens if backend is not None else remote_count_tokens
    records: list[TaskRecord] = []
    tasks: dict[str, Task] = {}
    started = time.perf_counter()
    try:
        for suite in args.suites:
            single = suite == "humaneval-single" and args.limit_single
            limit = args.limit_single if single else args.limit
            suite_tasks = load_suite(BENCHMARKS, suite)
            chosen = (
                extend_spread(suite_tasks, limit, set(recorded))
                if args.keep_replayed
                else spread(suite_tasks, limit)
            )
            for task in chosen:
                tasks[task.task_id] = task
                record = score_task(
                    backend, settings, task, "python", count, recorded.get(task.task_id)
                )
                records.append(record)
                print(mark_of(record), end="", flush=True, file=sys.stderr)
            print(f" {suite}", file=sys.stderr)
        if args.outside_lines:
            for task, language in outside_tasks(args.outside_lines, args.seed):
                tasks[task.task_id] = task
                record = score_task(
                    backend, settings, task, language, count, recorded.get(task.task_id)
                )
                records.append(record)
                print(mark_of(record), end="", flush=True, file=sys.stderr)
            print(f" {OUTSIDE_SUITE}", file=sys.stderr)
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    table, summary = report(records, tasks)
    replayed = sum(not r.asked for r in records)
    heading = (
        f"Clean-up scoreboard: {args.model}, {len(records)} tasks, {replayed} replayed "
        f"({time.perf_counter() - started:.0f} s)\n"
    )
    print(heading + "\n" + table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        summary["model"] = args.model
        summary["tasks"] = [asdict(r) for r in records]
        args.out.parent.joinpath(args.out.name + ".json").write_text(
            json.dumps(summary, indent=1) + "\n"
        )
        args.out.parent.joinpath(args.out.name + ".md").write_text(f"# {heading}\n{table}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
