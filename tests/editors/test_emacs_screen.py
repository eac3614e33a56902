"""Emacs as a person sees it: `emacs -nw` with examples/editors/init.el (paths filled in)
as ~/.emacs.d/init.el, in a real terminal (tmux), keys typed one at a time at a person's
pace, and the screen read back with its faces: the ghost text beside a bracket, C-e
still moving while a suggestion is shown, the mode line's `fim:loading` then
`fim:ready`, text typed before eglot connected getting its suggestion, a slow backend's
`fim:working` then its answer, and a backend failure named in the user's option."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from remote_servers import Plan, WireServer

from .conftest import BRACKET_LINE, LINE, LOAD_GATE, TYPED, editor_available
from .terminal import Screen, Style, Terminal, environment, keep_screen, tmux_missing
from .test_emacs import EMACS, EXAMPLES, _emacs_has, user_config

pytestmark = editor_available(
    ([] if _emacs_has("eglot") else ["Emacs with eglot (apt-get install emacs-nox elpa-eglot)"])
    + tmux_missing()
)

MODEL_TIMEOUT_S = 180.0
SHOW_TIMEOUT_S = 60.0
# The 256-colour greys (the grey ramp, and the cube's r = g = b): fim-ghost-face inherits
# `shadow`, grey50 or grey70 by the terminal's background.
GREYS = {str(i) for i in range(232, 256)} | {"8", "7", "59", "102", "145", "188", "244"}


def is_ghost(style: Style) -> bool:
    """fim-ghost-face: grey italic, and nothing of real code's faces."""
    return (
        style.fg in GREYS and style.italic and not (style.bold or style.underline or style.reverse)
    )


def mode_line(screen: Screen) -> str:
    """The selected window's mode line (`-UU-:**--F1  mean.py ...`): the last one shown,
    above the echo area (which may take more than one row)."""
    rows = [row for row in screen.rows if re.match(r"-[-A-Z%*:]+F1 ", row)]
    return rows[-1] if rows else ""


