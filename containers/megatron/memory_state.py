"""Where the trainer's state lives between phases, and which calls each place allows.

A trainer starts with nothing on the device: on a GPU it shares with vLLM it must not
allocate before the engines have started and gone to sleep (vLLM refuses to start without
`gpuMemoryUtilization` of the device free), so everything waits for `/start`.

The same rules hold for every backend, although the CPU backend moves nothing: a call that
needs memory an offload released (`/weights/handle` after a full `/offload`, `/train` before
`/onload`) is refused loudly on the CPU too, so CI catches the order bugs that would read
freed memory on a GPU.
"""
from __future__ import annotations

from enum import Enum


class TrainerMemory(str, Enum):
    NOT_STARTED = "not_started"    # nothing on the device yet: the rollout engines start (and sleep) first
    ONLOADED = "onloaded"          # parameters, gradients and optimiser state on the device
    WEIGHTS_ONLY = "weights_only"  # optimiser state and gradients released: room for the rollout's weights
    OFFLOADED = "offloaded"        # nothing on the device: the rollout phase has it all


# route -> the states in which it may run
NEEDS: dict[str, frozenset[TrainerMemory]] = {
    "/train": frozenset({TrainerMemory.ONLOADED}),
    "/checkpoint/save": frozenset({TrainerMemory.ONLOADED}),
    "/checkpoint/load": frozenset({TrainerMemory.ONLOADED}),
    "/weights/handle": frozenset({TrainerMemory.ONLOADED, TrainerMemory.WEIGHTS_ONLY}),
    "/logprobs": frozenset({TrainerMemory.ONLOADED, TrainerMemory.WEIGHTS_ONLY}),
    "/export": frozenset({TrainerMemory.ONLOADED, TrainerMemory.WEIGHTS_ONLY}),
}


class TrainerStateError(RuntimeError):
    """A call arrived in a state that released the memory it needs."""


class TrainerMemoryState:
    def __init__(self) -> None:
        self.state = TrainerMemory.NOT_STARTED

    def require(self, route: str) -> None:
        if route == "/start":
            if self.state is not TrainerMemory.NOT_STARTED:
                raise TrainerStateError(f"/start: the trainer has started already (it is {self.state.value})")
            return
        if self.state is TrainerMemory.NOT_STARTED:
            raise TrainerStateError(f"{route} needs a started trainer: put the rollout engines to sleep, then call /start")
        allowed = NEEDS.get(route)
        if allowed is not None and self.state not in allowed:
            raise TrainerStateError(
                f"{route} needs the trainer {' or '.join(sorted(s.value for s in allowed))}, but it is {self.state.value}: "
                + ("stage the weights before the full /offload, or /onload first" if TrainerMemory.WEIGHTS_ONLY in allowed
                   else "call /onload first"))

    def offloaded(self, keep_weights: bool) -> None:
        if keep_weights and self.state is TrainerMemory.OFFLOADED:
            raise TrainerStateError("/offload with keep_weights: the parameters are already offloaded; call /onload first")
        self.state = TrainerMemory.WEIGHTS_ONLY if keep_weights else TrainerMemory.OFFLOADED

    def started(self) -> None:
        """The backend is built: parameters, gradients and optimiser state on the device."""
        self.state = TrainerMemory.ONLOADED

    def onloaded(self) -> None:
        self.state = TrainerMemory.ONLOADED
