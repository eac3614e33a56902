"""The copy-paste configurations in examples/editors/ name only settings the editor
packages define, and parse in their editors' languages."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

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
    for example, marker in [("init.lua", "require('fim').setup({"), ("lazy.lua", "opts = {")]:
        text = (EXAMPLES / example).read_text(encoding="utf-8")
        opts = text.split(marker, 1)[1]
        used = set(re.findall(r"^\s+(?:-- )?(\w+) =", opts, flags=re.M))
        assert used and used <= known, (example, used - known)


def _code_blocks(markdown: Path, language: str) -> list[str]:
    """The fenced blocks of one language in a markdown file, indentation removed."""
    text = markdown.read_text(encoding="utf-8")
    blocks = re.findall(rf"^( *)```{language}\n(.*?)^\1```$", text, flags=re.M | re.S)
    return [textwrap.dedent(body).strip() for _, body in blocks]


@pytest.mark.parametrize(
    ("language", "examples", "readmes"),
    [
        ("lua", ["init.lua", "lazy.lua"], ["README.md", "editors/neovim/README.md"]),
        ("elisp", ["init.el", "init-use-package.el"], ["README.md", "editors/emacs/README.md"]),
    ],
)
def test_readme_snippets_are_the_examples_the_editor_tests_load(
    language: str, examples: list[str], readmes: list[str]
) -> None:
    files = {name: (EXAMPLES / name).read_text(encoding="utf-8").strip() for name in examples}
    shown: set[str] = set()
    for readme in readmes:
        blocks = _code_blocks(REPO / readme, language)
        assert blocks, f"{readme} shows no {language} configuration"
        for block in blocks:
            matches = [name for name, text in files.items() if text == block]
            assert matches, f"a {language} snippet in {readme} is none of {examples}:\n{block}"
            shown.update(matches)
    assert shown == set(examples), f"not shown in a README: {set(examples) - shown}"


NVIM = find_program("nvim", BIN / "nvim")


@pytest.mark.skipif(NVIM is None, reason="Neovim is not installed")
@pytest.mark.parametrize("example", ["init.lua", "lazy.lua"])
def test_init_lua_parses(example: str) -> None:
    path = EXAMPLES / example
    result = subprocess.run(
        [NVIM, "--clean", "--headless", "-l", "-"],
        input=f"assert(loadfile({json.dumps(str(path))}))",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(NVIM is None, reason="Neovim is not installed")
def test_lazy_spec_sets_the_plugin_up(tmp_path: Path) -> None:
    """examples/editors/lazy.lua with its paths filled in: `dir` is the plugin, and `opts`
    given to the plugin's setup (what lazy.nvim does with them) configure the server."""
    text = (EXAMPLES / "lazy.lua").read_text(encoding="utf-8")
    text = text.replace("/path/to/fim-server/.venv/bin/fim-server", "/opt/fim/bin/fim-server")
    text = text.replace("/path/to/fim-server", str(REPO))
    spec = tmp_path / "fim.lua"
    spec.write_text(text, encoding="utf-8")
    program = f"""
local spec = dofile({json.dumps(str(spec))})
assert(vim.fn.filereadable(spec.dir .. '/lua/fim/init.lua') == 1, spec.dir)
vim.opt.runtimepath:append(spec.dir)
require(spec.name).setup(spec.opts)
io.write(vim.json.encode(require('fim').command()))
"""
    result = subprocess.run(
        [NVIM, "--clean", "--headless", "-l", "-"],
        input=program,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["/opt/fim/bin/fim-server", "--stdio"]


@pytest.mark.skipif(find_program("emacs") is None, reason="Emacs is not installed")
def test_init_el_names_fim_options() -> None:
    """The options the Emacs configurations set are fim.el's (init.el: setq, the
    use-package one: :custom), and both set the same ones."""
    emacs = find_program("emacs")
    fim = EDITORS / "emacs" / "fim.el"
    names = {}
    for example in ["init.el", "init-use-package.el"]:
        path = EXAMPLES / example
        program = f"""
(progn
  (load {json.dumps(str(fim))} nil t)
  (with-temp-buffer
    (insert-file-contents {json.dumps(str(path))})
    (let (form names)
      (while (setq form (ignore-errors (read (current-buffer))))
        (when (eq (car form) 'setq)
          (push (cadr form) names))
        (when (and (eq (car form) 'use-package) (eq (cadr form) 'fim))
          (let ((custom (cdr (memq :custom form))))
            (while (and custom (consp (car custom)))
              (push (caar custom) names)
              (setq custom (cdr custom))))))
      (unless names (error "no fim options"))
      (dolist (name names)
        (unless (custom-variable-p name) (error "not a fim option: %s" name)))
      (princ (mapconcat #'symbol-name (sort names #'string<) " ")))))
"""
        result = subprocess.run(
            [emacs, "--batch", "--eval", program],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        names[example] = result.stdout.split()
    assert (
        names["init.el"]
        == names["init-use-package.el"]
        == [
            "fim-debounce-ms",
            "fim-server-command",
        ]
    )


REMOTE_DOC = REPO / "docs" / "remote.md"
SERVER_PLACEHOLDER = "/path/to/fim-server/.venv/bin/fim-server"


@pytest.mark.skipif(NVIM is None, reason="Neovim is not installed")
def test_remote_doc_neovim_snippet_starts_the_server_pasted_alone(tmp_path: Path) -> None:
    """docs/remote.md's Neovim snippet, pasted alone into init.lua (its path filled in):
    the plugin's command is that fim-server (fim-server is seldom on PATH), with its
    backend."""
    (block,) = _code_blocks(REMOTE_DOC, "lua")
    assert SERVER_PLACEHOLDER in block, "the snippet does not say which fim-server to run"
    init = tmp_path / "init.lua"
    init.write_text(block.replace(SERVER_PLACEHOLDER, "/opt/fim/bin/fim-server"), "utf-8")
    program = f"""
vim.opt.runtimepath:append({json.dumps(str(EDITORS / "neovim"))})
dofile({json.dumps(str(init))})
local fim = require('fim')
io.write(vim.json.encode({{ fim.command(), fim.config.backend }}))
"""
    result = subprocess.run(
        [NVIM, "--clean", "--headless", "-l", "-"],
        input=program,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [["/opt/fim/bin/fim-server", "--stdio"], "mercury"]


@pytest.mark.skipif(find_program("emacs") is None, reason="Emacs is not installed")
def test_remote_doc_emacs_snippet_names_the_server_pasted_alone() -> None:
    (block,) = _code_blocks(REMOTE_DOC, "elisp")
    assert SERVER_PLACEHOLDER in block, "the snippet does not say which fim-server to run"
    program = f"""
(progn
  (load {json.dumps(str(EDITORS / "emacs" / "fim.el"))} nil t)
  (with-temp-buffer
    (insert {json.dumps(block)})
    (goto-char (point-min))
    (let (form)
      (while (setq form (ignore-errors (read (current-buffer))))
        (eval form t))))
  (princ (format "%s %s" (car fim-server-command) fim-backend)))
"""
    result = subprocess.run(
        [find_program("emacs"), "--batch", "--eval", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == SERVER_PLACEHOLDER + " mercury"
