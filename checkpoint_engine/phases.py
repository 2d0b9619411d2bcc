"""The pod's phase state machine: which phase may follow which, each with a timeout.

Every phase runs in a watched thread; it ends in time, or the machine moves to FAILED with
an error that names the phase, the limit and the likely cause. A worker that dies shows up
as WorkerCrashed at once (its connection drops), not as a hang.
"""
from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from seesaw.rpc import WorkerError, WorkerUnavailable


class Phase(str, enum.Enum):
    STARTING = "starting"
    SYNC = "sync"
    EVAL = "eval"
    ROLLOUT = "rollout"
    TRAIN = "train"
    CHECKPOINT = "checkpoint"
    DONE = "done"
    FAILED = "failed"


ALLOWED: dict[Phase, set[Phase]] = {
    Phase.STARTING: {Phase.SYNC},
    Phase.SYNC: {Phase.EVAL, Phase.ROLLOUT, Phase.CHECKPOINT, Phase.DONE},
    Phase.EVAL: {Phase.ROLLOUT, Phase.EVAL, Phase.CHECKPOINT, Phase.DONE},
    Phase.ROLLOUT: {Phase.TRAIN},
    Phase.TRAIN: {Phase.CHECKPOINT, Phase.SYNC},
    Phase.CHECKPOINT: {Phase.SYNC},  # written while the trainer's state is still on the device
    Phase.DONE: set(),
    Phase.FAILED: set(),
}


class PhaseError(RuntimeError):
    """A phase did not complete; the pod moves to FAILED."""

    def __init__(self, phase: Phase, message: str) -> None:
        self.phase = phase
        super().__init__(f"phase {phase.value}: {message}")


class PhaseTimeout(PhaseError):
    pass


class DeterministicFailure(PhaseError):
    """A phase failed in a way that a restart of the gang would repeat exactly: the job fails
    at once instead of spending spec.failurePolicy.maxRestarts on it."""


def caused_by(err: BaseException | None, kind: type) -> bool:
    """Whether err or an error it was raised from is a `kind` (phases re-raise what failed in them)."""
    while err is not None:
        if isinstance(err, kind):
            return True
        err = err.__cause__
    return False


class WorkerCrashed(PhaseError):
    pass


class IllegalTransition(PhaseError):
    pass


@dataclass
class PhaseRecord:
    phase: Phase
    iteration: int
    started: float
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class PhaseMachine:
    timeouts: dict[Phase, float]
    on_transition: Callable[[Phase, Phase, int], None] | None = None
    state: Phase = Phase.STARTING
    timeline: list[PhaseRecord] = field(default_factory=list)
    _deadline: float = 0.0

    def remaining(self) -> float:
        """Seconds left in the current phase (for the timeouts of the calls it makes)."""
        return max(0.1, self._deadline - time.monotonic())

    def run(self, phase: Phase, iteration: int, work: Callable[[], Any]) -> Any:
        """Enter `phase`, run `work` under the phase's timeout, return its result."""
        if phase not in ALLOWED[self.state] and not (self.state == Phase.STARTING and phase == Phase.STARTING):
            raise IllegalTransition(phase, f"cannot follow {self.state.value}")
        self._enter(phase, iteration)
        limit = self.timeouts.get(phase, 600.0)
        self._deadline = time.monotonic() + limit
        record = PhaseRecord(phase, iteration, time.time())
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["value"] = work()
            except BaseException as err:  # handed to the conductor's thread below
                outcome["error"] = err

        thread = threading.Thread(target=target, name=f"phase-{phase.value}", daemon=True)
        thread.start()
        thread.join(limit)
        record.ended = time.time()
        self.timeline.append(record)
        if thread.is_alive():
            self.fail(iteration)
            raise PhaseTimeout(phase, f"did not finish within {limit:.0f}s (spec.timeouts); a worker is hung or too slow")
        if "error" in outcome:
            self.fail(iteration)
            err = outcome["error"]
            if isinstance(err, WorkerUnavailable):
                raise WorkerCrashed(phase, str(err)) from err
            if isinstance(err, TimeoutError):
                raise PhaseTimeout(phase, str(err)) from err
            if isinstance(err, (WorkerError, PhaseError)):
                raise PhaseError(phase, str(err)) from err
            raise PhaseError(phase, f"{type(err).__name__}: {err}") from err
        return outcome.get("value")

    def finish(self, iteration: int) -> None:
        self._enter(Phase.DONE, iteration)

    def fail(self, iteration: int) -> None:
        if self.state != Phase.FAILED:
            previous, self.state = self.state, Phase.FAILED
            if self.on_transition:
                self.on_transition(previous, Phase.FAILED, iteration)

    def _enter(self, phase: Phase, iteration: int) -> None:
        if phase != Phase.DONE or Phase.DONE in ALLOWED[self.state]:
            previous, self.state = self.state, phase
            if self.on_transition and previous != phase:
                self.on_transition(previous, phase, iteration)
        else:
            raise IllegalTransition(phase, f"cannot follow {self.state.value}")
