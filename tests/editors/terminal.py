"""A real terminal for the editor tests that look at the screen: an editor runs in tmux
(its own server on a private socket, no user configuration), keys are sent one at a
time at a person's pace, and the screen is read back with its colours and attributes
(`tmux capture-pane -e`, whose SGR escapes are parsed into cells here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import pytest

TMUX = shutil.which("tmux")
WIDTH, HEIGHT = 80, 16
# Between two keys typed by a person (about 100 words a minute), and more than the
# plugins' 75 ms debounce: each key may send its own request, as when a person types.
KEY_INTERVAL_S = 0.15

T = TypeVar("T")


@dataclass(frozen=True)
class Style:
    """What a cell looks like: colours as the terminal got them ('244': 256-colour
    index, '#808080': true colour, '1'..'16': the basic ones, None: default)."""

    fg: str | None = None
    bg: str | None = None
    bold: bool = False
    italic: bool = False
    underline: bool = False
    reverse: bool = False
    strike: bool = False


@dataclass
class Screen:
    """The visible screen: per row, its text and each character's style."""

    raw: str  # what capture-pane gave, escapes included (for reports)
    rows: list[str] = field(default_factory=list)
    styles: list[list[Style]] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.rows)

    def find(self, text: str) -> tuple[int, int] | None:
        """Row and column of the first place `text` is shown, or None."""
        for row, line in enumerate(self.rows):
            col = line.find(text)
            if col >= 0:
                return row, col
        return None

    def style_of(self, row: int, col: int, length: int) -> set[Style]:
        """The styles of `length` cells from (row, col)."""
        return set(self.styles[row][col : col + length])

    def last_row(self) -> str:
        return self.rows[-1] if self.rows else ""

    def unwrapped(self) -> str:
        """The text with the lines an editor continued (a trailing backslash: Emacs on a
        terminal) joined again."""
        return re.sub(r"\\\n", "", self.text())


_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_OTHER_ESCAPE = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07|[()][0-9A-B])")
_BASIC = {**{30 + i: str(i) for i in range(8)}, **{90 + i: str(8 + i) for i in range(8)}}


def _apply_sgr(style: Style, params: str) -> Style:
    codes = [p.split(":")[0] for p in params.split(";")] if params else ["0"]
    values = [int(c) if c.isdigit() else 0 for c in codes]
    i = 0
    while i < len(values):
        code = values[i]
        if code == 0:
            style = Style()
        elif code == 1:
            style = replace(style, bold=True)
        elif code == 22:
            style = replace(style, bold=False)
        elif code == 3:
            style = replace(style, italic=True)
        elif code == 23:
            style = replace(style, italic=False)
        elif code == 4:
            style = replace(style, underline=True)
        elif code == 24:
            style = replace(style, underline=False)
        elif code == 7:
            style = replace(style, reverse=True)
        elif code == 27:
            style = replace(style, reverse=False)
        elif code == 9:
            style = replace(style, strike=True)
        elif code == 29:
            style = replace(style, strike=False)
        elif code in (38, 48):
            if i + 2 < len(values) + 1 and values[i + 1 : i + 2] == [5]:
                colour, i = str(values[i + 2]), i + 2
            else:  # 38;2;r;g;b
                r, g, b = values[i + 2 : i + 5]
                colour, i = f"#{r:02x}{g:02x}{b:02x}", i + 4
            style = replace(style, **{"fg" if code == 38 else "bg": colour})
        elif code == 39:
            style = replace(style, fg=None)
        elif code == 49:
            style = replace(style, bg=None)
        elif code in _BASIC:
            style = replace(style, fg=_BASIC[code])
        elif code - 10 in _BASIC:
            style = replace(style, bg=_BASIC[code - 10])
        i += 1
    return style


