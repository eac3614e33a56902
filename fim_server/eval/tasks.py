"""Benchmark tasks as an editor would meet them: a document, a cursor, and how to check
the text the server inserts there.

HumanEval-Infilling (single-line, multi-line, random-span-light) is checked by running
the task's tests against the completed program; SAFIM Python by its stdin/stdout unit
tests (block, control) or by exact match (api).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SAFIM_MARKER = "{{completion}}"


def checkout_benchmarks() -> Path:
    """`benchmarks/data/` of the source checkout the package runs from: the suites and
    their licenses ship beside the code, not inside the installed package. Looked for
    from the package's folder upward; where there is none, the folder beside the package,
    which `fim-server eval` names in its error (pass --benchmarks DIR)."""
    package = Path(__file__).resolve().parent.parent  # fim_server/
    for folder in package.parents:
        if (folder / "benchmarks" / "data").is_dir():
            return folder / "benchmarks" / "data"
    return package.parent / "benchmarks" / "data"


# The suites' data and licenses (fim-server is installed from a clone).
BENCHMARKS = checkout_benchmarks()

SUITES: dict[str, tuple[str, str]] = {
    # name: (file under the benchmarks folder, kind)
    "humaneval-single": ("humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz", "humaneval"),
    "humaneval-multi": ("humaneval-infilling/HumanEval-MultiLineInfilling.jsonl.gz", "humaneval"),
    "humaneval-random": (
        "humaneval-infilling/HumanEval-RandomSpanInfillingLight.jsonl.gz",
        "humaneval",
    ),
    "safim-block": ("safim/block_completion.jsonl.gz", "safim"),
    "safim-control": ("safim/control_completion.jsonl.gz", "safim"),
    "safim-api": ("safim/api_completion.jsonl.gz", "safim"),
}


@dataclass(frozen=True)
class UnitTest:
    stdin: str
    outputs: tuple[str, ...]  # any one of them is accepted


@dataclass(frozen=True)
class Task:
    task_id: str
    suite: str
    document: str  # the file as the editor holds it, cursor at `offset`
    offset: int
    reference: str  # the text that was removed
    # How the program around an inserted completion is built: document[:offset] +
    # completion + document[offset:]; HumanEval appends its tests and the check call.
    test_program: str = ""  # appended after the completed file (HumanEval)
    unit_tests: tuple[UnitTest, ...] = field(default_factory=tuple)  # SAFIM stdin/stdout

    @property
    def executable(self) -> bool:
        return bool(self.test_program or self.unit_tests)

    def program(self, completion: str) -> str:
        completed = self.document[: self.offset] + completion + self.document[self.offset :]
        return completed + self.test_program


def humaneval_task(row: dict, suite: str) -> Task:
    prefix, suffix, middle = row["prompt"], row["suffix"], row["canonical_solution"]
    if middle.endswith("\n") and (not prefix or prefix.endswith("\n")):
        # Whole lines are missing: the user stands on a fresh empty line where they go.
        # The reference loses its final newline, which the empty line already provides.
        document, reference = prefix + "\n" + suffix, middle[:-1]
    else:
        document, reference = prefix + suffix, middle
    tests = f"\n\n{row['test']}\n\ncheck({row['entry_point']})\n"
    return Task(row["task_id"], suite, document, len(prefix), reference, test_program=tests)


def safim_task(row: dict, suite: str) -> Task:
    prompt = row["eval_prompt"]
    offset = prompt.index(SAFIM_MARKER)
    document = prompt[:offset] + prompt[offset + len(SAFIM_MARKER) :]
    tests = tuple(
        UnitTest(
            t["input"], tuple(t["output"]) if isinstance(t["output"], list) else (t["output"],)
        )
        for t in row.get("unit_tests") or ()
    )
    return Task(row["task_id"], suite, document, offset, row["ground_truth"], unit_tests=tests)


def load_suite(benchmarks: Path, suite: str) -> list[Task]:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    relpath, kind = SUITES[suite]
    path = benchmarks / relpath
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (is --benchmarks the benchmarks folder?)")
    return list(_tasks(path, kind, suite))


def _tasks(path: Path, kind: str, suite: str) -> Iterator[Task]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if kind == "humaneval":
                yield humaneval_task(row, suite)
            elif row["lang"] == "python":
                yield safim_task(row, suite)


def spread(tasks: list[Task], limit: int | None) -> list[Task]:
    """`limit` tasks evenly spread over the suite (the files are sorted by problem, so
    the first N would test only a few problems)."""
    if limit is None or limit >= len(tasks):
        return tasks
    if limit <= 0:  # a caller's share that rounded down to nothing (bench_spec --limit 1)
        return []
    step = len(tasks) / limit
    return [tasks[int(i * step)] for i in range(limit)]


def normalise(code: str) -> str:
    """For exact match: line endings, trailing spaces and surrounding blank lines ignored."""
    lines = [line.rstrip() for line in code.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def output_matches(stdout: str, expected: str) -> bool:
    def tokens(text: str) -> list[str]:
        return text.split()

    return tokens(stdout) == tokens(expected)
