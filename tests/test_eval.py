"""The evaluation harness: the sandbox contains bad programs, benchmark tasks rebuild
their reference programs, and a run scores failures and carries on."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from fim_server.cli import main
from fim_server.completion import Completion
from fim_server.eval.run import check, evaluate, summarise
from fim_server.eval.sandbox import Outcome, SandboxLimits, run_python
from fim_server.eval.tasks import (
    BENCHMARKS,
    SUITES,
    Task,
    UnitTest,
    load_suite,
    normalise,
    spread,
)

FAST = SandboxLimits(wall_s=3, cpu_s=2, memory_mb=512)


def test_sandbox_runs_a_program_with_its_stdin() -> None:
    run = run_python("import sys\nprint(sum(map(int, sys.stdin.read().split())))\n", "2 3 4")
    assert run.outcome is Outcome.OK and run.stdout.strip() == "9"


def test_sandbox_stops_an_infinite_loop() -> None:
    started = time.perf_counter()
    run = run_python("while True:\n    pass\n", limits=FAST)
    assert run.outcome is Outcome.TIMEOUT
    assert time.perf_counter() - started < 10


def test_sandbox_stops_a_sleeping_program_at_the_wall_clock() -> None:
    run = run_python("import time\ntime.sleep(60)\n", limits=SandboxLimits(wall_s=1))
    assert run.outcome is Outcome.TIMEOUT


def test_sandbox_reports_a_crash_and_a_memory_bomb_as_errors() -> None:
    crash = run_python("raise SystemExit(3)\n", limits=FAST)
    assert crash.outcome is Outcome.ERROR and crash.returncode == 3
    bomb = run_python("x = bytearray(4 * 1024 ** 3)\n", limits=FAST)
    assert bomb.outcome is Outcome.ERROR and "MemoryError" in bomb.stderr


def test_sandbox_has_no_network() -> None:
    program = "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)\n"
    run = run_python(program, limits=FAST)
    assert run.outcome is Outcome.ERROR and "disabled" in run.stderr


def test_sandbox_runs_in_a_fresh_directory(tmp_path: Path) -> None:
    run = run_python("import os\nprint(os.getcwd())\nprint(sorted(os.listdir()))\n")
    cwd, listing = run.stdout.splitlines()
    assert listing == "['main.py']" and not Path(cwd).exists()


def _task(reference: str, tests: str) -> Task:
    document = "def add(a, b):\n    return \n"
    return Task("t", "unit", document, document.index("\n", 16), reference, test_program=tests)


class ScriptedEngine:
    """Answers each request with the next scripted text, as the engine would return it."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)

    def complete_blocking(self, text: str, offset: int) -> Completion:
        # Every other answer ends with the model's <eom>, a token it writes too.
        ended = len(self.texts) % 2 == 0
        return Completion(
            self.texts.pop(0), None, "scripted", tokens=3, forward_passes=2, ended=ended
        )


def test_evaluation_scores_a_hang_and_a_crash_as_failures_and_carries_on() -> None:
    tests = "\nassert add(2, 3) == 5\n"
    tasks = [_task("a + b", tests) for _ in range(4)]
    engine = ScriptedEngine(["a + b", "next(x for x in iter(int, 1) if x)", "1 / 0", "a + b"])
    results = evaluate(engine, tasks, FAST, workers=2, progress=io.StringIO())  # type: ignore[arg-type]
    assert [r.passed for r in results] == [True, False, False, True]
    assert [r.detail for r in results] == ["", "timeout", "error", ""]
    summary = summarise(results)
    assert summary["pass@1"] == 50.0 and summary["exact"] == 50.0 and summary["timeouts"] == 1
    assert summary["passes_per_token"] == pytest.approx(2 / 3, abs=1e-3)
    assert summary["passes_per_token_with_eom"] == pytest.approx(8 / 14, abs=1e-3)


def test_stdin_tasks_need_every_unit_test_to_print_the_expected_output() -> None:
    document = "n = int(input())\nprint()\n"
    offset = document.index(")\n", 20)
    tests = (UnitTest("2\n", ("4",)), UnitTest("5\n", ("10", "10.0")))
    task = Task("s", "unit", document, offset, "n * 2", unit_tests=tests)
    assert check(task, "n * 2", FAST) == (True, "")
    assert check(task, "n + 2", FAST) == (False, "wrong output")
    assert check(task, "n +", FAST) == (False, "error")


def test_exact_match_ignores_line_endings_and_trailing_space() -> None:
    assert normalise("x = 1  \r\ny = 2\n\n") == normalise("x = 1\ny = 2")
    assert normalise("x = 1") != normalise("x = 2")


def test_spread_takes_tasks_from_the_whole_suite() -> None:
    tasks = [Task(str(i), "s", "", 0, "") for i in range(100)]
    picked = spread(tasks, 4)
    assert [t.task_id for t in picked] == ["0", "25", "50", "75"]
    assert spread(tasks, None) == tasks
    assert spread(tasks, 0) == []  # no tasks asked for, none given (not a ZeroDivisionError)


@pytest.mark.parametrize("suite", [s for s in SUITES if s != "safim-api"])
def test_reference_completions_pass_their_own_tests(suite: str) -> None:
    tasks = spread(load_suite(BENCHMARKS, suite), 6)
    assert tasks and all(t.executable for t in tasks)
    for task in tasks:
        assert check(task, task.reference, SandboxLimits(wall_s=20)) == (True, ""), task.task_id
        # and a wrong answer fails: the tests do look at the completed code
        assert check(task, "raise ValueError", SandboxLimits(wall_s=20))[0] is False


def test_humaneval_line_tasks_put_the_cursor_on_an_empty_line() -> None:
    task = load_suite(BENCHMARKS, "humaneval-single")[0]
    line_start = task.document.rfind("\n", 0, task.offset) + 1
    assert line_start == task.offset and task.document[task.offset] == "\n"
    assert not task.reference.endswith("\n")


def test_eval_command_writes_a_table_and_json(tmp_path: Path, capsys) -> None:
    # No --benchmarks: the suites ship in the repository, so a fresh clone can evaluate.
    out = tmp_path / "results.json"
    code = main(
        [
            "eval",
            "--suite",
            "humaneval-random",
            "--limit",
            "2",
            "--out",
            str(out),
            "--markdown",
            str(tmp_path / "table.md"),
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "| humaneval-random | 2 |" in table
    assert (tmp_path / "table.md").read_text() == table
    payload = json.loads(out.read_text())
    assert len(payload["tasks"]["humaneval-random"]) == 2
    assert payload["summary"]["humaneval-random"]["tasks"] == 2


def test_empty_baseline_scores_doing_nothing(capsys) -> None:
    code = main(
        [
            "eval",
            "--suite",
            "humaneval-single",
            "--limit",
            "3",
            "--empty-baseline",
            "--benchmarks",
            str(BENCHMARKS),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "empty answers (baseline)" in out
    row = next(line for line in out.splitlines() if line.startswith("| humaneval-single"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "3" and cells[3] == "0.0%" and cells[4] == "0.0%"  # exact, non-empty


def test_eval_command_rejects_a_missing_benchmarks_folder(tmp_path: Path, capsys) -> None:
    assert main(["eval", "--benchmarks", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err