def parse(raw: str) -> Screen:
    """Cells of `tmux capture-pane -e -p` output. (The style carries over line ends, as
    tmux writes only the changes.)"""
    screen = Screen(raw)
    style = Style()
    for line in raw.split("\n"):
        text: list[str] = []
        styles: list[Style] = []
        pos = 0
        for match in _SGR.finditer(line):
            chunk = _OTHER_ESCAPE.sub("", line[pos : match.start()])
            text.append(chunk)
            styles.extend([style] * len(chunk))
            style = _apply_sgr(style, match.group(1))
            pos = match.end()
        chunk = _OTHER_ESCAPE.sub("", line[pos:])
        text.append(chunk)
        styles.extend([style] * len(chunk))
        screen.rows.append("".join(text))
        screen.styles.append(styles)
    while screen.rows and not screen.rows[-1].strip() and len(screen.rows) > HEIGHT:
        screen.rows.pop()
        screen.styles.pop()
    return screen


class Terminal:
    """An editor in a tmux window of WIDTH x HEIGHT."""

    def __init__(self, socket: Path) -> None:
        self.socket = str(socket)
        self.started = False

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        assert TMUX is not None
        result = subprocess.run(
            [TMUX, "-S", self.socket, "-f", self.socket + ".conf", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=env,
        )
        assert result.returncode == 0, f"tmux {args!r}: {result.stderr}"
        return result.stdout

    def start(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        # A terminal with italics and 256 colours (the editors read TERM's terminfo).
        environment = {**env, "TERM": "tmux-256color"}
        environment.pop("TMUX", None)
        environment.pop("COLORTERM", None)  # no true colour unless the editor finds it
        # Set before the editor starts (it reads its size once): the whole window is the
        # editor's (no status line), <Esc> is <Esc> at once, a crash's screen stays.
        Path(self.socket + ".conf").write_text(
            "set -g status off\nset -g escape-time 0\nset -g remain-on-exit on\n"
            "set -g default-terminal tmux-256color\n",
            encoding="utf-8",
        )
        self._tmux(
            "new-session", "-d", "-s", "fim", "-x", str(WIDTH), "-y", str(HEIGHT),
            "-c", str(cwd), *command, env=environment,
        )  # fmt: skip
        self.started = True

    def type(self, text: str, interval: float = KEY_INTERVAL_S) -> None:
        """Type `text` one character at a time, as a person does."""
        for char in text:
            self._tmux("send-keys", "-t", "fim", "-l", char)
            time.sleep(interval)  # pacing, not waiting for a result

    def key(self, *names: str, interval: float = KEY_INTERVAL_S) -> None:
        """Press keys by tmux's names (Left, Escape, C-e, M-], Enter)."""
        for name in names:
            self._tmux("send-keys", "-t", "fim", name)
            time.sleep(interval)

    def cursor(self) -> tuple[int, int]:
        """Where the terminal's cursor is: column and row, 0-based."""
        x, y = self._tmux("display-message", "-p", "-t", "fim", "#{cursor_x} #{cursor_y}").split()
        return int(x), int(y)

    def screen(self) -> Screen:
        return parse(self._tmux("capture-pane", "-t", "fim", "-e", "-p"))

    def wait(self, condition: Callable[[Screen], T], timeout: float, what: str) -> T:
        """The first screen (read every 50 ms) where `condition` gives a true value."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            value = condition(screen)
            if value:
                return value
            if time.monotonic() > deadline:
                shown = screen.text()
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; screen:\n{shown}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.started:
            subprocess.run(
                [TMUX or "tmux", "-S", self.socket, "kill-server"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            self.started = False
        Path(self.socket + ".conf").unlink(missing_ok=True)


def tmux_missing() -> list[str]:
    return [] if TMUX else ["tmux (apt-get install tmux)"]


def environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The editor's environment: this one, a fresh home, no user configuration."""
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        **(extra or {}),
    }


def keep_screen(name: str, screen: Screen) -> None:
    """Keep a screen with its escapes in $FIM_TEST_SCREENS, where set (for a report)."""
    folder = os.environ.get("FIM_TEST_SCREENS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / name).write_text(screen.raw, encoding="utf-8")