@pytest.fixture
def start_emacs(workspace: Path, tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    """Emacs in a terminal with the user's init.el, visiting a file of the workspace at a
    line (the end of it: C-e, with nothing shown yet)."""
    terminals: list[Terminal] = []
    sockets = Path(tempfile.mkdtemp(prefix="fim-tmux-"))  # a Unix socket name is short

    def start(
        file: str,
        line: int,
        options: dict[str, str | int] | None = None,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> Terminal:
        home = tmp_path / f"home{len(terminals)}"
        user_config(EXAMPLES / "init.el", home, options)
        # No native compilation of the packages in the background (minutes of CPU on
        # two cores, and its warnings pop up a window).
        (home / ".emacs.d" / "early-init.el").write_text(
            "(setq native-comp-deferred-compilation nil"
            " native-comp-async-report-warnings-errors 'silent)\n",
            encoding="utf-8",
        )
        terminal = Terminal(sockets / f"t{len(terminals)}")
        terminals.append(terminal)
        terminal.start([str(EMACS), "-nw", f"+{line}", file], workspace, environment(home, env))
        if wait_ready:
            terminal.wait(lambda s: "fim:ready" in mode_line(s), MODEL_TIMEOUT_S, "fim:ready")
        terminal.key("C-e")
        return terminal

    try:
        yield start
    finally:
        for terminal in terminals:
            terminal.close()
        for socket in sockets.iterdir():
            socket.unlink()
        sockets.rmdir()


def gate_env(**gates: Path) -> dict[str, str]:
    """The server's Python waits for these files (load_gate/sitecustomize.py)."""
    return {"PYTHONPATH": str(LOAD_GATE), **{name: str(path) for name, path in gates.items()}}


def test_bracket_typed_key_by_key_shows_ghost_text_and_c_e_still_moves(
    start_emacs: Callable[..., Terminal], bracket_completion: tuple[str, int]
) -> None:
    completion, replace = bracket_completion
    emacs = start_emacs("join.py", BRACKET_LINE)
    # `(`, the `)` an auto-pairing mode would add, C-b into them: a key at a time.
    emacs.type("()")
    emacs.key("C-b")
    assert completion.endswith(")") and replace == 1, (completion, replace)
    shown = completion[:-1]
    line = "path = os.path.join(" + shown + ")"
    screen = emacs.wait(lambda s: s if s.find(line) else None, SHOW_TIMEOUT_S, line)
    keep_screen("emacs-bracket.txt", screen)
    row, col = screen.find(line)  # type: ignore[misc]
    at = col + len("path = os.path.join(")
    ghost = screen.style_of(row, at, len(shown))
    assert len(ghost) == 1 and is_ghost(ghost.pop()), (screen.raw, screen.styles[row][at])
    assert emacs.cursor() == (at, row)
    # C-e goes to the end of the line, the suggestion shown or not: nothing is inserted.
    emacs.key("C-e")
    typed = "path = os.path.join()"
    emacs.wait(lambda s: s.rows[row].startswith(typed) and s, 10, "the ghost text to go")
    emacs.wait(lambda s: emacs.cursor() == (col + len(typed), row), 5, "point at the end")
    assert "fim:ready" in mode_line(emacs.screen())


def test_mode_line_says_loading_then_ready(
    start_emacs: Callable[..., Terminal], tmp_path: Path
) -> None:
    gate = tmp_path / "load-the-model"
    emacs = start_emacs("mean.py", LINE, env=gate_env(FIM_TEST_LOAD_GATE=gate), wait_ready=False)
    emacs.wait(lambda s: "fim:loading" in mode_line(s), 60, "fim:loading")
    gate.touch()
    emacs.wait(lambda s: "fim:ready" in mode_line(s), MODEL_TIMEOUT_S, "fim:ready")


def test_text_typed_before_eglot_connects_gets_its_suggestion(
    start_emacs: Callable[..., Terminal], tmp_path: Path, expected_completion: str
) -> None:
    # The server is slow to start: the user types before eglot has connected.
    gate = tmp_path / "start-the-server"
    emacs = start_emacs("mean.py", LINE, env=gate_env(FIM_TEST_START_GATE=gate), wait_ready=False)
    emacs.type(TYPED)
    typed = "path = os.path." + TYPED
    emacs.wait(lambda s: s.find(typed), 30, "the typed text")
    assert "fim:" not in mode_line(emacs.screen()), "eglot connected before the test typed"
    gate.touch()
    # No key is pressed: the suggestion for what was typed comes once eglot connects.
    first = expected_completion.split("\n")[0]
    emacs.wait(lambda s: s.find(typed + first), MODEL_TIMEOUT_S, "the suggestion")


@pytest.fixture
def wire() -> Iterator[WireServer]:
    server = WireServer(key=None)
    try:
        yield server
    finally:
        server.close()


def remote(wire: WireServer, **options: str | int) -> dict[str, str | int]:
    """The example's remote settings pointed at `wire` as a llama.cpp server."""
    return {"fim-backend": "llama.cpp", "fim-endpoint": wire.url, **options}


def test_a_slow_backend_shows_working_then_its_answer(
    start_emacs: Callable[..., Terminal], wire: WireServer
) -> None:
    wire.default = Plan(pieces=["(path)"], first_byte_delay_s=2.0)  # 2 s for every answer
    emacs = start_emacs("mean.py", LINE, options=remote(wire))
    emacs.type(TYPED)
    # The user stops typing: the mode line says the model is working, then the answer
    # comes where point still is.
    emacs.wait(lambda s: "fim:working" in mode_line(s), 5, "fim:working")
    line = "path = os.path." + TYPED + "(path)"
    screen = emacs.wait(lambda s: s if s.find(line) else None, 10, "the slow answer")
    row, col = screen.find(line)  # type: ignore[misc]
    (ghost,) = screen.style_of(row, col + len(line) - len("(path)"), len("(path)"))
    assert is_ghost(ghost), screen.raw
    assert "fim:ready" in mode_line(screen)


def test_a_backend_failure_names_the_option_and_typing_goes_on(
    start_emacs: Callable[..., Terminal], wire: WireServer
) -> None:
    wire.default = Plan(pieces=["(path)"], first_byte_delay_s=3.0)  # slower than the timeout
    emacs = start_emacs("mean.py", LINE, options=remote(wire, **{"fim-timeout-ms": 300}))
    emacs.type(TYPED)
    # The message (in the echo area, maybe over two lines) names the option the user sets.
    screen = emacs.wait(
        lambda s: s if "(fim-timeout-ms)" in s.unwrapped() else None, 20, "the failure message"
    )
    keep_screen("emacs-failure.txt", screen)
    assert "300 ms" in screen.unwrapped() and "timeoutMs" not in screen.unwrapped()
    emacs.type("_more")
    line = "path = os.path." + TYPED + "_more"
    emacs.wait(lambda s: s.find(line), 10, json.dumps(line))
