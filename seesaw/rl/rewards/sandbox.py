"""Run untrusted Python (a response's code) in a resource-limited, network-less subprocess.

Layers, each used when this host supports it (`isolation()` says which are in force):
- a fresh network namespace with only a down loopback (`unshare --net`), and a fresh PID
  namespace whose death kills every process the code started (`--pid --fork --kill-child`);
- a throwaway unprivileged uid (`setpriv`), because root ignores RLIMIT_NPROC: each run gets
  its own uid from a pool, so the process limit is per run and a fork bomb stops there;
- rlimits (`prlimit`): CPU seconds, address space, file size (which also caps the captured
  output: it goes to files), open files, no core dumps;
- a wall-clock timeout (`timeout --signal=KILL` inside the chain; its own session and
  process group, killed as a whole, as the backstop);
- a temporary working directory, removed afterwards, and a scrubbed environment.
Without the namespaces (an unprivileged host without user namespaces) the network is NOT
isolated and `isolation().network` is False. The file system is not virtualised: the code
can read what its uid can read and write world-writable places such as /tmp.
"""
from __future__ import annotations

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
# uids handed to sandboxed runs; none of them has an account or owns a file outside a run
UID_POOL_START = 2_000_000
UID_POOL_SIZE = 100_000
_uid_counter = itertools.count()
_uid_lock = threading.Lock()
# how long past its own limit the inner `timeout` gets before the run is killed from outside
OUTER_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class SandboxLimits:
    timeout_seconds: float = 5.0
    memory_mib: int = 512
    # None: the wall-clock timeout rounded up, plus one
    cpu_seconds: int | None = None
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
    network: bool
    pid_namespace: bool
    # RLIMIT_NPROC holds: the code runs as an unprivileged uid
    process_limit: bool
    rlimits: bool
    # argv before the rlimit wrapper: namespaces, then the uid switch (a {uid} placeholder)
    prefix: tuple[str, ...]
    # an interpreter the sandbox uid can run with its standard library (this one's may sit
    # in a directory only root can enter)
    python: str


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


def _interpreters() -> list[str]:
    found = [sys.executable]
    for name in ("python3", "python"):
        path = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
        if path and path not in found:
            found.append(path)
    return found


def _probe(prefix: list[str], python: str) -> bool:
    try:
        # decimal and json load extension modules: the whole standard library must be reachable
        done = subprocess.run(prefix + [python, "-I", "-S", "-c", "import collections, decimal, json"], cwd="/",
                              capture_output=True, timeout=30, start_new_session=True)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@functools.cache
def isolation() -> Isolation:
    """The strongest isolation this host allows, found by trying it once."""
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    namespaces = [unshare, "--net", "--pid", "--fork", "--kill-child"] if unshare else None
    drop = [setpriv, "--reuid={uid}", "--regid={uid}", "--clear-groups", "--inh-caps=-all", "--"] if setpriv else None
    probe_uid = str(UID_POOL_START)
    candidates = []
    if os.geteuid() == 0:
        if namespaces and drop:
            candidates.append((namespaces + ["--"] + drop, True, True, True))
        if namespaces:
            candidates.append((namespaces + ["--"], True, True, False))
        if drop:
            candidates.append((drop, False, False, True))
    elif unshare:
        # unprivileged: a user namespace makes the others possible; namespaced root does not
        # bypass RLIMIT_NPROC, which is checked against the initial namespace
        candidates.append(([unshare, "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child", "--"],
                           True, True, True))
    rlimits = shutil.which("prlimit") is not None
    wrapper = _rlimit_wrapper(SandboxLimits()) if rlimits else []
    for prefix, network, pid_namespace, process_limit in candidates:
        for python in _interpreters():
            # the same chain a run uses: an exec made while privileges are still held could
            # reach an interpreter that the sandboxed code itself cannot
            if _probe([part.replace("{uid}", probe_uid) for part in prefix] + wrapper, python):
                return Isolation(network, pid_namespace, process_limit, rlimits, tuple(prefix), python)
    return Isolation(False, False, False, rlimits, (), sys.executable)


