"""The first process of an evaluation run's namespaces (fim_server/eval/sandbox.py starts
it through `unshare`, as `python -I -S sandbox_init.py CONFIG`). Standard library only:
it runs before the program, in the PID, mount, network and IPC namespaces `unshare` made.

1. It builds the program's file system: a fresh tmpfs of the run's disk size holds the new
   root, the run's directory (/sandbox/run), /tmp and /dev/shm; the interpreter, its
   standard library and its shared libraries are bound read-only at their own paths (the
   plan comes from sandbox.py); a few device nodes and the namespace's own /proc complete
   it. Then pivot_root, so nothing of the host's tree is left in the mount namespace.
2. It forks the program: per-process limits, an unprivileged user (as root), a user
   namespace of its own (so RLIMIT_NPROC counts this run's processes and nothing else),
   no new privileges and a seccomp filter on socket families, then exec.
3. It waits, and meanwhile sums the memory of every process in the namespace (and the
   System V shared memory and memfd files they hold); over the run's limit, it kills them
   all. When the program exits it exits with its status, and the kernel kills whatever
   the program left behind.

Exit status: the program's (128 + signal when a signal ended it; 1 for its own 125);
125 when setting up failed (with "fim-sandbox: setup failed" on stderr); 137 when the
memory limit was hit.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import struct
import sys

SETUP_FAILED = 125
MEMORY_EXCEEDED = 128 + signal.SIGKILL  # what the kernel's OOM killer would have left
RUN_DIR = "/sandbox/run"
DEVICES = ("null", "zero", "full", "random", "urandom")
POLL_S = 0.01  # how often the memory of the run is summed

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
ST_RELATIME = 4096
MNT_DETACH = 2
CLONE_NEWUSER = 0x10000000
PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 4, 22, 38
SECCOMP_MODE_FILTER = 2

# Per architecture: the audit value seccomp sees, the numbers of pivot_root, socket and
# socketpair, and those refused outright: io_uring_setup (io_uring opens sockets without
# calling socket()) and the kernel keyrings (add_key, request_key, keyctl: the session
# keyring the caller inherited holds its keys, and nobody's user keyring is one every
# run shares).
ARCHES = {
    "x86_64": (
        0xC000003E,
        {"pivot_root": 155, "socket": 41, "socketpair": 53},
        (425, 248, 249, 250),
    ),
    "aarch64": (
        0xC00000B7,
        {"pivot_root": 41, "socket": 198, "socketpair": 199},
        (425, 217, 218, 219),
    ),
}
ALLOWED_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6: inside the empty network namespace

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    result = libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data or None))
    check(result, f"mount {target}")


def remount_readonly(target: str, extra: int = MS_NOSUID | MS_NODEV) -> None:
    """Make the bind mount at `target` read-only, keeping the flags it has (a user namespace
    may not drop the flags a mount was locked with)."""
    have = os.statvfs(target).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | extra
    flags |= have & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    if have & ST_RELATIME:
        flags |= MS_RELATIME
    mount(None, target, None, flags)


def mount_point(path: str, like: str) -> None:
    """An empty directory or file at `path` to mount `like` on."""
    if os.path.isdir(like):
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            open(path, "wb").close()


def build_root(config: dict) -> str:
    """The new root, ready for pivot_root; every host path it shows is read-only."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    workdir = config["workdir"]
    files = {}
    for name in os.listdir(workdir):  # the host wrote main.py there
        path = os.path.join(workdir, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                files[name] = fh.read()
    # The run's only writable storage, all in one tmpfs: its size is the run's disk.
    stage = os.path.dirname(workdir)  # private to this run, so hiding it hides nothing else
    size = f"size={config['disk_mb']}m,nr_inodes={config['inodes']},mode=755"
    mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, size)
    root, run, tmp, shm = (os.path.join(stage, name) for name in ("root", "run", "tmp", "shm"))
    os.mkdir(root)
    os.mkdir(run, 0o700)
    for shared in (tmp, shm):
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
    for name, data in files.items():
        with open(os.path.join(run, name), "wb") as fh:
            fh.write(data)
    uid = config["uid"]
    if uid is not None:
        for path in [run, *(os.path.join(run, name) for name in files)]:
            os.chown(path, uid, uid)
    mount(root, root, None, MS_BIND)  # pivot_root needs a mount point
    for kind, path, *rest in config["view"]:
        target = root + path
        if kind == "bind":
            mount_point(target, path)
            mount(path, target, None, MS_BIND)
            remount_readonly(target)
        elif kind == "hide":  # a folder inside a bound one (site-packages): shown empty
            flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
            mount("tmpfs", target, "tmpfs", flags, "size=4k,mode=555")
        elif kind == "link":
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                os.symlink(rest[0], target)
    for name in DEVICES:
        target = os.path.join(root, "dev", name)
        mount_point(target, f"/dev/{name}")
        mount(f"/dev/{name}", target, None, MS_BIND)
        remount_readonly(target, extra=MS_NOSUID)  # nodev would make them unusable
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{fd}", os.path.join(root, "dev", name))
    os.symlink("/proc/self/fd", os.path.join(root, "dev", "fd"))
    for source, inside in ((run, RUN_DIR), (tmp, "/tmp"), (shm, "/dev/shm")):
        os.makedirs(root + inside, exist_ok=True)
        mount(source, root + inside, None, MS_BIND)
    os.makedirs(os.path.join(root, "proc"))
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    return root


