"""The benchmarks' results writer: the figures and the command that measured them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "results_file.py"
_SPEC = importlib.util.spec_from_file_location("results_file", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
results_file = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(results_file)


def test_results_are_written_with_the_command_that_measured_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sys, "argv", ["/x/benchmarks/bench_real.py", "--limit", "3", "--suite", "a b"]
    )
    out = tmp_path / "deep" / "run"
    results_file.write_results(out, {"exact": 2}, "| a |\n", "A note.")
    assert json.loads((tmp_path / "deep" / "run.json").read_text()) == {"exact": 2}
    md = (tmp_path / "deep" / "run.md").read_text()
    assert md.startswith("`benchmarks/bench_real.py --limit 3 --suite 'a b'`, ")
    assert md.endswith("A note.\n\n| a |\n")
