"""The typing replay's own rules (benchmarks/typing_replay.py): what a user would accept,
which lines are typed, benchmark folders refused, and the gate curve from recorded
suggestions. The replay itself drives the real server; these check its bookkeeping."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fim_model.sources import SourceRoot

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "typing_replay.py"
_SPEC = importlib.util.spec_from_file_location("typing_replay", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
replay = importlib.util.module_from_spec(_SPEC)
sys.modules["typing_replay"] = replay  # dataclasses look their module up by name
_SPEC.loader.exec_module(replay)


@pytest.mark.parametrize(
    ("suggestion", "wanted", "taken", "full"),
    [
        ("(values)", "(values)", 8, True),  # exactly what comes next
        ("len(", "len(values)", 4, True),  # a prefix of it: all of it is right
        ("self.name = name", "self.name = other", 11, False),  # the words up to `=`
        ("foo(bar)", "foo(baz)", 4, False),  # `foo`, then `(`: punctuation is a word
        ("x = 1\ny = 2", "x = 1", 5, False),  # a block: its first line, word by word
        ("total", "count", 0, False),
        ("", "x", 0, False),
    ],
)
def test_accepted_chars(suggestion: str, wanted: str, taken: int, full: bool) -> None:
    assert replay.accepted_chars(suggestion, wanted) == (taken, full)


def test_only_code_lines_are_typed() -> None:
    text = (
        '"""A module docstring line."""\n'
        "# a comment line here\n"
        "import os\n"
        "def f(a, b):\n"
        '    """Docstring of f."""\n'
        "    return a + b\n"
        "x = 1\n"  # too short to be worth typing
        "café = 'crème brûlée'\n"  # not ASCII
    )
    assert replay.typable_lines(text, "python") == [2, 3, 5]


def test_consecutive_rows_are_a_run_of_typable_lines_and_anywhere_rows_are_not() -> None:
    text = "".join(f"value_{i} = compute({i})\n# note {i}\n" for i in range(40))
    file = replay.HeldOutFile("outside/x.py", "python", text)
    typable = replay.typable_lines(text, "python")
    for seed in range(5):
        rows = replay.chosen_rows(file, 6, seed, consecutive=True)
        start = typable.index(rows[0])
        assert rows == typable[start : start + 6]
    anywhere = [replay.chosen_rows(file, 6, seed) for seed in range(5)]
    assert all(len(rows) == 6 and rows == sorted(rows) for rows in anywhere)
    assert any(rows != typable[typable.index(rows[0]) :][:6] for rows in anywhere)


def test_an_emptied_line_keeps_its_indentation_and_the_rest_of_the_file() -> None:
    file = replay.HeldOutFile("outside/x.py", "python", "def f():\n    return 1\nf()\n")
    document, offset, reference = replay.emptied_line(file, 1)
    assert document == "def f():\n    \nf()\n"
    assert offset == len("def f():\n    ")
    assert reference == "return 1"


def test_a_source_root_in_a_benchmarks_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "benchmarks" / "data"
    folder.mkdir(parents=True)
    root = SourceRoot("bench", folder, frozenset({"python"}))
    with pytest.raises(SystemExit, match="benchmark folder"):
        replay.held_out_files("python", 1, 1, 0, [root])


def _keystroke(confidence: float | None, accepted: int) -> object:
    return replay.Keystroke(
        language="python",
        path="p/x.py",
        row=0,
        column=0,
        latency_ms=1.0,
        suggestion="x" * max(accepted, 1),
        confidence=confidence,
        model_confidence=confidence,
        accepted=accepted,
        full=bool(accepted),
        model_runs=1,
        cached=False,
        gated=False,
    )


def test_the_curve_and_the_chosen_gate() -> None:
    run = replay.Replay(gate=0.0, server="test")
    run.typed_chars = {"python": 100}
    run.keystrokes = [
        _keystroke(0.9, 5),
        _keystroke(0.6, 3),
        _keystroke(0.3, 0),
        _keystroke(0.2, 2),
        _keystroke(0.1, 0),
        _keystroke(None, 0),
    ]
    curve = replay.gate_curve(run)
    assert curve[0] == {
        "gate": 0.0,
        "shown": 6,
        "accepted": 3,
        "acceptance_rate": 0.5,
        "chars_saved": 0.1,
    }
    at_half = curve[50]
    assert (at_half["shown"], at_half["accepted"], at_half["chars_saved"]) == (2, 2, 0.08)
    # Both targets (25% accepted, 4% of characters) are met from gate 0 on: the lowest
    # gate keeps the most characters.
    gate, why = replay.choose_gate(curve)
    assert gate == 0.0 and "meets both targets" in why


def test_the_outside_sets_are_disjoint_projects_covering_every_language() -> None:
    languages = list(replay.DEFAULT_LANGUAGES)
    projects = {}
    for which in replay.OUTSIDE_SETS:
        files = replay.outside_files(which, languages, 4)
        groups = {replay.report_group(f.language) for f in files}
        assert groups == {"python", "javascript/typescript", "go", "rust", "java", "c/cpp"}
        projects[which] = {f.path.split("/")[2] for f in files}
        for project in projects[which]:
            folder = replay.OUTSIDE / which / project
            assert any(p.name.lower().startswith("licen") for p in folder.iterdir()), project
    assert not projects["tune"] & projects["check"]
    sources = (replay.OUTSIDE / "SOURCES.md").read_text()
    for which in replay.OUTSIDE_SETS:
        for f in replay.outside_files(which, languages, 0):
            assert f.path.split("/", 3)[3] in sources, f.path  # its repository and commit


def test_whole_and_word_accepts_are_counted_apart() -> None:
    whole = _keystroke(0.9, 5)
    word = replace(_keystroke(0.9, 3), full=False)
    shown = _keystroke(0.9, 0)
    s = replay.summarise([whole, word, shown], 20)
    assert (s["accepted"], s["accepted_full"], s["accepted_partial"]) == (2, 1, 1)
    assert (s["chars_by_full"], s["chars_by_partial"], s["chars_by_completion"]) == (5, 3, 8)
    assert s["acceptance_rate"] == pytest.approx(2 / 3)
    assert s["full_acceptance_rate"] == pytest.approx(1 / 3)


def test_without_a_gate_meeting_both_targets_the_best_acceptance_keeping_characters() -> None:
    run = replay.Replay(gate=0.0, server="test")
    run.typed_chars = {"python": 1000}
    # Acceptance rises with the gate, characters fall: 30% is only met below 4% of them.
    run.keystrokes = [_keystroke(0.9, 30), _keystroke(0.8, 0), _keystroke(0.5, 20)]
    run.keystrokes += [_keystroke(0.5, 0) for _ in range(4)]
    run.keystrokes += [_keystroke(0.2, 0), _keystroke(0.2, 0)]
    curve = replay.gate_curve(run)
    assert curve[60]["acceptance_rate"] == 0.5 and curve[60]["chars_saved"] == 0.03
    gate, why = replay.choose_gate(curve)
    # From 0.21 to 0.5: 2 of 7 accepted (28.6%) and 5% of the characters; below, 2 of 9.
    assert gate == 0.21 and "best acceptance rate" in why


def test_a_write_through_run_starts_without_its_lines_and_writing_them_gives_the_file() -> None:
    text = (
        "def total(items):\n"
        "    result = 0\n"
        "    for item in items:\n"
        "\n"
        "        # the price with tax\n"
        "        result += item.price * 1.2\n"
        "    return result\n"
        "print(total([]))\n"
    )
    file = replay.HeldOutFile("outside/x.py", "python", text)
    rows = [1, 2, 5]  # typable; the blank and the comment line between are pasted
    start, plan = replay.write_through_plan(file, rows)
    assert start == "def total(items):\n    \n    return result\nprint(total([]))\n"
    assert [line.row for line in plan] == [1, 2, 3, 4, 5]
    assert [line.typed for line in plan] == [True, True, False, False, True]
    # Writing the plan line by line, as the replay's edits do, restores the file; the
    # code after the run stays below the cursor throughout.
    lines = start.split("\n")
    for line in plan:
        row = lines[line.row]
        assert row == line.indent
        assert "\n".join(lines[line.row + 1 :]) == "    return result\nprint(total([]))\n"
        lines[line.row] = row + line.body
        if line.next_indent is not None:
            lines.insert(line.row + 1, line.next_indent)
    assert "\n".join(lines) == text


def test_a_write_through_run_ending_inside_a_statement_is_widened_to_its_end() -> None:
    # Rows 1-2 end inside the `if (...)` condition: the code below the cursor would start
    # with `and b`, which no user writing new lines ever has below them (and which turns
    # every correct completion into a syntax change there).
    text = (
        "def f(a, b):\n"
        "    total = a + b\n"
        "    if (\n"
        "        a > 0\n"
        "        and b > 0\n"
        "    ):\n"
        "        return total\n"
        "    return 0\n"
    )
    file = replay.HeldOutFile("outside/x.py", "python", text)
    start, plan = replay.write_through_plan(file, [1, 2])
    assert [line.row for line in plan] == [1, 2, 3, 4, 5]
    assert start == "def f(a, b):\n    \n        return total\n    return 0\n"
    # A run that already ends between statements stays as it is.
    start, plan = replay.write_through_plan(file, [1])
    assert [line.row for line in plan] == [1]
