"""The copy-paste configurations in examples/editors/ name only settings the editor
packages define, and parse in their editors' languages."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from .conftest import BIN, EDITORS, REPO, find_program

EXAMPLES = REPO / "examples" / "editors"


def test_vscode_settings_are_the_extensions() -> None:
    settings = json.loads((EXAMPLES / "vscode-settings.json").read_text(encoding="utf-8"))
    manifest = json.loads((EDITORS / "vscode" / "package.json").read_text(encoding="utf-8"))
    properties = manifest["contributes"]["configuration"]["properties"]
    fim_keys = {key for key in settings if key.startswith("fim.")}
    assert fim_keys == set(properties), "the example should show every fim.* setting"
    for key in fim_keys:
        assert (
            settings[key] is None
            or properties[key]["default"] is None
            or isinstance(settings[key], type(properties[key]["default"]))
        ), key


def test_init_lua_options_are_the_plugins() -> None:
    source = (EDITORS / "neovim" / "lua" / "fim" / "init.lua").read_text(encoding="utf-8")
    defaults = source.split("M.defaults = {", 1)[1].split("\n}\n", 1)[0]
    known = set(re.findall(r"^\s+(\w+) =", defaults, flags=re.M))
    example = (EXAMPLES / "init.lua").read_text(encoding="utf-8")
    opts = example.split("opts = {", 1)[1]
    used = set(re.findall(r"^\s+(?:-- )?(\w+) =", opts, flags=re.M))
    assert used and used <= known, used - known


@pytest.mark.skipif(find_program("nvim", BIN / "nvim") is None, reason="Neovim is not installed")
def test_init_lua_parses() -> None:
    nvim = find_program("nvim", BIN / "nvim")
    path = EXAMPLES / "init.lua"
    result = subprocess.run(
        [nvim, "--clean", "--headless", "-l", "-"],
        input=f"assert(loadfile({json.dumps(str(path))}))",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(find_program("emacs") is None, reason="Emacs is not installed")
def test_init_el_reads_and_names_fim_options() -> None:
    emacs = find_program("emacs")
    path = EXAMPLES / "init.el"
    fim = EDITORS / "emacs" / "fim.el"
    program = f"""
(progn
  (load {json.dumps(str(fim))} nil t)
  (with-temp-buffer
    (insert-file-contents {json.dumps(str(path))})
    (let (form names)
      (while (setq form (ignore-errors (read (current-buffer))))
        (when (and (eq (car form) 'use-package) (eq (cadr form) 'fim))
          (let ((custom (cdr (memq :custom form))))
            (while (and custom (consp (car custom)))
              (push (caar custom) names)
              (setq custom (cdr custom))))))
      (unless names (error "no :custom options for fim"))
      (dolist (name names)
        (unless (custom-variable-p name) (error "not a fim option: %s" name)))
      (princ (format "%d options" (length names))))))
"""
    result = subprocess.run(
        [emacs, "--batch", "--eval", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2 options"
