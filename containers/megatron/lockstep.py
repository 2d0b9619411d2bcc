"""The trainer ranks of a pod move in lockstep.

Only a pod's local rank 0 (its leader) serves the checkpoint engine. Before each call of the
trainer protocol it tells the pod's other ranks (its followers) the call and its arguments,
so every rank of every pod enters the same collectives in the same order: the checkpoint
engines make each call on every pod, and each pod's leader relays it to its followers.
A follower that fails exits, so the trainer container stops and the gang restarts.
"""
from __future__ import annotations

import inspect
import logging
import threading
from typing import Any

from seesaw.trainer import distributed

log = logging.getLogger("seesaw.trainer.lockstep")

# The trainer protocol's calls that every rank makes (collectives, or each rank's own memory).
CALLS = ("train_step", "sequence_logprobs", "hf_state", "offload", "onload", "save_checkpoint", "load_checkpoint",
         "stage_weights", "release_weights")


class PodLeader:
    """Wraps the leader's trainer: each protocol call is first told to the pod's followers."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self._lock = threading.Lock()  # one call at a time: the followers hear them in order

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.trainer, name)
        if name not in CALLS:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                distributed.tell_pod((name, args, kwargs))
                return target(*args, **kwargs)
        return call


def follow(trainer: Any) -> None:
    """A follower rank: make each call the pod's leader makes, for the life of the container
    (it ends with the pod: a leader that is gone fails the next broadcast, and so this rank)."""
    while True:
        name, args, kwargs = distributed.hear_pod_leader()
        if name not in CALLS:
            raise ValueError(f"the pod leader asked for {name!r}, not a trainer call ({', '.join(CALLS)})")
        result = getattr(trainer, name)(*args, **kwargs)
        if inspect.isgenerator(result):  # hf_state: gathering each tensor is collective
            for _ in result:
                pass
