"""Run untrusted Python (a response's code) in a bubblewrap sandbox with bounded resources.

Every run is one `bwrap` (bubblewrap, Debian package `bubblewrap`) with new user, mount,
network, PID, IPC, UTS and cgroup namespaces:
- file system: a fresh root holding only the system's interpreter and libraries (`/usr`, the
  top-level links into it, `/etc/ld.so.cache`) bound read-only, a minimal `/dev`, and a
  scratch tmpfs of `file_size_mib` at `/sandbox` (the working directory, with the program as
  main.py) as the only writable place. Nothing else of the host exists in there: not the
  project, the model, the checkpoints, other runs' scratch, /tmp, /proc or the service
  account token; the root and /dev are remounted read-only;
- network: a network namespace with only a down loopback (no host, no job port, no abstract
  Unix socket of the host);
- processes: a PID namespace whose first process is the program's (`--as-pid-1`), so that
  the run ends only once every process it started is gone; a new session; no capabilities.
  RLIMIT_NPROC is counted per user namespace (Linux >= 5.14), so the process limit holds
  per run; as root the chain first switches to a throwaway uid from a pool (`setpriv`),
  because root ignores the limit;
- system calls: a seccomp filter (libseccomp) refuses new namespaces (a nested user
  namespace would allow a tmpfs outside every limit), mount, ptrace, bpf, io_uring and the
  other kernel interfaces a container's default profile withholds;
- rlimits (`prlimit`): CPU seconds, address space, file size (which also caps the captured
  output: it goes to files outside), open files, processes, no core dumps;
- a wall-clock timeout (`timeout --signal=KILL` inside, so that what it kills is reaped; the
  chain's own session killed as a group, and bwrap's --die-with-parent, as the backstop);
- a cleared environment.
Where bwrap cannot create its namespaces (not installed, a container seccomp profile that
forbids unshare/mount, no unprivileged user namespaces) nothing runs: `isolation()` says why and
`run_python` raises `SandboxUnavailable`. There is no weaker fallback.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import itertools
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

MiB = 1024 * 1024
# uids handed to sandboxed runs started by root; none has an account or owns a file
UID_POOL_START = 2_000_000
UID_POOL_SIZE = 100_000
_uid_counter = itertools.count()
_uid_lock = threading.Lock()
# how long past its own limit the inner `timeout` gets before the run is killed from outside
OUTER_GRACE_SECONDS = 2.0
# the working directory inside the sandbox: a tmpfs, the only writable place
SCRATCH = "/sandbox"
# what an interpreter under /usr needs: /usr itself and the merged-/usr links (or, on a
# split-/usr system, the directories) at the top level; the loader's cache for libraries in
# /usr/local/lib (the python:3.x images' libpython)
SYSTEM_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache",)
# where a sandbox interpreter is looked for: it must live in a tree the sandbox binds
SYSTEM_PATH = "/usr/local/bin:/usr/bin"
POD_NEEDS = ("the container that scores rewards needs bwrap installed (Debian package bubblewrap) and the right to "
             "create user, mount and network namespaces: seccompProfile Unconfined and appArmorProfile Unconfined "
             "(the operator sets both for spec.reward.type: code), on nodes whose kernel allows unprivileged user "
             "namespaces (user.max_user_namespaces > 0; Ubuntu >= 23.10 also kernel.apparmor_restrict_unprivileged_userns=0); "
             "see docs/OPERATOR.md, \"Code rewards\"")


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot isolate code on this host; the message says why and what it needs."""


# Refused to the code (EPERM) by a seccomp filter bwrap loads before it runs. New namespaces:
# a nested user namespace would give the code a mount namespace and a tmpfs outside every
# limit (its pages count against the pod's memory), and bwrap's own --disable-userns cannot
# work in a pod, whose /proc/sys is read-only. The rest: kernel interfaces that the runtime's
# default seccomp profile keeps from containers, which a code job's checkpoint engine runs
# without for bwrap's sake (docs/OPERATOR.md).
DENIED_SYSCALLS = ("unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "ptrace", "process_vm_readv",
                   "process_vm_writev", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
                   "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "init_module",
                   "finit_module", "delete_module", "syslog", "acct", "quotactl", "open_by_handle_at",
                   "name_to_handle_at", "fsopen", "fsmount", "move_mount", "open_tree", "mount_setattr")
