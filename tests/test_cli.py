"""`fim-server complete FILE:LINE:COL` as a user runs it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fim_server.cli import (
    MAX_SOURCE_BYTES,
    UsageError,
    offset_of,
    parse_location,
    parse_tcp_address,
)
from fim_server.config.settings import bounds as settings_bounds


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fim_server", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "area.py"
    path.write_text(
        'def circle_area(radius):\n    """Area of a circle."""\n    \n', encoding="utf-8"
    )
    return path


def test_offset_of_is_one_based_in_characters() -> None:
    text = "é = 1\nx = (\n"
    assert offset_of(text, 2, 6) == text.index("(") + 1
    assert offset_of(text, 1, 1) == 0
    assert offset_of(text, 3, 1) == len(text)
    for line, col in [(0, 1), (4, 1), (1, 0), (1, 7)]:
        with pytest.raises(UsageError):
            offset_of(text, line, col)


def test_parse_location_keeps_colons_in_the_path() -> None:
    assert parse_location("C:/src/a.py:3:7") == (Path("C:/src/a.py"), 3, 7)
    with pytest.raises(UsageError):
        parse_location("a.py:3")


@pytest.mark.parametrize("location", ["{}:9:1", "{}:3:99", "{}:x:1", "/no/such/file.py:1:1"])
def test_bad_file_or_position_exits_2_with_a_message(source: Path, location: str) -> None:
    result = run("complete", location.format(source))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("fim-server: ")


def test_complete_prints_the_completion_and_a_summary(source: Path) -> None:
    result = run("complete", f"{source}:3:5")
    assert result.returncode == 0, result.stderr
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("backend=embedded mode=multi_line ")
    assert "forward_passes=" in summary
    # What is printed is exactly what would be inserted (plus one line break).
    if result.stdout:
        assert result.stdout.endswith("\n") and result.stdout.strip()


def test_missing_model_exits_1(source: Path) -> None:
    result = run("complete", f"{source}:3:5", "--model", "/nonexistent/model")
    assert result.returncode == 1
    assert "could not load the model" in result.stderr


def test_complete_lists_the_other_candidates() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "geometry.py"
    alone = run("complete", f"{example}:17:16", "--min-confidence", "0")
    result = run("complete", f"{example}:17:16", "--min-confidence", "0", "--candidates", "3")
    assert result.returncode == 0, result.stderr
    # The first candidate is the answer without candidates; the others follow it.
    assert result.stdout == alone.stdout and result.stdout.strip()
    others = [line for line in result.stderr.splitlines() if line.startswith("candidate ")]
    assert others and others[0].startswith("candidate 2: ")
    assert "candidate " not in alone.stderr
    bad = run("complete", f"{example}:17:16", "--candidates", "0")
    assert bad.returncode == 2 and "--candidates" in bad.stderr


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_complete_refuses_what_is_not_a_regular_file_of_sane_size(
    kind: str, tmp_path: Path
) -> None:
    if kind == "fifo":
        path = tmp_path / "pipe.py"
        os.mkfifo(path)  # nobody writes: reading it would wait forever
    elif kind == "device":
        path = Path("/dev/zero")  # never ends: reading it would fill memory
    else:
        path = tmp_path / "huge.py"
        with path.open("wb") as file:
            file.truncate(MAX_SOURCE_BYTES + 1)  # sparse: no disk used
    result = subprocess.run(
        [sys.executable, "-m", "fim_server", "complete", f"{path}:1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    reason = "larger than 64 MiB" if kind == "huge" else "not a regular file"
    assert f"cannot read {path}: {reason}" in result.stderr


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this Python")
def test_tcp_takes_an_ipv6_address_in_brackets() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
            port = probe.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    assert parse_tcp_address(f"[::1]:{port}") == ("::1", port)
    process = subprocess.Popen(
        [sys.executable, "-m", "fim_server", "--tcp", f"[::1]:{port}"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = socket.create_connection(("::1", port), timeout=10)
                break
            except OSError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with connection:
            body = json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                 "params": {"processId": None, "rootUri": None, "capabilities": {}}}
            ).encode()  # fmt: skip
            connection.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            reply = b""
            while b'"capabilities"' not in reply:
                chunk = connection.recv(65536)
                assert chunk, "the server hung up"
                reply += chunk
    finally:
        process.kill()
        process.wait()
    with pytest.raises(UsageError):
        parse_tcp_address("[::1:2087")


def test_each_candidate_says_which_brackets_it_replaces(tmp_path: Path) -> None:
    # Between brackets every candidate replaces the `)`: the list says so for each, or
    # `path.join(path))` would read as one `)` too many.
    source = tmp_path / "join.py"
    source.write_text("import os\n\npath = os.path.join()\n", encoding="utf-8")
    result = run("complete", f"{source}:3:21", "--min-confidence", "0", "--candidates", "4")
    assert result.returncode == 0, result.stderr
    assert "replace_chars=1 " in result.stderr.splitlines()[-1]
    others = [line for line in result.stderr.splitlines() if line.startswith("candidate ")]
    assert others, result.stderr
    for line in others:
        assert line.endswith(" replace_chars=1") and line.split("'")[-2].endswith(")"), line


def test_timeout_ms_takes_the_bounds_of_its_setting(source: Path) -> None:
    # One home for the bound: the `timeoutMs` setting's, which the option checks too.
    low, high = settings_bounds("timeoutMs")
    assert low is not None
    for value in (low - 1, high + 1):
        result = run("complete", f"{source}:3:5", "--timeout-ms", str(value))
        assert result.returncode == 2, result.stderr
        assert f"--timeout-ms must be between {low} and {high}" in result.stderr
