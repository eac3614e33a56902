"""Run an untrusted Python program (a benchmark's test program around a model's answer)
isolated from the machine, with limits that hold for the whole run, not each process.

Isolation comes from Linux namespaces, through `unshare` (util-linux), and an init of our
own (sandbox_init.py) as the first process in them:

- a network namespace: only a downed loopback, so no socket reaches anything, whatever
  the program imports (`_socket`, a reloaded `socket`, a child process); abstract Unix
  sockets are per network namespace, so none of the host's is reachable either; a
  seccomp filter allows only the families that namespace holds (AF_UNIX, AF_INET,
  AF_INET6), since some (AF_VSOCK, which reaches the hypervisor) ignore namespaces,
  and refuses io_uring (which opens sockets without socket()) and the kernel keyrings
  (the caller's session keyring, which every child possesses, holds its keys);
- a mount namespace whose root is a fresh tmpfs (then pivot_root, the host's tree
  detached): it shows only the interpreter, its standard library and shared libraries
  (read-only, its site-packages hidden), five device nodes, the namespace's own /proc,
  and the run's writable /sandbox/run, /tmp and /dev/shm. No host path, so no host
  Unix socket, no /root, /home, /etc, and no other run's directory;
- a PID namespace: when the init ends, or when `unshare` is killed at the wall-clock
  limit (`--kill-child`), the kernel kills every process in it, `setsid` grandchildren
  and daemons included; an IPC namespace, so System V objects are the run's own;
- the program itself runs as an unprivileged user (as root: nobody), in a user namespace
  of its own, with no new privileges: it holds no capability over its mounts.

Limits for the run as a whole: disk is the size of its one tmpfs (the run directory,
/tmp and /dev/shm together); processes are counted by RLIMIT_NPROC, which the kernel
keeps per user namespace and uid, so the count is this run's; memory is summed over the
run's processes by the init, which polls and kills them all once the sum passes the
limit (this machine's cgroup v2 tree has no controllers, and the v1 memory hierarchy is
the host's, not ours to carve up). RLIMIT_AS still caps each process, CPU time and file
size are per process, and the wall clock bounds the run.

As root `unshare` is used directly; otherwise through a user namespace
(`--user --map-root-user`) where the kernel allows one. Where neither works the sandbox
refuses to run (SandboxUnavailable) unless the caller passes `unsafe_no_isolation`: then
the program runs with the per-process limits, a patched `socket` module (which a program
can get around) and a reaper that kills every process carrying the run's tag in its
environment.

What it cannot stop:
- memory is a watchdog, not a kernel limit: the init samples every 10 ms, so a run may
  pass its limit by what its processes touch in that time (519 MB held at the kill for a
  512 MB limit, measured) or longer when the init is not scheduled; each process is still
  capped at the limit by RLIMIT_AS, so the worst case is processes x memory_mb. Kernel
  memory (page tables, pipe buffers, sockets in the run's namespace) is not counted;
  shared pages count once per process that maps them (an overcount, after fork);
- CPU time is per process: a run of N busy processes uses N cores until the wall clock;
- the kernel itself: the program still makes most system calls, so a kernel bug
  reachable from an unprivileged user namespace is reachable from it;
- what /proc and the namespaces show: the kernel version, CPU and memory totals, and the
  host paths of the run's mounts (/proc/self/mountinfo), though none of their contents;
- without cgroups the run's disk I/O and CPU share are not limited, only its duration.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

_PRELUDE = """\
import socket as _socket
def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the evaluation sandbox")
_socket.socket = _socket.create_connection = _socket.getaddrinfo = _no_network
del _socket, _no_network
import sys as _sys
_sys.argv = ["main.py"]
_source = open("main.py", encoding="utf-8").read()
exec(compile(_source, "main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
"""

# The first process of the namespaces, run by path with the host's interpreter.
INIT = Path(__file__).with_name("sandbox_init.py")
_SETUP_FAILED = 125
_RUN_DIR = "/sandbox/run"  # the program's directory inside (sandbox_init.RUN_DIR)
_UNPRIVILEGED = 65534  # nobody/nogroup: who the program runs as when we are root

# Tags the processes of an unisolated run, so the reaper finds them after `setsid`.
_TAG = "FIM_SANDBOX_RUN"


class Outcome(StrEnum):
    OK = "ok"  # exited with status 0
    ERROR = "error"  # non-zero exit, an exception, or killed by a limit other than time
    TIMEOUT = "timeout"


class SandboxUnavailable(RuntimeError):
    """This machine cannot isolate a program (no usable namespaces)."""


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 10.0
    cpu_s: int = 10  # per process
    memory_mb: int = 1024  # the run's processes together (and each one's address space)
    file_mb: int = 16  # per file, and per captured stream (stdout, stderr)
    disk_mb: int = 64  # everything the run writes: its directory, /tmp, /dev/shm
    processes: int = 32  # processes and threads of the run at once
    open_files: int = 256  # per process
    # Where the machine cannot isolate programs: run them anyway (the user said so with
    # --unsafe-no-isolation) instead of refusing.
    unsafe_no_isolation: bool = False


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    returncode: int | None
    stdout: str
    stderr: str


_NAMESPACES = ["--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc", "--ipc"]

# Run by the programs' interpreter on the host, with the programs' environment: what it
# needs to start, import its standard library and load every extension module.
_DISCOVER = """\
import glob, importlib, json, os, sysconfig
paths = sysconfig.get_paths()
dynload = os.path.join(paths["platstdlib"], "lib-dynload")
for path in sorted(glob.glob(os.path.join(glob.escape(dynload), "*.so"))):
    try:
        importlib.import_module(os.path.basename(path).split(".")[0])
    except Exception:
        pass
mapped = set()
with open("/proc/self/maps") as maps:
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith("/"):
            mapped.add(fields[5].strip())
found = {"stdlib": [paths["stdlib"], paths["platstdlib"]],
         "site": [paths["purelib"], paths["platlib"]], "mapped": sorted(mapped)}
print("\\n" + json.dumps(found))
"""


@dataclass(frozen=True)
class _View:
    """What a program's file system shows besides its own directories."""

    python: str  # the interpreter the programs run, at its real path
    # ("bind", path): read-only at the same path; ("hide", path): shown empty;
    # ("link", path, target): a symbolic link met on the way to a bound path.
    entries: tuple[tuple[str, ...], ...]


def _programs_python() -> str:
    """The base interpreter (not a virtual environment's: its site-packages are the
    server's, not the standard library)."""
    return os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)


def _program_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": _RUN_DIR, "PYTHONHASHSEED": "0"}


def _elf_interpreter(path: str) -> str | None:
    """The dynamic loader an ELF executable names (PT_INTERP), which must resolve inside."""
    with open(path, "rb") as fh:
        header = fh.read(64)
        if header[:5] != b"\x7fELF\x02":  # 64-bit ELF only; anything else is left alone
            return None
        order = "<" if header[5] == 1 else ">"
        phoff = int.from_bytes(header[32:40], "little" if order == "<" else "big")
        phentsize = int.from_bytes(header[54:56], "little" if order == "<" else "big")
        phnum = int.from_bytes(header[56:58], "little" if order == "<" else "big")
        for index in range(phnum):
            fh.seek(phoff + index * phentsize)
            entry = fh.read(phentsize)
            if int.from_bytes(entry[0:4], "little" if order == "<" else "big") == 3:  # PT_INTERP
                offset = int.from_bytes(entry[8:16], "little" if order == "<" else "big")
                size = int.from_bytes(entry[32:40], "little" if order == "<" else "big")
                fh.seek(offset)
                return fh.read(size).rstrip(b"\0").decode()
    return None


def _walk(path: str, links: dict[str, str]) -> str:
    """The real path of `path`, recording every symbolic link met on the way (where it
    is, what it says) so the view can recreate the same route."""
    pending = [part for part in path.split("/") if part]
    current = "/"
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(f"too many symbolic links in {path}")
            target = os.readlink(candidate)
            links[candidate] = target
            if target.startswith("/"):
                current = "/"
            pending[:0] = [part for part in target.split("/") if part]
        else:
            current = candidate
    return current


def _inside(path: str, folders: list[str]) -> bool:
    return any(path == folder or path.startswith(folder.rstrip("/") + "/") for folder in folders)


@functools.cache
def _view() -> _View | None:
    """The read-only part of the programs' file system: the interpreter file, the folders
    of its standard library and of every shared object it maps, and the links on the way
    to its loader; site-packages hidden. Found once, by asking the interpreter; None when
    it cannot say."""
    python = _programs_python()
    try:
        done = subprocess.run(
            [python, "-I", "-S", "-c", _DISCOVER],
            capture_output=True,
            text=True,
            timeout=60,
            env=_program_env(),
            stdin=subprocess.DEVNULL,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    links: dict[str, str] = {}
    folders = {_walk(folder, links) for folder in found["stdlib"]}
    for mapped in found["mapped"]:
        real = _walk(mapped, links)
        if real != python and os.path.isfile(real):
            folders.add(os.path.dirname(real))
    loader = _elf_interpreter(python)
    files = {python}
    if loader is not None:
        files.add(_walk(loader, links))
    # The standard library may link to files elsewhere (Debian: sitecustomize.py in /etc).
    for stdlib in found["stdlib"]:
        for entry in os.scandir(_walk(stdlib, links)):
            if entry.is_symlink() and os.path.exists(entry.path):
                files.add(_walk(entry.path, links))
    bound: list[str] = []
    for folder in sorted(folders, key=lambda p: (p.count("/"), p)):
        if os.path.isdir(folder) and not _inside(folder, bound):
            bound.append(folder)
    bound += sorted(file for file in files if not _inside(file, bound))
    entries: list[tuple[str, ...]] = [("bind", path) for path in bound]
    for real in sorted({os.path.realpath(site) for site in found["site"]}):
        if os.path.isdir(real) and _inside(real, bound) and real not in bound:
            entries.append(("hide", real))
    for where, target in sorted(links.items()):
        if not _inside(where, bound):
            entries.append(("link", where, target))
    return _View(python, tuple(entries))


@functools.cache
def isolation() -> tuple[str, ...] | None:
    """The `unshare` command prefix that isolates a program on this machine, or None
    where it cannot (no unshare, or namespaces refused here). Checked once."""
    unshare = shutil.which("unshare")
    if unshare is None or _view() is None:
        return None
    candidates = [[unshare, *_NAMESPACES]]
    if os.geteuid() != 0:
        candidates.insert(0, [unshare, "--user", "--map-root-user", *_NAMESPACES])
    for prefix in candidates:
        try:
            with _run_directory("fim-eval-probe-") as workdir:
                config = _init_config(workdir, SandboxLimits(), prefix, prelude="pass")
                done = subprocess.run(
                    [*prefix, sys.executable, "-I", "-S", str(INIT), config],
                    capture_output=True,
                    timeout=30,
                    stdin=subprocess.DEVNULL,
                )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return tuple(prefix)
    return None


def unavailable_reason() -> str:
    return (
        "the evaluation sandbox needs Linux namespaces (util-linux `unshare` with network, "
        "PID, IPC, mount and user namespaces, as root or through a user namespace), which "
        "this machine refuses; test programs would run with access to the network and the "
        "file system. Pass --unsafe-no-isolation to run them anyway."
    )


@contextlib.contextmanager
def _run_directory(prefix: str) -> Iterator[str]:
    """A fresh directory for one program, alone in a private parent: the sandbox mounts
    the run's tmpfs over the parent, and that must never hide anything else (the shared
    temporary folder may hold the Python that runs the init, or other runs)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as parent:
        workdir = os.path.join(parent, "run")
        os.mkdir(workdir)
        yield workdir


def _init_config(
    workdir: str,
    limits: SandboxLimits,
    prefix: list[str] | tuple[str, ...],
    prelude: str = _PRELUDE,
) -> str:
    view = _view()
    assert view is not None
    # Only real root drops to an unprivileged user; through `--user --map-root-user` the
    # program already runs as the caller, and that namespace maps no other uid.
    real_root = os.geteuid() == 0 and "--user" not in prefix
    return json.dumps(
        {
            "workdir": workdir,
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "file_mb": limits.file_mb,
            "disk_mb": limits.disk_mb,
            "inodes": 4096,  # tmpfs inodes cost kernel memory that its size does not count
            "processes": limits.processes,
            "files": limits.open_files,
            "uid": _UNPRIVILEGED if real_root else None,
            "python": view.python,
            "prelude": prelude,
            "env": _program_env(),
            "view": view.entries,
        }
    )


def _limit(limits: SandboxLimits) -> None:  # runs in the child, before exec (unisolated)
    os.setsid()
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_python(program: str, stdin: str = "", limits: SandboxLimits | None = None) -> RunResult:
    """Run `program` as main.py in a fresh directory. Raises SandboxUnavailable where the
    machine cannot isolate it, unless `limits.unsafe_no_isolation`."""
    limits = limits or SandboxLimits()
    prefix = isolation()
    if prefix is None and not limits.unsafe_no_isolation:
        raise SandboxUnavailable(unavailable_reason())
    tag = uuid.uuid4().hex
    with _run_directory("fim-eval-") as workdir:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as fh:
            fh.write(program)
        if prefix is not None:
            config = _init_config(workdir, limits, prefix)
            command = [*prefix, sys.executable, "-I", "-S", str(INIT), config]
            env = _program_env()
            preexec = os.setsid  # unshare leads a process group of its own
        else:
            command = [sys.executable, "-I", "-c", _PRELUDE]
            env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "PYTHONHASHSEED": "0", _TAG: tag}
            preexec = functools.partial(_limit, limits)
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=preexec,
        )
        # Killing unshare kills the namespace's init (--kill-child), and with it every
        # process in the namespace; unisolated, the reaper finds them by their tag.
        cleanup = (lambda: None) if prefix is not None else functools.partial(reap, tag)
        cap = limits.file_mb * 1024 * 1024
        out, err, timed_out = _communicate(proc, stdin.encode(), limits.wall_s, cleanup, cap)
        if timed_out:
            return RunResult(Outcome.TIMEOUT, None, _text(out), _text(err))
        code = proc.returncode
        if prefix is not None and code == _SETUP_FAILED and b"fim-sandbox: setup" in err:
            raise SandboxUnavailable(f"{_text(err).strip()}\n{unavailable_reason()}")
        if code == 0:
            outcome = Outcome.OK
        elif code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            outcome = Outcome.TIMEOUT  # the CPU-time limit: a busy loop, not a crash
        else:
            outcome = Outcome.ERROR
        return RunResult(outcome, code, _text(out), _text(err))


def _communicate(
    proc: subprocess.Popen[bytes],
    data: bytes,
    wall_s: float,
    cleanup: Callable[[], object],
    cap: int,
) -> tuple[bytes, bytes, bool]:
    """Feed stdin and collect the output of `proc` until it exits or `wall_s` passes (then
    its process group is killed); then `cleanup` kills what it left behind, which closes
    the pipes those processes held. Waiting for the process rather than for the end of
    its output is what keeps a left-behind daemon from hanging the run. Each stream keeps
    its first `cap` bytes; the rest is read and dropped, so a program printing without
    end costs the caller no memory."""
    output: dict[str, bytes] = {}

    def drain(name: str, pipe: IO[bytes]) -> None:
        kept = bytearray()
        while chunk := pipe.read1(1 << 16):
            kept += chunk[: max(0, cap - len(kept))]
        output[name] = bytes(kept)

    def feed(pipe: IO[bytes]) -> None:
        try:
            pipe.write(data)
            pipe.close()
        except OSError:
            pass  # the program exited without reading its input

    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    threads = [
        threading.Thread(target=drain, args=("out", proc.stdout), daemon=True),
        threading.Thread(target=drain, args=("err", proc.stderr), daemon=True),
        threading.Thread(target=feed, args=(proc.stdin,), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        proc.wait(timeout=wall_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
        timed_out = True
    _kill_group(proc.pid)  # whatever is left of its process group
    cleanup()
    for thread in threads:
        thread.join(timeout=10)
    return output.get("out", b""), output.get("err", b""), timed_out


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap(tag: str) -> int:
    """Kill every process whose environment carries `tag` (an unisolated run's processes,
    `setsid` ones included); how many were killed."""
    needle = f"{_TAG}={tag}".encode()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