# clone's namespace flags (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET)
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7


def _scmp_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class _ArgCompare(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


@functools.cache
def seccomp_filter() -> bytes:
    """The BPF program bwrap loads (--seccomp) before the code runs, compiled by libseccomp
    (Debian's libseccomp2, which apt itself needs) for this machine's architecture; a system
    call of another ABI (32-bit, x32) kills the process."""
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError as err:
        raise SandboxUnavailable(f"libseccomp is not installed (Debian package libseccomp2): {err}") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                           ctypes.POINTER(_ArgCompare)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    context = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not context:
        raise SandboxUnavailable("libseccomp could not start a filter")
    try:
        def deny(syscall: str, action: int, *compare: _ArgCompare) -> None:
            number = lib.seccomp_syscall_resolve_name(syscall.encode())
            if number < 0:  # not a system call of this architecture
                return
            array = (_ArgCompare * len(compare))(*compare) if compare else None
            if lib.seccomp_rule_add_array(context, action, number, len(compare), array) != 0:
                raise SandboxUnavailable(f"libseccomp refused a rule for {syscall}")

        for syscall in DENIED_SYSCALLS:
            deny(syscall, _scmp_errno(errno.EPERM))
        for flag in CLONE_NAMESPACE_FLAGS:
            deny("clone", _scmp_errno(errno.EPERM), _ArgCompare(0, SCMP_CMP_MASKED_EQ, flag, flag))
        # clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc use clone
        deny("clone3", _scmp_errno(errno.ENOSYS))
        with tempfile.TemporaryFile() as handle:
            if lib.seccomp_export_bpf(context, handle.fileno()) != 0:
                raise SandboxUnavailable("libseccomp could not export the filter")
            handle.seek(0)
            return handle.read()
    finally:
        lib.seccomp_release(context)


@dataclass(frozen=True)
class SandboxLimits:
    timeout_seconds: float = 5.0
    memory_mib: int = 512
    # None: the wall-clock timeout rounded up, plus one
    cpu_seconds: int | None = None
    # the largest file the code may write (its output included) and the size of its scratch tmpfs
    file_size_mib: int = 16
    max_processes: int = 16
    max_open_files: int = 64
    max_output_bytes: int = 1 * MiB

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds: expected > 0, got {self.timeout_seconds}")
        for name in ("memory_mib", "file_size_mib", "max_processes", "max_open_files", "max_output_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")

    @classmethod
    def from_spec(cls, sandbox_spec: dict[str, Any]) -> "SandboxLimits":
        """From a resolved spec.reward.sandbox (timeoutSeconds, memoryMiB)."""
        return cls(timeout_seconds=float(sandbox_spec.get("timeoutSeconds", 5)),
                   memory_mib=int(sandbox_spec.get("memoryMiB", 512)))

    @property
    def cpu_limit(self) -> int:
        return self.cpu_seconds if self.cpu_seconds is not None else math.ceil(self.timeout_seconds) + 1


@dataclass(frozen=True)
class Isolation:
    # only the interpreter's files are visible, and only the scratch directory is writable
    filesystem: bool
    network: bool
    pid_namespace: bool
    # RLIMIT_NPROC holds per run (a user namespace per run, and never root's uid)
    process_limit: bool
    rlimits: bool
    # argv before the per-run options: the uid switch as root (a {uid} placeholder), then bwrap
    prefix: tuple[str, ...]
    # the interpreter inside the sandbox (the job's own may live where the sandbox cannot see)
    python: str
    # why the sandbox cannot run here (None when it can)
    problem: str | None = None
    # run inside, so under /usr
    prlimit: str = "/usr/bin/prlimit"
    timeout: str = "/usr/bin/timeout"

    @property
    def complete(self) -> bool:
        return self.problem is None


@dataclass
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    output_truncated: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def system_binds() -> list[str]:
    """bwrap options that show the system's interpreter and libraries, read-only, and nothing else."""
    options: list[str] = []
    for tree in SYSTEM_TREES:
        if os.path.islink(tree):
            options += ["--symlink", os.readlink(tree), tree]
        elif os.path.isdir(tree):
            options += ["--ro-bind", tree, tree]
    for path in SYSTEM_FILES:
        if os.path.isfile(path):
            options += ["--ro-bind", path, path]
    return options


def bwrap_prefix(bwrap: str, setpriv: str | None) -> list[str]:
    """The fixed part of every run's command: as root, the switch to a throwaway uid (bwrap
    then runs unprivileged and root's exemption from RLIMIT_NPROC is gone), then bwrap."""
    drop = [setpriv, "--reuid={uid}", "--regid={uid}", "--clear-groups", "--inh-caps=-all", "--"] if setpriv else []
    return drop + [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--as-pid-1", "--new-session",
                   "--clearenv", *system_binds(), "--dev", "/dev"]


def run_options(limits: SandboxLimits, source_fd: int, seccomp_fd: int) -> list[str]:
    """bwrap's per-run options: the scratch tmpfs with the program copied in, the read-only
    root, the working directory, the seccomp filter and the environment."""
    return ["--size", str(limits.file_size_mib * MiB), "--tmpfs", SCRATCH,
            "--file", str(source_fd), f"{SCRATCH}/main.py",
            "--remount-ro", "/dev", "--remount-ro", "/", "--chdir", SCRATCH, "--seccomp", str(seccomp_fd),
            "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", SCRATCH, "--setenv", "TMPDIR", SCRATCH,
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--"]


def rlimit_options(prlimit: str, limits: SandboxLimits) -> list[str]:
    return [prlimit, f"--cpu={limits.cpu_limit}", f"--as={limits.memory_mib * MiB}",
            f"--fsize={limits.file_size_mib * MiB}", f"--nproc={limits.max_processes}",
            f"--nofile={limits.max_open_files}", "--core=0", "--"]


def _unavailable(problem: str) -> Isolation:
    return Isolation(False, False, False, False, False, (), sys.executable, f"{problem}; {POD_NEEDS}")


def kernel_version() -> tuple[int, int]:
    major, minor = (os.uname().release.split(".") + ["0"])[:2]
    return int(major), int("".join(itertools.takewhile(str.isdigit, minor)) or 0)


def _interpreters() -> list[str]:
    """Interpreters the sandbox can see: this one if it lives under /usr, then the system's."""
    found = []
    for path in (os.path.realpath(sys.executable), os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
                 *(shutil.which(name, path=SYSTEM_PATH) or "" for name in ("python3", "python"))):
        if path.startswith("/usr/") and os.access(path, os.X_OK) and path not in found:
            found.append(path)
    return found


@functools.cache
def isolation() -> Isolation:
    """What the sandbox can do on this host, found by running it once."""
    root = os.geteuid() == 0
    bwrap, prlimit, timeout = shutil.which("bwrap"), shutil.which("prlimit"), shutil.which("timeout")
    setpriv = shutil.which("setpriv") if root else None
    if not bwrap:
        return _unavailable("bwrap (bubblewrap) is not installed")
    if not (prlimit and timeout and (setpriv or not root)):
        return _unavailable("prlimit, timeout or setpriv not found (util-linux, coreutils)")
    if not root and kernel_version() < (5, 14):
        # without the uid switch, runs share this process's uid: older kernels count their
        # processes together with this one's threads, and the fork-bomb limit would not hold
        return _unavailable(f"Linux {os.uname().release} counts RLIMIT_NPROC per uid, not per user namespace "
                            "(needs 5.14 or later, or running as root for a uid per run)")
    if not (prlimit.startswith("/usr/") and timeout.startswith("/usr/")):
        return _unavailable(f"prlimit and timeout run inside the sandbox, which shows only /usr; found {prlimit}, {timeout}")
    try:
        seccomp_filter()
    except SandboxUnavailable as err:
        return _unavailable(str(err))
    interpreters = _interpreters()
    if not interpreters:
        return _unavailable("no Python interpreter under /usr (the only tree the sandbox shows)")
    prefix = tuple(bwrap_prefix(bwrap, setpriv))
    errors = []
    for python in interpreters:
        candidate = Isolation(True, True, True, True, True, prefix, python, None, prlimit, timeout)
        # decimal and json load extension modules: the whole standard library must be reachable
        result = _run(candidate, "import collections, decimal, json", "", SandboxLimits(timeout_seconds=30))
        if result.ok:
            return candidate
        errors.append(f"{python}: {(result.stderr.strip() or f'exit status {result.returncode}')[-300:]}")
    return _unavailable(f"bwrap could not start the sandbox ({'; '.join(errors)})")


def require_isolation() -> Isolation:
    """The sandbox, or SandboxUnavailable saying why it cannot isolate code here."""
    found = isolation()
    if not found.complete:
        raise SandboxUnavailable(f"the code sandbox cannot run on this host: {found.problem}")
    return found


def _next_uid() -> int:
    with _uid_lock:
        return UID_POOL_START + (os.getpid() * 7919 + next(_uid_counter)) % UID_POOL_SIZE


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _await_group_exit(pgid: int, seconds: float = 2.0) -> None:
    # SIGKILL is delivered asynchronously: wait, so that a run ends with all its processes
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        _kill_group(pgid)
        time.sleep(0.005)


def _read_capped(path: str, cap: int) -> tuple[str, bool]:
    with open(path, "rb") as handle:
        data = handle.read(cap + 1)
    return data[:cap].decode("utf-8", errors="replace"), len(data) > cap


def _run(found: Isolation, source: str, stdin: str, limits: SandboxLimits, python: str | None = None) -> SandboxResult:
    root = tempfile.mkdtemp(prefix="seesaw-sandbox-")
    try:
        source_path = os.path.join(root, "main.py")
        with open(source_path, "w") as handle:
            handle.write(source)
        # the program reaches the sandbox as an open file that bwrap copies into the scratch
        # tmpfs: no host path needs to be readable by the sandbox's uid
        source_fd = os.open(source_path, os.O_RDONLY)
        seccomp_fd = os.memfd_create("seesaw-seccomp")
        os.write(seccomp_fd, seccomp_filter())
        os.lseek(seccomp_fd, 0, os.SEEK_SET)
        argv = [part.replace("{uid}", str(_next_uid())) for part in found.prefix]
        argv += run_options(limits, source_fd, seccomp_fd) + rlimit_options(found.prlimit, limits)
        argv += [found.timeout, "--signal=KILL", f"{limits.timeout_seconds}s"]
        # -I: no PYTHON* variables, no user site, no script dir games; -S: no site-packages
        argv += [python or found.python, "-I", "-S", "main.py"]
        stdout_path, stderr_path = os.path.join(root, "stdout"), os.path.join(root, "stderr")
        started = time.perf_counter()
        timed_out = False
        try:
            with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
                process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=err, cwd="/",
                                           env={"PATH": "/usr/bin:/bin"}, start_new_session=True,
                                           pass_fds=(source_fd, seccomp_fd))
                try:
                    process.communicate(stdin.encode(), timeout=limits.timeout_seconds + OUTER_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    timed_out = True
                except BrokenPipeError:
                    # the program exited without reading its input
                    process.wait(timeout=limits.timeout_seconds + OUTER_GRACE_SECONDS)
                finally:
                    # bwrap's --die-with-parent takes the sandbox down with the chain
                    _kill_group(process.pid)
                    process.wait()
                    _await_group_exit(process.pid)
        finally:
            os.close(source_fd)
            os.close(seccomp_fd)
        seconds = time.perf_counter() - started
        # `timeout` exits with 137 (128 + SIGKILL) when it had to kill the program (124 where,
        # as the namespace's PID 1, its own SIGKILL to its group spares it)
        timed_out = timed_out or (process.returncode in (124, 137) and seconds >= limits.timeout_seconds)
        stdout, truncated = _read_capped(stdout_path, limits.max_output_bytes)
        stderr, _ = _read_capped(stderr_path, limits.max_output_bytes)
        return SandboxResult(None if timed_out else process.returncode, stdout, stderr, timed_out, truncated, seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_python(source: str, stdin: str = "", limits: SandboxLimits = SandboxLimits(),
               python: str | None = None) -> SandboxResult:
    """Run `source` as a Python program (main.py in a fresh scratch directory) with `stdin` as
    input. `python`: the interpreter, a path under /usr (default: the one `isolation()` found).
    Raises SandboxUnavailable where the sandbox cannot isolate the code."""
    return _run(require_isolation(), source, stdin, limits, python)
