"""Math reward: Hugging Face's math-verify, the verifier verl, TRL and open-r1 use, out of process.

math-verify extracts a response's final answer (a \\boxed{...}, a stated "the answer is X",
GSM8K's "#### X", else the last expression) and decides its equivalence with the reference
(numbers, fractions, LaTeX, sets and intervals, symbolic equality under sympy). Its own
timeouts use `signal.alarm`, which works only in a main thread, and sympy can be made to
hang or exhaust memory (9^9^9^9). So every comparison runs in a long-lived worker process
(seesaw.rl.rewards.math_worker) with math-verify's timeouts off, under a memory limit, and a
comparison that runs past its time kills the worker (the next one starts a new one) and scores 0.
"""
from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from seesaw.rl.rewards.registry import register_verifier

DEFAULT_TIMEOUT_SECONDS = 5.0
STARTUP_SECONDS = 60.0


class VerifierWorker:
    """One long-lived process that runs math-verify; killed and replaced when a comparison
    runs past its timeout. Thread-safe: calls are serialised."""

    def __init__(self, memory_mib: int = 1024) -> None:
        self.memory_bytes = memory_mib * 1024 * 1024
        self._lock = threading.Lock()
        self._process: Any = None
        self._connection: Any = None

    def _start(self) -> None:
        parent, child = multiprocessing.Pipe()
        self._process = subprocess.Popen([sys.executable, "-m", "seesaw.rl.rewards.math_worker", str(child.fileno()),
                                          str(self.memory_bytes)], pass_fds=[child.fileno()])
        child.close()
        self._connection = parent
        # wait out the start and the imports here, so a comparison's timeout is its own
        try:
            ready = self._connection.poll(STARTUP_SECONDS) and self._connection.recv()[0] == "ready"
        except EOFError:
            ready = False
        if not ready:
            code = self._process.poll()
            self._stop()
            raise RuntimeError(f"the math verifier's worker did not start within {STARTUP_SECONDS} s"
                               + (f" (it exited with code {code})" if code is not None else ""))

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._process = self._connection = None

    def verify(self, response: str, reference: str, timeout: float) -> bool | None:
        """True/False, or None when the comparison failed or ran out of time."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            self._connection.send((response, reference))
            if not self._connection.poll(timeout):
                self._stop()
                return None
            try:
                status, result = self._connection.recv()
            except EOFError:
                self._stop()
                return None
            return result if status == "ok" else None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.send(None)
                except OSError:
                    pass
            self._stop()


_SHARED_WORKER = VerifierWorker()


@dataclass
class MathVerifier:
    """Reward 1 when the response's final answer is equivalent to the reference answer, else 0."""

    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    worker: VerifierWorker | None = None

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds: expected > 0, got {self.timeout_seconds}")

    def score(self, response: str, reference: Any) -> float:
        if not isinstance(reference, str):
            raise TypeError(f"reference: expected the reference answer as a string, got {type(reference).__name__}")
        verdict = (self.worker or _SHARED_WORKER).verify(response, reference, self.timeout_seconds)
        return 1.0 if verdict is True else 0.0


@register_verifier("math")
def math_verifier(reward_spec: dict[str, Any], **options: Any) -> MathVerifier:
    return MathVerifier(**options)


def math_reward(response: str, reference: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> float:
    """1.0 when the response's final answer equals the reference, else 0.0."""
    return MathVerifier(timeout_seconds=timeout).score(response, reference)
