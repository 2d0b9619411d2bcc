"""A container that runs several processes of one kind (vLLM engines, trainer ranks) lives as
long as all of them: when one exits, the others are stopped and the container exits with its
code, so the pod fails and the gang's failure policy takes over."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

STOP_SECONDS = 20


def exit_code(returncode: int) -> int:
    """A child's end as a shell reports it: 128 + N for a death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def run_all(module: str, envs: list[dict[str, str]], what: str) -> int:
    """Start `python -m module` once per environment and supervise them; `what` names one
    process in messages ("rollout engine", "trainer rank")."""
    children = [subprocess.Popen([sys.executable, "-m", module], env=env) for env in envs]

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
