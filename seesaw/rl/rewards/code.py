"""Code reward: run a response's program against test cases in a sandbox.

Each test runs the program in a fresh process: its own session (killed as a group), a
scratch working directory, a scrubbed environment, rlimits on CPU seconds, address space,
file size and processes, a wall-clock timeout, and no network where the kernel allows a new
network namespace (`unshare --net`, needs root or user namespaces; without it the sandbox
says so in `NETWORK_ISOLATED` and the limits still apply). Started as root, the program runs
as `nobody` (setpriv): root ignores the process-count limit, and a fork bomb must not.
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

NOBODY = 65534
_FENCE = re.compile(r"```(?:python|py)?\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class CodeTestCase:
    stdin: str
    expected_stdout: str


@dataclass(frozen=True)
class SandboxLimits:
    timeout_seconds: float = 5.0
    memory_mib: int = 512
    max_processes: int = 64
    max_file_mib: int = 16


def _network_isolation_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    try:
        return subprocess.run([unshare, "--net", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


NETWORK_ISOLATED = _network_isolation_works()


def extract_program(response: str) -> str:
    """The last fenced code block, or the whole response if it has none."""
    blocks = _FENCE.findall(response)
    return blocks[-1] if blocks else response


def _limits(limits: SandboxLimits):
    def apply() -> None:
        cpu = max(1, int(limits.timeout_seconds) + 1)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        memory = limits.memory_mib * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        size = limits.max_file_mib * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    return apply


def run_case(program: str, case: CodeTestCase, limits: SandboxLimits = SandboxLimits()) -> bool:
    with tempfile.TemporaryDirectory(prefix="seesaw-sandbox-") as scratch:
        path = os.path.join(scratch, "main.py")
        with open(path, "w") as source:
            source.write(program)
        command = [sys.executable, "-I", "-S", path]
        if os.geteuid() == 0 and shutil.which("setpriv"):
            os.chmod(scratch, 0o755)
            os.chmod(path, 0o644)
            command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
        if NETWORK_ISOLATED:
            command = ["unshare", "--net", *command]
        try:
            process = subprocess.Popen(command, cwd=scratch, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "HOME": scratch},
                                       preexec_fn=_limits(limits), start_new_session=True, text=True)
        except OSError:
            return False
        try:
            out, _ = process.communicate(case.stdin, timeout=limits.timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            return False
        finally:
            try:
                os.killpg(process.pid, 9)  # whatever it forked goes too
            except ProcessLookupError:
                pass
        return process.returncode == 0 and out.strip() == case.expected_stdout.strip()


def code_reward(response: str, cases: list[CodeTestCase], limits: SandboxLimits = SandboxLimits(),
                all_or_nothing: bool = True) -> float:
    """1.0 if every case passes (or the fraction passed, with all_or_nothing=False)."""
    if not cases:
        raise ValueError("cases: a code problem needs at least one test case")
    program = extract_program(response)
    passed = sum(run_case(program, case, limits) for case in cases)
    if all_or_nothing:
        return 1.0 if passed == len(cases) else 0.0
    return passed / len(cases)
