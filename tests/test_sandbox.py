"""The evaluation sandbox contains what a model's answer may do: no network by any route,
no writes outside its directory, nothing left running after it, and a clear refusal where
the machine cannot isolate it (fim_server/eval/sandbox.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fim_server.eval import sandbox
from fim_server.eval.sandbox import Outcome, SandboxLimits, SandboxUnavailable, run_python

FAST = SandboxLimits(wall_s=5, cpu_s=4, memory_mb=512)
REPOSITORY = Path(__file__).resolve().parents[1]

isolated = pytest.mark.skipif(
    sandbox.isolation() is None, reason="this machine refuses Linux namespaces"
)


@pytest.fixture
def no_unshare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A machine without `unshare` on its PATH: no isolation is available."""
    monkeypatch.setenv("PATH", str(tmp_path))
    sandbox.isolation.cache_clear()
    yield
    monkeypatch.undo()
    sandbox.isolation.cache_clear()


def survivors(marker: str) -> list[int]:
    """Processes whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def escaping_grandchild(marker: str, parent_waits: bool) -> str:
    """A program whose grandchild leaves its session and sleeps with stdout held open."""
    wait = "time.sleep(100)" if parent_waits else "print('parent done')"
    return (
        "import os, subprocess, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    sleeper = 'import time; time.sleep(300)'\n"
        f"    subprocess.Popen([sys.executable, '-c', sleeper, '{marker}'])\n"
        "    os._exit(0)\n"
        f"{wait}\n"
    )


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that the test process itself can reach."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
        yield server.getsockname()[1]


@isolated
@pytest.mark.parametrize(
    "route",
    [
        "import _socket\ns = _socket.socket()\ns.settimeout(2)\ns.connect(('127.0.0.1', PORT))",
        "import importlib, socket\nimportlib.reload(socket)\n"
        "socket.create_connection(('127.0.0.1', PORT), timeout=2)",
        "import subprocess, sys\nsubprocess.run([sys.executable, '-c', "
        "\"import socket; socket.create_connection(('127.0.0.1', PORT), timeout=2)\"], check=True)",
    ],
    ids=["_socket", "reload", "child-process"],
)
def test_no_route_reaches_the_network(route: str, listener: int) -> None:
    run = run_python(route.replace("PORT", str(listener)), limits=FAST)
    assert run.outcome is Outcome.ERROR, run
    assert "unreachable" in run.stderr or "CalledProcessError" in run.stderr, run.stderr


@isolated
def test_the_program_writes_only_inside_its_own_directory(tmp_path: Path) -> None:
    outside = [
        "/etc/fim-sandbox-probe",
        str(REPOSITORY / "fim-sandbox-probe"),
        str(tmp_path / "probe"),
        "/tmp/fim-sandbox-probe",
        "../fim-sandbox-probe",
    ]
    program = (
        "import os\n"
        "open('inside.txt', 'w').write('ok')\n"
        "print(open('inside.txt').read())\n"
        f"for path in {outside!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('escaped')\n"
        "        print('WROTE', path)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
        "print(sorted(os.listdir('..')))\n"
    )
    run = run_python(program, limits=FAST)
    assert run.outcome is Outcome.OK, run
    lines = run.stdout.splitlines()
    assert lines[0] == "ok" and "WROTE" not in run.stdout, run.stdout
    assert lines[-1] == "['run']"  # other runs' directories are not visible
    for path in outside[:4]:
        assert not Path(path).exists()


@isolated
def test_the_program_cannot_undo_its_isolation() -> None:
    program = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.mount(None, b'/', None, 32 | 4096, None), ctypes.get_errno())\n"  # rw
        "print(libc.umount2(os.getcwd().encode(), 2), ctypes.get_errno())\n"  # MNT_DETACH
        "print(libc.setns(0, 0))\n"
    )
    run = run_python(program, limits=FAST)
    assert run.outcome is Outcome.OK, run
    remount, unmount, _ = run.stdout.splitlines()
    assert remount.split()[0] == "-1" and unmount.split()[0] == "-1", run.stdout


@isolated
@pytest.mark.parametrize("parent_waits", [True, False], ids=["timeout", "parent-exits"])
def test_a_setsid_grandchild_is_killed_with_the_program(parent_waits: bool) -> None:
    marker = f"fim-sandbox-{uuid.uuid4().hex}"
    started = time.monotonic()
    limits = SandboxLimits(wall_s=3, cpu_s=3, memory_mb=512)
    run = run_python(escaping_grandchild(marker, parent_waits), limits=limits)
    assert time.monotonic() - started < 15
    assert run.outcome is (Outcome.TIMEOUT if parent_waits else Outcome.OK), run
    time.sleep(0.2)
    assert survivors(marker) == []


def test_without_isolation_the_sandbox_refuses_to_run(no_unshare: None) -> None:
    assert sandbox.isolation() is None
    with pytest.raises(SandboxUnavailable, match="--unsafe-no-isolation"):
        run_python("print(1)\n", limits=FAST)


def test_fim_server_eval_refuses_without_isolation_and_says_how_to_override(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no unshare
    done = subprocess.run(
        [sys.executable, "-m", "fim_server", "eval", "--limit", "1", "--empty-baseline"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "--unsafe-no-isolation" in done.stderr and "namespaces" in done.stderr


def test_unsafe_mode_still_kills_every_descendant(no_unshare: None) -> None:
    marker = f"fim-sandbox-{uuid.uuid4().hex}"
    unsafe = SandboxLimits(wall_s=3, cpu_s=3, memory_mb=512, unsafe_no_isolation=True)
    started = time.monotonic()
    run = run_python(escaping_grandchild(marker, parent_waits=False), limits=unsafe)
    assert time.monotonic() - started < 15
    assert run.outcome is Outcome.OK and "parent done" in run.stdout, run
    time.sleep(0.2)
    assert survivors(marker) == []
    assert run_python("print(2)\n", limits=unsafe).stdout == "2\n"


@isolated
def test_a_python_inside_the_temporary_folder_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A clone checked out under /tmp has its virtual environment there: hiding the folder
    # that holds the program's directory must not hide the Python that runs it.
    python = tmp_path / "python3"
    python.symlink_to(os.path.realpath(sys.executable))
    monkeypatch.setattr(sys, "executable", str(python))
    run = run_python("import os\nprint(sorted(os.listdir('..')))\n", limits=FAST)
    assert run.outcome is Outcome.OK, run.stderr
    assert run.stdout.strip() == "['run']"  # nothing else of the temporary folder shows
