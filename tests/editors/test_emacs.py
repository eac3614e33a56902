"""Emacs: `emacs --batch` loads editors/emacs/fim.el, starts the real server through
eglot (`(apply #'eglot (eglot--guess-contact))`), and the ERT suite in
editors/emacs/test/ types through Emacs's command loop (`execute-kbd-macro`), waits for
the overlay and accepts it; it also checks eglot's completion-at-point."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .conftest import EDITORS, LINE, TYPED, editor_available, find_program, server_command

EMACS = os.environ.get("FIM_TEST_EMACS") or find_program("emacs")


def _has_eglot() -> bool:
    if EMACS is None:
        return False
    result = subprocess.run(
        [EMACS, "--batch", "--eval", '(kill-emacs (if (locate-library "eglot") 0 1))'],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


pytestmark = editor_available(
    [] if _has_eglot() else ["Emacs with eglot (apt-get install emacs-nox elpa-eglot)"]
)


def test_fim_el_in_emacs(workspace: Path, expected_completion: str) -> None:
    env = {
        **os.environ,
        "HOME": str(workspace.parent),  # no user configuration, no writes to the real home
        "FIM_TEST_SERVER": server_command()[0],
        "FIM_TEST_FILE": str(workspace / "mean.py"),
        "FIM_TEST_LINE": str(LINE),
        "FIM_TEST_TYPED": TYPED,
        "FIM_TEST_EXPECTED": expected_completion,
    }
    result = subprocess.run(
        [
            EMACS,
            "--batch",
            "-L",
            str(EDITORS / "emacs"),
            "-l",
            str(EDITORS / "emacs" / "test" / "fim-e2e-test.el"),
            "-f",
            "ert-run-tests-batch-and-exit",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Ran 3 tests, 3 results as expected, 0 unexpected" in output, output
