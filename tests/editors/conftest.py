"""Shared setup of the editor tests: the document typed into each editor and the
completion the server itself gives there, so no test hard-codes model text."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EDITORS = REPO / "editors"
BIN = Path(sys.executable).parent

# The file opened in the editor; the test types TYPED at the end of its last line. There
# the shipped model completes the line (with "(values)"), and none of the completions
# shown while TYPED is typed starts with its next character, so what the editor shows at
# the end comes from the model, not from typing through an earlier completion. TYPED has
# no brackets, which editors would close by themselves.
BEFORE = "def mean(values):\n    total = sum(values)\n    return total / \n"
TYPED = "len"
AFTER = BEFORE.replace("return total / \n", "return total / " + TYPED + "\n")
LINE = 3  # 1-based line of the cursor
COL = len("    return total / " + TYPED) + 1  # 1-based column after the typed text


def editor_available(missing: list[str]) -> pytest.MarkDecorator:
    """Skip a test module whose editor is not installed here, with the reason; where
    FIM_EDITOR_TESTS=require (CI, which installs them all) a missing editor is an error."""
    if missing and os.environ.get("FIM_EDITOR_TESTS") == "require":
        pytest.fail("editor tests required but missing: " + "; ".join(missing), pytrace=False)
    return pytest.mark.skipif(bool(missing), reason="not installed: " + "; ".join(missing))


def server_command() -> list[str]:
    """How the editors start the server under test: this environment's fim-server."""
    script = BIN / "fim-server"
    if not script.exists():
        pytest.fail(f"{script} is missing: install the package with pip install -e .")
    return [str(script)]


def find_program(name: str, *candidates: Path) -> str | None:
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return shutil.which(name)


@pytest.fixture(scope="session")
def expected_completion(tmp_path_factory: pytest.TempPathFactory) -> str:
    """What `fim-server complete` prints for AFTER at the cursor: the text every editor
    must show as ghost text and insert on accept."""
    folder = tmp_path_factory.mktemp("expected")
    path = folder / "mean.py"
    path.write_text(AFTER, encoding="utf-8")
    result = subprocess.run(
        [*server_command(), "complete", f"{path}:{LINE}:{COL}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout.removesuffix("\n")
    if not text:
        pytest.fail(
            "the model gives no completion for the editor tests' document "
            f"({result.stderr.strip()}); pick a document where it does"
        )
    return text


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A project folder holding the file to edit (BEFORE)."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "mean.py").write_text(BEFORE, encoding="utf-8")
    return folder
