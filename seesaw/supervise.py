"""A container that runs several processes of one kind (vLLM engines, trainer ranks) lives as
long as all of them: when one exits, the others are stopped and the container exits with its
code, so the pod fails and the gang's failure policy takes over."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

STOP_SECONDS = 20


def die_with_parent() -> None:
    """Run in a child before it starts (preexec_fn): the kernel kills it when the process that
    started it dies, even by SIGKILL, so no process outlives the one supervising it (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def cpu_share(base: dict[str, str], processes: int) -> dict[str, str]:
    """The pod's CPU threads (SEESAW_CPU_THREADS) split over `processes`; nothing where the
    pod sets none."""
    from seesaw import pod_contract as pc

    if not base.get(pc.CPU_THREADS):
        return {}
    share = str(max(1, int(base[pc.CPU_THREADS]) // processes))
    return {pc.CPU_THREADS: share, "OMP_NUM_THREADS": share}


def launch(module: str, envs: list[dict[str, str]], what: str) -> int:
    """A container's entry point: with one process it becomes `python -m module` itself
    (nothing to supervise), with several it runs them all (run_all)."""
    if len(envs) == 1:
        os.execve(sys.executable, [sys.executable, "-m", module], envs[0])
    return run_all(module, envs, what)


def exit_code(returncode: int) -> int:
    """A child's end as a shell reports it: 128 + N for a death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run_all(module: str, envs: list[dict[str, str]], what: str) -> int:
    """Start `python -m module` once per environment and supervise them; `what` names one
    process in messages ("rollout engine", "trainer rank")."""
    children = [subprocess.Popen([sys.executable, "-m", module], env=env, preexec_fn=die_with_parent) for env in envs]

    def stop(*_: object) -> None:
        """Stop every process; one hung in its shutdown (after a GPU fault) is killed."""
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(143)))
    while True:
        for index, child in enumerate(children):
            code = child.poll()
            if code is not None:
                print(f"{what} {index} exited with code {exit_code(code)}: stopping the pod's other {what}s", flush=True)
                stop()
                return exit_code(code) or 1  # one that ends alone, even cleanly, breaks the pod
        time.sleep(0.5)
