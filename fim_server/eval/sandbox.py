"""Run an untrusted Python program: a fresh temporary directory, CPU-time, memory, file
size and wall-clock limits, no network, and the whole process group killed on time-out.

No network: inside a new network namespace (`unshare --net`, which has only a downed
loopback) where the machine allows it, and in every case with the socket module's
constructors replaced by ones that raise, before the program runs.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from enum import StrEnum

_NO_NETWORK_PRELUDE = """\
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


class Outcome(StrEnum):
    OK = "ok"  # exited with status 0
    ERROR = "error"  # non-zero exit, an exception, or killed by a limit other than time
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    file_mb: int = 16


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    returncode: int | None
    stdout: str
    stderr: str


@functools.cache
def _unshare_net() -> list[str]:
    """The command prefix that gives the child its own empty network namespace, or []
    where this machine refuses it (no unshare, or not allowed in this container)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    try:
        done = subprocess.run([unshare, "--net", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [unshare, "--net"] if done.returncode == 0 else []


def _limit(limits: SandboxLimits) -> None:  # runs in the child, before exec
    os.setsid()
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_python(program: str, stdin: str = "", limits: SandboxLimits | None = None) -> RunResult:
    limits = limits or SandboxLimits()
    with tempfile.TemporaryDirectory(prefix="fim-eval-") as workdir:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as fh:
            fh.write(program)
        command = [*_unshare_net(), sys.executable, "-I", "-c", _NO_NETWORK_PRELUDE]
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "HOME": workdir, "PYTHONHASHSEED": "0"},
            preexec_fn=functools.partial(_limit, limits),
        )
        try:
            out, err = proc.communicate(stdin.encode(), timeout=limits.wall_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return RunResult(Outcome.TIMEOUT, None, _text(out), _text(err))
        if proc.returncode == 0:
            outcome = Outcome.OK
        elif proc.returncode == -signal.SIGXCPU:
            outcome = Outcome.TIMEOUT  # the CPU-time limit: a busy loop, not a crash
        else:
            outcome = Outcome.ERROR
        return RunResult(outcome, proc.returncode, _text(out), _text(err))


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
