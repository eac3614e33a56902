"""Emacs: `emacs --batch` loads examples/editors/init.el (the README's configuration, with its
paths filled in as a user would: it runs `fim-setup`), and the ERT suite in
editors/emacs/test/ visits the files with C-x C-f, so eglot's hooks start the real server
and turn on fim-mode, then types through Emacs's command loop (`execute-kbd-macro`),
waits for the overlay, cycles through several suggestions (M-] / M-[) and accepts; it
also runs eglot's completion-at-point (C-M-i).
The use-package variant of the configuration (Emacs 29+) is loaded on its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import (
    BRACKET_LINE,
    CANDIDATES,
    EDITORS,
    LINE,
    LOAD_GATE,
    REPO,
    TYPED,
    editor_available,
    find_program,
    next_line,
    next_word,
    server_command,
)

EMACS = os.environ.get("FIM_TEST_EMACS") or find_program("emacs")
EXAMPLES = REPO / "examples" / "editors"
ERT_TESTS = 9


def _emacs_has(library: str) -> bool:
    if EMACS is None:
        return False
    result = subprocess.run(
        [EMACS, "--batch", "--eval", f'(kill-emacs (if (locate-library "{library}") 0 1))'],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


pytestmark = editor_available(
    [] if _emacs_has("eglot") else ["Emacs with eglot (apt-get install emacs-nox elpa-eglot)"]
)


def user_config(example: Path, home: Path, options: dict[str, str | int] | None = None) -> Path:
    """An example configuration with its paths filled in, as ~/.emacs.d/init.el (and
    `options` set, as a user would uncomment their lines: each is one of the example's
    commented `;; (setq fim-NAME VALUE)`)."""
    text = example.read_text(encoding="utf-8")
    server = "/path/to/fim-server/.venv/bin/fim-server"
    assert server in text and "/path/to/fim-server/editors/emacs" in text
    text = text.replace(server, server_command()[0]).replace("/path/to/fim-server", str(REPO))
    for name, value in (options or {}).items():
        commented = re.compile(rf"^;; \(setq {name} [^)]*\)", re.M)
        assert commented.search(text), f"the example has no commented {name} setting"
        setting = f"(setq {name} {json.dumps(value)})"  # a JSON string or number is Elisp's
        text = commented.sub(lambda _, setting=setting: setting, text, count=1)
    path = home / ".emacs.d" / "init.el"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_fim_el_in_emacs(
    workspace: Path,
    tmp_path: Path,
    expected_completion: str,
    bracket_completion: tuple[str, int],
    candidate_completions: list[str],
) -> None:
    home = workspace.parent
    init = user_config(EXAMPLES / "init.el", home)
    word = next_word(expected_completion)
    bracket, replace = bracket_completion
    env = {
        **os.environ,
        "HOME": str(home),  # no user configuration but init.el, no writes to the real home
        "FIM_TEST_LINE": str(LINE),
        "FIM_TEST_TYPED": TYPED,
        "FIM_TEST_EXPECTED": expected_completion,
        "FIM_TEST_WORD": word,
        "FIM_TEST_WORD_LINE": next_line(expected_completion[len(word) :]),
        "FIM_TEST_CANDIDATES": str(CANDIDATES),
        "FIM_TEST_CANDIDATE_TEXTS": json.dumps(candidate_completions),
        "FIM_TEST_BRACKET_LINE": str(BRACKET_LINE),
        "FIM_TEST_BRACKET": bracket,
        "FIM_TEST_BRACKET_REPLACE": str(replace),
        "FIM_TEST_GATE_PYTHONPATH": os.pathsep.join(
            [str(LOAD_GATE), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "FIM_TEST_GATE": str(tmp_path / "load-the-model"),
    }
    result = subprocess.run(
        [
            EMACS,
            "--batch",
            "-l",
            str(init),
            "-l",
            str(EDITORS / "emacs" / "test" / "fim-e2e-test.el"),
            "-f",
            "ert-run-tests-batch-and-exit",
        ],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    expected = f"Ran {ERT_TESTS} tests, {ERT_TESTS} results as expected, 0 unexpected"
    assert expected in output, output


HAS_USE_PACKAGE = _emacs_has("use-package")


@pytest.mark.skipif(
    not HAS_USE_PACKAGE and os.environ.get("FIM_EDITOR_TESTS") != "require",
    reason="not installed: use-package (built in from Emacs 29; apt-get install elpa-use-package)",
)
def test_use_package_configuration_sets_fim_up(tmp_path: Path) -> None:
    """examples/editors/init-use-package.el, loaded as init.el: the same options and hooks as
    init.el (which the test above runs)."""
    assert HAS_USE_PACKAGE, "use-package is missing (apt-get install elpa-use-package)"
    init = user_config(EXAMPLES / "init-use-package.el", tmp_path)
    server = json.dumps(server_command()[0])  # a JSON string of a path is an Elisp one
    check = f"""
(progn
  (unless (equal fim-server-command (list {server}))
    (error "fim-server-command is %S" fim-server-command))
  (unless (= fim-debounce-ms 75) (error "fim-debounce-ms is %S" fim-debounce-ms))
  (unless (rassq #'fim-server-contact eglot-server-programs)
    (error "fim-server is not registered with eglot"))
  (unless (memq #'eglot-ensure python-mode-hook) (error "no eglot-ensure in python-mode"))
  (unless (memq #'fim--maybe-enable eglot-managed-mode-hook) (error "no fim-mode hook"))
  (princ "configured"))
"""
    result = subprocess.run(
        # --batch skips the startup's package activation (autoloads such as use-package's
        # on Emacs 28): do it first, as a normal start does before the user's init.el.
        [EMACS, "--batch", "-f", "package-activate-all", "-l", str(init), "--eval", check],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "configured"
