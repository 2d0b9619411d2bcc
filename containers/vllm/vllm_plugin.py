"""vLLM general plugin, loaded in every vLLM process: registers Seesaw's weight-transfer
engine, and on the CPU build lets a sleeping engine give its core back to the trainer."""
from __future__ import annotations

import os
import weakref


# vLLM's processes spin (sched_yield) on their shared-memory queue for 1 s after each
# message, for latency between decode steps. On the CPU build that 1 s outlasts a small job's
# train phase: the rollout worker held a core the trainer needed through the whole step
# (docs/BENCHMARKS.md, "The seesaw tips on the CPU"). A sleeping engine (the train phase)
# spins not at all; an awake one as vLLM does.
AWAKE_SPIN_SECONDS = 1.0
ASLEEP_SPIN_SECONDS = 0.0
KEEP_SPINNING_ENV = "SEESAW_VLLM_KEEP_SPINNING"  # "1": vLLM's own behaviour, for the benchmark

_readers: weakref.WeakSet = weakref.WeakSet()


def register() -> None:
    from seesaw.checkpoint_engine.weights import register_vllm_engine

    register_vllm_engine()
    track_queue_readers_on_cpu()


def track_queue_readers_on_cpu() -> bool:
    """Remember every shared-memory queue reader this process creates (the worker's, waiting
    for the scheduler's next step; the engine core's, waiting for the worker's answer), so
    that `set_idle_spin` can reach them. The plugin runs before either creates its queues."""
    from vllm.distributed.device_communicators.shm_broadcast import SpinCondition
    from vllm.platforms import current_platform
    from vllm.v1.engine.core import EngineCore

    if not current_platform.is_cpu():
        return False
    # reached from the rollout engine through LLM's engine_core.call_utility
    EngineCore.seesaw_set_idle_spin = lambda self, seconds: set_idle_spin(seconds)
    if os.environ.get(KEEP_SPINNING_ENV) == "1":
        return False
    init = SpinCondition.__init__
    if getattr(init, "seesaw_tracked", False):
        return True

    def tracked(self, is_reader, *args, **kwargs) -> None:
        init(self, is_reader, *args, **kwargs)
        if is_reader:
            _readers.add(self)
    tracked.seesaw_tracked = True
    SpinCondition.__init__ = tracked
    return True


def set_idle_spin(seconds: float) -> int:
    """How long this process's queue readers spin after a message before they block; the
    number of readers changed (0 where nothing is tracked: a GPU, or KEEP_SPINNING)."""
    for reader in list(_readers):
        reader.busy_loop_s = seconds
    return len(_readers)