def enter_root(root: str, syscalls: dict[str, int]) -> None:
    """pivot_root into `root` and detach the host's tree: unlike chroot, nothing is left
    to climb back to, even for a process holding capabilities in a namespace of its own."""
    os.chdir(root)
    check(libc.syscall(syscalls["pivot_root"], b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "umount the host's root")
    os.chdir("/")
    remount_readonly("/")


def seccomp_filter(audit_arch: int, syscalls: dict[str, int], refused: tuple[int, ...]) -> bytes:
    """A BPF program: socket() and socketpair() only for the families the empty network
    namespace contains (AF_VSOCK, for one, ignores network namespaces and reaches the
    hypervisor), the `refused` calls failing with ENOSYS, and nothing from another ABI
    (x32, i386) that would dodge these numbers."""
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, JMP|JEQ|K, JMP|JGE|K, RET|K
    allow, kill = 0x7FFF0000, 0x80000000  # SECCOMP_RET_ALLOW, SECCOMP_RET_KILL_PROCESS
    enosys, eafnosupport = 0x00050000 | 38, 0x00050000 | 97  # SECCOMP_RET_ERRNO | errno
    families = ALLOWED_FAMILIES
    program = [
        (ld, 0, 0, 4),  # arch
        (jeq, 1, 0, audit_arch),
        (ret, 0, 0, kill),
        (ld, 0, 0, 0),  # syscall number
        (jge, 0, 1, 0x40000000),  # x32
        (ret, 0, 0, enosys),
    ]
    for number in refused:
        program += [(jeq, 0, 1, number), (ret, 0, 0, enosys)]
    program += [
        (jeq, 1, 0, syscalls["socket"]),
        (jeq, 0, 2 + len(families), syscalls["socketpair"]),
        (ld, 0, 0, 16),  # args[0], low half: the family
        *((jeq, len(families) - i, 0, family) for i, family in enumerate(families)),
        (ret, 0, 0, eafnosupport),
        (ret, 0, 0, allow),
    ]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def install_seccomp(audit_arch: int, syscalls: dict[str, int], refused: tuple[int, ...]) -> None:
    code = seccomp_filter(audit_arch, syscalls, refused)
    buffer = ctypes.create_string_buffer(code, len(code))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(code) // 8, ctypes.addressof(buffer))
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def start_program(
    config: dict, audit_arch: int, syscalls: dict[str, int], refused: tuple[int, ...]
) -> None:
    """In the forked child: limits, an unprivileged identity, then the program."""
    os.chdir(RUN_DIR)
    mb = 1024 * 1024
    cpu, memory, size = config["cpu_s"], config["memory_mb"] * mb, config["file_mb"] * mb
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (config["files"], config["files"]))
    uid = config["uid"]
    if uid is not None:  # root: the kernel never applies RLIMIT_NPROC to uid 0
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    # Process counts are kept per (user namespace, uid): in a namespace of its own, the
    # limit counts this run's processes only. Set after unshare, since a new namespace
    # takes its creator's limit as the ceiling for the level above it.
    check(libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
    processes = config["processes"]
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    install_seccomp(audit_arch, syscalls, refused)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    python = config["python"]
    os.execve(python, [python, "-I", "-c", config["prelude"]], config["env"])


def memory_in_use() -> int:
    """Bytes the run's processes hold: their anonymous and shared resident memory, the
    memfd files they keep open, and System V shared memory (which outlives processes).
    Pages shared between processes (after fork) count once per process: an overcount."""
    total = 0
    me = str(os.getpid())
    for name in os.listdir("/proc"):
        if not name.isdigit() or name == me:
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as fh:
                for line in fh:
                    if line.startswith((b"RssAnon:", b"RssShmem:")):
                        total += int(line.split()[1]) * 1024
            fds = f"/proc/{name}/fd"
            for fd in os.listdir(fds):
                if os.readlink(f"{fds}/{fd}").startswith("/memfd:"):
                    total += os.stat(f"{fds}/{fd}").st_blocks * 512
        except OSError:
            continue  # it exited meanwhile
    try:
        with open("/proc/sysvipc/shm", "rb") as fh:
            next(fh)
            total += sum(int(line.split()[3]) for line in fh)
    except (OSError, StopIteration):
        pass
    return total


def supervise(child: int, memory_mb: int, report: int) -> int:
    """Reap every process the namespace leaves to its init; end the run when the program
    exits, or kill it all once the run holds more memory than its limit. `report` is
    where the child says why it could not start the program (closed at exec)."""
    limit = memory_mb * 1024 * 1024
    while True:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return SETUP_FAILED
            if pid == 0:
                break
            if pid == child:
                failure = os.read(report, 4096)
                if failure:
                    print(f"fim-sandbox: setup failed: {failure.decode()}", file=sys.stderr)
                    return SETUP_FAILED
                if os.WIFSIGNALED(status):
                    return 128 + os.WTERMSIG(status)
                # SETUP_FAILED is the sandbox's to say: a program cannot claim it (and make
                # the caller believe this machine cannot isolate programs).
                code = os.WEXITSTATUS(status)
                return 1 if code == SETUP_FAILED else code
        used = memory_in_use()
        if used > limit:
            print(
                f"fim-sandbox: memory limit: the run's processes held {used >> 20} MB, "
                f"over its {memory_mb} MB; all were killed",
                file=sys.stderr,
                flush=True,
            )
            os.kill(-1, signal.SIGKILL)  # from a PID namespace's init: all but itself
            return MEMORY_EXCEEDED
        signal.sigtimedwait({signal.SIGCHLD}, POLL_S)  # wakes as soon as a child ends


def main() -> int:
    config = json.loads(sys.argv[1])
    try:
        audit_arch, syscalls, refused = ARCHES[os.uname().machine]
        root = build_root(config)
        enter_root(root, syscalls)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the program may not ptrace or read its init
    except (OSError, KeyError) as exc:
        print(f"fim-sandbox: setup failed: {exc!r}", file=sys.stderr)
        return SETUP_FAILED
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    report, reporting = os.pipe()  # close-on-exec: empty once the program runs
    child = os.fork()
    if child == 0:
        os.close(report)
        try:
            start_program(config, audit_arch, syscalls, refused)
        except Exception as exc:  # whatever it was, the child never returns into the init
            os.write(reporting, repr(exc).encode()[:4096])
        os._exit(SETUP_FAILED)
    os.close(reporting)
    return supervise(child, config["memory_mb"], report)


if __name__ == "__main__":
    sys.exit(main())
