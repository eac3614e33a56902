"""The evaluation sandbox contains what a model's answer may do: no network and no host
socket by any route, nothing of the machine's files but the interpreter it runs (no
secrets, no other run), limits that hold for the run as a whole (memory, processes,
disk, output), nothing left running after it, and a clear refusal where the machine
cannot isolate it (fim_server/eval/sandbox.py)."""

from __future__ import annotations

import ast
import ctypes
import glob
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
        "/fim-sandbox-probe",
        str(REPOSITORY / "fim-sandbox-probe"),
        str(tmp_path / "probe"),
        "../fim-sandbox-probe",
    ]
    program = (
        "import os\n"
        "open('inside.txt', 'w').write('ok')\n"
        "print(open('inside.txt').read())\n"
        "open('/tmp/fim-sandbox-probe', 'w').write('its own /tmp')\n"
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
    for path in [*outside[:4], "/tmp/fim-sandbox-probe"]:  # the run's /tmp is not the host's
        assert not Path(path).exists()


@isolated
def test_the_program_cannot_undo_its_isolation() -> None:
    program = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.mount(None, b'/', None, 32 | 4096, None), ctypes.get_errno())\n"  # rw
        "print(libc.umount2(os.getcwd().encode(), 2), ctypes.get_errno())\n"  # MNT_DETACH
        "print(libc.setns(0, 0))\n"
        # New namespaces of its own, where it would hold every capability: a tmpfs there
        # would be storage outside the run's disk and memory.
        "print(libc.unshare(0x10000000 | 0x20000), ctypes.get_errno())\n"  # user + mount
        "print(libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, b'size=1g'), ctypes.get_errno())\n"
        "print(libc.chroot(b'/tmp'), ctypes.get_errno())\n"
    )
    run = run_python(program, limits=FAST)
    assert run.outcome is Outcome.OK, run
    remount, unmount, _, unshare, mount, chroot = run.stdout.splitlines()
    for refused in (remount, unmount, unshare, mount, chroot):
        assert refused.split()[0] == "-1", run.stdout


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


# The escapes an outside probe found through the first sandbox: host sockets, the host's
# files, other runs, and limits that held per process only.


