"""Run an untrusted Python program (a benchmark's test program around a model's answer):
CPU-time, memory, file size and wall-clock limits, no network, no writes outside its own
fresh directory, and every process it starts killed with it.

Isolation comes from Linux namespaces, through `unshare` (util-linux):

- a network namespace: only a downed loopback, so no socket reaches anything, whatever
  the program imports (`_socket`, a reloaded `socket`, a child process);
- a PID namespace whose first process is a small init (`_INIT`): when it ends, or when
  `unshare` is killed at the wall-clock limit (`--kill-child`), the kernel kills every
  process in the namespace, `setsid` grandchildren and daemons included;
- a mount namespace in which every mount is read-only except the program's directory,
  and the directory that held it is replaced by an empty tmpfs (other runs' files are
  not visible);
- then a user namespace of its own, so the program holds no capability over those
  mounts: it cannot remount them writable or unmount its directory.

As root `unshare` is used directly; otherwise through a user namespace
(`--user --map-root-user`) where the kernel allows one. Where neither works the sandbox
refuses to run (SandboxUnavailable) unless the caller passes `unsafe_no_isolation`: then
the program runs with the limits, a patched `socket` module (which a program can get
around) and a reaper that kills every process carrying the run's tag in its environment.
"""

from __future__ import annotations

import contextlib
import functools
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

# The first process of the namespaces: make the mounts private and read-only, give the
# program its directory, fork it into a user namespace of its own with its limits, and
# exit with its status (which makes the kernel kill whatever it left behind).
# argv: workdir, cpu_s, memory_mb, file_mb, python, prelude.
_INIT = r"""
import ctypes, os, resource, sys
SETUP_FAILED = 125
libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": 1024,
         "nodiratime": 2048, "relatime": 1 << 21}

def mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")

def mounts():
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")
        yield point, fields[5].split(",")

def setup(workdir):
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    keep = os.open(workdir, os.O_PATH)
    parent = os.path.dirname(workdir)
    mount("tmpfs", parent, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    os.mkdir(workdir)
    mount(f"/proc/self/fd/{keep}", workdir, None, MS_BIND)
    os.close(keep)
    for point, options in sorted(mounts(), key=lambda m: m[0]):
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options:
            flags |= FLAGS.get(option, 0)
        try:
            mount(None, point, None, flags)
        except OSError:
            if not os.statvfs(point).f_flag & os.ST_RDONLY:
                raise
    mount(None, workdir, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)

def main():
    workdir, cpu_s, memory_mb, file_mb, python, prelude = sys.argv[1:7]
    try:
        setup(workdir)
    except OSError as exc:
        print(f"fim-sandbox: setup failed: {exc}", file=sys.stderr)
        return SETUP_FAILED
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(workdir)
            mb = 1024 * 1024
            cpu, memory, size = int(cpu_s), int(memory_mb) * mb, int(file_mb) * mb
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")
            libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
            os.execv(python, [python, "-I", "-c", prelude])
        except OSError as exc:
            print(f"fim-sandbox: setup failed: {exc}", file=sys.stderr)
            os._exit(SETUP_FAILED)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)

sys.exit(main())
"""
_SETUP_FAILED = 125

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
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 16
    # Where the machine cannot isolate programs: run them anyway (the user said so with
    # --unsafe-no-isolation) instead of refusing.
    unsafe_no_isolation: bool = False


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    returncode: int | None
    stdout: str
    stderr: str


_NAMESPACES = ["--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]


@functools.cache
def isolation() -> tuple[str, ...] | None:
    """The `unshare` command prefix that isolates a program on this machine, or None
    where it cannot (no unshare, or namespaces refused here). Checked once."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    candidates = [[unshare, *_NAMESPACES]]
    if os.geteuid() != 0:
        candidates.insert(0, [unshare, "--user", "--map-root-user", *_NAMESPACES])
    for prefix in candidates:
        try:
            with _run_directory("fim-eval-probe-") as workdir:
                args = _init_args(workdir, SandboxLimits(), prelude="pass")
                done = subprocess.run(
                    [*prefix, sys.executable, "-I", "-c", _INIT, *args],
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
        "PID and mount namespaces, as root or through a user namespace), which this machine "
        "refuses; test programs would run with access to the network and the file system. "
        "Pass --unsafe-no-isolation to run them anyway."
    )


@contextlib.contextmanager
def _run_directory(prefix: str) -> Iterator[str]:
    """A fresh directory for one program, alone in a private parent: the sandbox hides the
    parent behind an empty tmpfs, and that must never hide anything else (the shared
    temporary folder may hold the Python that runs the program, or other runs)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as parent:
        workdir = os.path.join(parent, "run")
        os.mkdir(workdir)
        yield workdir


def _init_args(workdir: str, limits: SandboxLimits, prelude: str = _PRELUDE) -> list[str]:
    return [
        workdir,
        str(limits.cpu_s),
        str(limits.memory_mb),
        str(limits.file_mb),
        sys.executable,
        prelude,
    ]


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
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "PYTHONHASHSEED": "0"}
        if prefix is not None:
            command = [*prefix, sys.executable, "-I", "-c", _INIT, *_init_args(workdir, limits)]
            preexec = os.setsid  # unshare leads a process group of its own
        else:
            command = [sys.executable, "-I", "-c", _PRELUDE]
            env[_TAG] = tag
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
        out, err, timed_out = _communicate(proc, stdin.encode(), limits.wall_s, cleanup)
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
    proc: subprocess.Popen[bytes], data: bytes, wall_s: float, cleanup: Callable[[], object]
) -> tuple[bytes, bytes, bool]:
    """Feed stdin and collect the output of `proc` until it exits or `wall_s` passes (then
    its process group is killed); then `cleanup` kills what it left behind, which closes
    the pipes those processes held. Waiting for the process rather than for the end of
    its output is what keeps a left-behind daemon from hanging the run."""
    output: dict[str, bytes] = {}

    def drain(name: str, pipe: IO[bytes]) -> None:
        output[name] = pipe.read()

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