def _next_uid() -> int:
    with _uid_lock:
        return UID_POOL_START + (os.getpid() * 7919 + next(_uid_counter)) % UID_POOL_SIZE


def _rlimit_wrapper(limits: SandboxLimits) -> list[str]:
    memory = limits.memory_mib * MiB
    return [shutil.which("prlimit") or "prlimit", f"--cpu={limits.cpu_limit}", f"--as={memory}",
            f"--fsize={limits.file_size_mib * MiB}", f"--nproc={limits.max_processes}",
            f"--nofile={limits.max_open_files}", "--core=0", "--"]


def _set_rlimits_in_child(limits: SandboxLimits) -> None:
    import resource

    memory = limits.memory_mib * MiB
    for which, value in ((resource.RLIMIT_CPU, limits.cpu_limit), (resource.RLIMIT_AS, memory),
                         (resource.RLIMIT_FSIZE, limits.file_size_mib * MiB), (resource.RLIMIT_NPROC, limits.max_processes),
                         (resource.RLIMIT_NOFILE, limits.max_open_files), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))


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


def run_python(source: str, stdin: str = "", limits: SandboxLimits = SandboxLimits(),
               python: str | None = None) -> SandboxResult:
    """Run `source` as a Python program (main.py in a fresh directory) with `stdin` as input.
    `python`: the interpreter (default: the one `isolation()` found the sandbox can run)."""
    found = isolation()
    python = python or found.python
    root = tempfile.mkdtemp(prefix="seesaw-sandbox-")
    try:
        work = os.path.join(root, "work")
        os.mkdir(work)
        with open(os.path.join(work, "main.py"), "w") as handle:
            handle.write(source)
        uid = _next_uid()
        if found.process_limit and os.geteuid() == 0:
            os.chmod(root, 0o711)
            for path in (work, os.path.join(work, "main.py")):
                os.chown(path, uid, uid)
        argv = [part.replace("{uid}", str(uid)) for part in found.prefix]
        if found.rlimits:
            argv += _rlimit_wrapper(limits)
        timeout_tool = shutil.which("timeout")
        if timeout_tool:
            # The wall-clock limit is enforced inside, by a parent that reaps what it kills:
            # killing the chain from outside would orphan its processes as zombies.
            argv += [timeout_tool, "--signal=KILL", f"{limits.timeout_seconds}s"]
        # -I: no PYTHON* variables, no user site, no script dir games; -S: no site-packages
        argv += [python, "-I", "-S", "main.py"]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1"}
        stdout_path, stderr_path = os.path.join(root, "stdout"), os.path.join(root, "stderr")
        started = time.perf_counter()
        timed_out = False
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=work, env=env, start_new_session=True,
                preexec_fn=None if found.rlimits else functools.partial(_set_rlimits_in_child, limits))
            try:
                process.communicate(stdin.encode(), timeout=limits.timeout_seconds + (OUTER_GRACE_SECONDS if timeout_tool else 0))
            except subprocess.TimeoutExpired:
                timed_out = True
            except BrokenPipeError:
                # the program exited without reading its input
                process.wait(timeout=limits.timeout_seconds)
            finally:
                # also reaps what the program left running in its process group
                _kill_group(process.pid)
                process.wait()
                _await_group_exit(process.pid)
        seconds = time.perf_counter() - started
        # `timeout` exits with 137 (128 + SIGKILL) when it had to kill the program
        timed_out = timed_out or (timeout_tool is not None and process.returncode == 137
                                  and seconds >= limits.timeout_seconds)
        stdout, truncated = _read_capped(stdout_path, limits.max_output_bytes)
        stderr, _ = _read_capped(stderr_path, limits.max_output_bytes)
        return SandboxResult(None if timed_out else process.returncode, stdout, stderr, timed_out, truncated, seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