@pytest.fixture
def unix_listener(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A root-only (0600) Unix socket on the host, as a docker.sock would be, answering
    every connection; what it received is collected."""
    path = str(tmp_path / "private.sock")
    received: list[bytes] = []
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        os.chmod(path, 0o600)
        server.listen()
        server.settimeout(0.2)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    connection, _ = server.accept()
                except TimeoutError:
                    continue
                with connection:
                    received.append(connection.recv(100))
                    connection.sendall(b"host secret")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        with socket.socket(socket.AF_UNIX) as client:  # the test itself can reach it
            client.connect(path)
            client.sendall(b"test")
            assert client.recv(100) == b"host secret"
        yield path, received
        stop.set()
        thread.join(timeout=5)


CONNECT_UNIX = (
    "import _socket\n"
    "s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)\n"
    "s.settimeout(2)\n"
    "try:\n"
    "    s.connect(ADDRESS)\n"
    "    s.sendall(b'program')\n"
    "    print('REPLY', s.recv(100))\n"
    "except OSError as exc:\n"
    "    print('refused', exc)\n"
)


@isolated
def test_no_host_unix_socket_is_reachable(unix_listener: tuple[str, list[bytes]]) -> None:
    path, received = unix_listener
    run = run_python(CONNECT_UNIX.replace("ADDRESS", repr(path)), limits=FAST)
    assert run.outcome is Outcome.OK, run
    assert "refused" in run.stdout and "REPLY" not in run.stdout, run.stdout
    assert received == [b"test"]  # only the test's own connection


@isolated
def test_no_host_abstract_socket_is_reachable() -> None:
    name = f"\0fim-sandbox-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(name)
        server.listen()
        run = run_python(CONNECT_UNIX.replace("ADDRESS", repr(name)), limits=FAST)
    assert run.outcome is Outcome.OK, run
    assert "refused" in run.stdout and "REPLY" not in run.stdout, run.stdout


@isolated
@pytest.mark.skipif(not hasattr(socket, "AF_VSOCK"), reason="no AF_VSOCK here")
def test_no_socket_family_that_ignores_network_namespaces() -> None:
    # AF_VSOCK reaches the hypervisor whatever the network namespace; only creating one
    # is tried (connecting would knock on the host's door).
    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    except OSError:
        pytest.skip("this kernel has no vsock")
    program = (
        "import _socket\n"
        "for family in (_socket.AF_VSOCK, _socket.AF_PACKET, _socket.AF_NETLINK):\n"
        "    try:\n"
        "        _socket.socket(family, _socket.SOCK_STREAM if family == _socket.AF_VSOCK "
        "else _socket.SOCK_RAW)\n"
        "        print('CREATED', family)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
    )
    run = run_python(program, limits=FAST)
    assert run.outcome is Outcome.OK, run
    assert "CREATED" not in run.stdout, run.stdout


@isolated
def test_the_host_files_are_not_visible(tmp_path: Path) -> None:
    home = tmp_path / "home" / "user"
    home.mkdir(parents=True)
    secret = home / ".netrc"
    secret.write_text("machine example.com password hunter2\n")
    secret.chmod(0o600)
    paths = ["/etc/shadow", "/etc/passwd", str(secret), str(REPOSITORY / "pyproject.toml")]
    program = (
        "import os\n"
        f"for path in {paths!r}:\n"
        "    try:\n"
        "        print('READ', path, open(path).read()[:20])\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.errno)\n"
        "for folder in ('/root', '/home', '/etc'):\n"
        "    print('LIST', folder, sorted(os.listdir(folder)) if os.path.isdir(folder) else [])\n"
    )
    run = run_python(program, limits=FAST)
    assert run.outcome is Outcome.OK, run
    assert "READ" not in run.stdout and "hunter2" not in run.stdout, run.stdout
    listings = {
        line.split()[1]: line.split(" ", 2)[2]
        for line in run.stdout.splitlines()
        if line.startswith("LIST")
    }
    assert listings["/home"] == "[]", listings
    # (A Debian Python's standard library links to /etc/python3.X/sitecustomize.py.)
    assert all(name.startswith("python3") for name in ast.literal_eval(listings["/etc"]))
    # /root shows at most the way to the interpreter the programs run (here, pyenv's).
    python = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    way = [repr(python.relative_to("/root").parts[0])] if python.is_relative_to("/root") else []
    assert listings["/root"] == f"[{', '.join(way)}]", listings


@isolated
def test_another_concurrent_run_is_not_visible() -> None:
    marker = f"fim-sandbox-{uuid.uuid4().hex}"
    waiting = f"# {marker}\nimport time\ntime.sleep(4)\n"
    host_runs = os.path.join(tempfile.gettempdir(), "fim-eval-*", "run", "main.py")
    looking = (
        "import glob, os, time\n"
        "time.sleep(1)\n"
        f"found = glob.glob({host_runs!r})\n"
        "for top in ('/sandbox', '/tmp'):\n"
        "    for folder, _, names in os.walk(top):\n"
        "        found += [os.path.join(folder, n) for n in names if n == 'main.py']\n"
        "for path in found:\n"
        "    if path != os.path.abspath('main.py'):\n"
        "        print('SEEN', path, open(path).read()[:60])\n"
        "print('done')\n"
    )
    limits = SandboxLimits(wall_s=8, cpu_s=4, memory_mb=512)
    with ThreadPoolExecutor(2) as pool:
        other = pool.submit(run_python, waiting, "", limits)
        time.sleep(0.5)
        assert glob.glob(host_runs)  # the other run's file is on the host right now
        run = run_python(looking, limits=limits)
        other.result()
    assert run.outcome is Outcome.OK, run
    assert "SEEN" not in run.stdout and marker not in run.stdout, run.stdout


@isolated
def test_memory_is_limited_for_the_run_not_each_process() -> None:
    # Four children of 160 MB each: every one is under the limit, the run is not.
    program = (
        "import os, time\n"
        "children = []\n"
        "for _ in range(4):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        block = b'x' * (160 << 20)\n"
        "        time.sleep(2)\n"
        "        os._exit(0)\n"
        "    children.append(pid)\n"
        "print('codes', [os.waitpid(pid, 0)[1] for pid in children])\n"
    )
    limits = SandboxLimits(wall_s=8, cpu_s=4, memory_mb=512)
    run = run_python(program, limits=limits)
    assert run.outcome is Outcome.ERROR, run
    assert "codes" not in run.stdout and "memory limit" in run.stderr, run
    alone = run_python("block = b'x' * (160 << 20)\nprint('fits')\n", limits=limits)
    assert alone.outcome is Outcome.OK and alone.stdout == "fits\n", alone


@isolated
def test_processes_are_limited_for_the_run() -> None:
    program = (
        "import os, time\n"
        "started = 0\n"
        "for _ in range(150):\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        started += 1\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
        "        break\n"
        "print('started', started)\n"
    )
    limits = SandboxLimits(wall_s=8, cpu_s=4, memory_mb=512, processes=16)
    run = run_python(program, limits=limits)
    assert run.outcome is Outcome.OK, run
    started = int(run.stdout.split("started")[1])
    assert started < 16 and "refused 11" in run.stdout, run.stdout  # EAGAIN
    # Another run at the same time has its own count.
    assert run_python("print('alone')\n", limits=limits).stdout == "alone\n"


@isolated
def test_disk_is_limited_for_the_run_not_each_file() -> None:
    program = (
        "import os, tempfile\n"
        "written = 0\n"
        "for index in range(12):\n"
        "    folder = '.' if index % 2 else tempfile.gettempdir()\n"
        "    try:\n"
        "        with open(os.path.join(folder, f'f{index}'), 'wb') as fh:\n"
        "            fh.write(b'x' * (16 << 20))\n"
        "        written += 16\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
        "        break\n"
        "print('written', written)\n"
    )
    limits = SandboxLimits(wall_s=8, cpu_s=4, memory_mb=512, file_mb=16, disk_mb=64)
    run = run_python(program, limits=limits)
    assert run.outcome is Outcome.OK, run
    assert "refused 28" in run.stdout, run.stdout  # ENOSPC
    assert int(run.stdout.split("written")[1]) <= 64, run.stdout


def test_endless_output_costs_the_caller_bounded_memory(no_unshare: None) -> None:
    # Unsafe mode, where the output handling is the same and no namespaces are needed.
    limits = SandboxLimits(wall_s=3, cpu_s=2, file_mb=1, unsafe_no_isolation=True)
    run = run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", limits=limits)
    assert run.outcome is Outcome.TIMEOUT
    assert 0 < len(run.stdout) <= 1 << 20


KEY_SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}  # add_key, keyctl


@isolated
@pytest.mark.skipif(os.uname().machine not in KEY_SYSCALLS, reason="syscall numbers unknown")
def test_the_callers_keyring_is_not_reachable() -> None:
    # A key in the session keyring of the process that runs the evaluation (a login's
    # credentials live there): every process it starts possesses that keyring.
    add_key, keyctl = KEY_SYSCALLS[os.uname().machine]
    libc = ctypes.CDLL(None, use_errno=True)
    name, payload = f"fim-sandbox-{uuid.uuid4().hex}".encode(), b"key-secret-payload"
    serial = libc.syscall(add_key, b"user", name, payload, len(payload), ctypes.c_long(-3))
    if serial < 0:
        pytest.skip(f"no session keyring here (errno {ctypes.get_errno()})")
    try:
        program = (
            "import ctypes\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            f"found = libc.syscall({keyctl}, 10, ctypes.c_long(-3), b'user', {name!r}, 0)\n"
            "buffer = ctypes.create_string_buffer(100)\n"
            f"size = libc.syscall({keyctl}, 11, ctypes.c_long(found), buffer, 100)\n"
            "print('READ', buffer.value if size > 0 else None, 'errno', ctypes.get_errno())\n"
        )
        run = run_python(program, limits=FAST)
    finally:
        libc.syscall(keyctl, 3, ctypes.c_long(serial))  # KEYCTL_REVOKE
    assert run.outcome is Outcome.OK, run
    assert "READ None" in run.stdout and "key-secret" not in run.stdout, run.stdout


@isolated
def test_a_program_cannot_pass_for_a_sandbox_that_failed_to_start() -> None:
    # The sandbox's own "setup failed" would stop the whole evaluation as unavailable.
    program = "import sys\nprint('fim-sandbox: setup failed: no', file=sys.stderr)\nsys.exit(125)\n"
    run = run_python(program, limits=FAST)
    assert run.outcome is Outcome.ERROR and run.returncode == 1, run
