"""Math reward: Hugging Face's math-verify, the verifier verl, TRL and open-r1 use, out of process.

math-verify extracts a response's final answer (a \\boxed{...}, a stated "the answer is X",
GSM8K's "#### X", else the last expression) and decides its equivalence with the reference
(numbers, fractions, LaTeX, sets and intervals, symbolic equality under sympy). Its own
timeouts use `signal.alarm`, which works only in a main thread, and sympy can be made to
hang or exhaust memory (9^9^9^9). So every comparison runs in a long-lived worker process
with math-verify's timeouts off, under a memory limit, and a comparison that runs past its
time kills the worker (the next one starts a new one) and scores 0.
"""
from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from typing import Any

from seesaw.rl.rewards.registry import register_verifier

DEFAULT_TIMEOUT_SECONDS = 5.0
STARTUP_SECONDS = 60.0


def _as_gold(reference: str) -> str:
    # math-verify reads LaTeX between $...$ (or in \boxed): a bare "\frac{3}{4}" is LaTeX too
    text = reference.strip()
    return text if "$" in text or "\\boxed" in text else f"${text}$"


def _verify(response: str, reference: str) -> bool:
    from math_verify import parse, verify

    gold = parse(_as_gold(reference), parsing_timeout=None)
    answer = parse(response, parsing_timeout=None)
    return bool(gold) and bool(answer) and verify(gold, answer, timeout_seconds=None)


def _worker(connection: Any, memory_bytes: int) -> None:
    import logging
    import resource

    import math_verify  # noqa: F401  (imported before the limit: the limit is for the expressions)

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns that its timeouts are off
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    # The first comparison loads math-verify's parsers: 0.5 s on a quiet machine, past the
    # comparison's timeout on a busy one, where every replaced worker then timed out again on
    # its first comparison and a whole batch scored 0. Made here, in the start's own time.
    _verify("1", "1")
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except EOFError:  # the checkpoint engine that started it is gone: nothing left to verify
            return
        if request is None:
            return
        try:
            connection.send(("ok", _verify(*request)))
        except BaseException as error:  # a MemoryError or a parser error must not end the worker
            connection.send(("error", f"{type(error).__name__}: {error}"))


class VerifierWorker:
    """One long-lived process that runs math-verify; killed and replaced when a comparison
    runs past its timeout. Thread-safe: calls are serialised."""

    def __init__(self, memory_mib: int = 1024) -> None:
        self.memory_bytes = memory_mib * 1024 * 1024
        self._lock = threading.Lock()
        self._process: Any = None
        self._connection: Any = None

    def _start(self) -> None:
        # spawn, not fork: the caller may hold threads (torch, HTTP servers)
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_worker, args=(child, self.memory_bytes), daemon=True)
        self._process.start()
        child.close()
        # wait out the start and the imports here, so a comparison's timeout is its own
        if not self._connection.poll(STARTUP_SECONDS) or self._connection.recv()[0] != "ready":
            self._stop()
            raise RuntimeError(f"the math verifier's worker did not start within {STARTUP_SECONDS} s")

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        self._process = self._connection = None

    def verify(self, response: str, reference: str, timeout: float) -> bool | None:
        """True/False, or None when the comparison failed or ran out of time."""
        with self._lock:
            if self._process is None or not self._process.is_alive():
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
