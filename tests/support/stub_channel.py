"""A pull channel registered from the tests, as a new channel would be: its sender stages
copies in this process under a session name, its receiver pulls them by the handle."""
from __future__ import annotations

import itertools
from typing import Any, Iterable, Iterator

import torch

from seesaw.interfaces import TransferStats, WeightChannel, weight_handle

NAME = "stub-pull"
_STAGED: dict[str, list[tuple[str, torch.Tensor]]] = {}
_sessions = itertools.count()


class StubSender:
    def __init__(self) -> None:
        self.session = f"stub-{next(_sessions)}"

    def stage(self, named_tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int, declared=None) -> dict[str, Any]:
        _STAGED[self.session] = [(name, tensor.detach().clone()) for name, tensor in named_tensors]
        total = sum(t.numel() * t.element_size() for _, t in _STAGED[self.session])
        return weight_handle(NAME, total, 1, receiver_init={"capacity_bytes": total}, session=self.session)

    def release(self) -> None:
        _STAGED.pop(self.session, None)

    def close(self) -> None:
        self.release()


class StubReceiver:
    def __init__(self, receiver_init: dict[str, Any]) -> None:
        self.capacity = receiver_init["capacity_bytes"]
        self.stats = TransferStats()
        self.opened = True

    def receive(self, handle: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
        if handle["total_bytes"] > self.capacity:
            raise ValueError(f"sender has {handle['total_bytes']} bytes, the receiver holds {self.capacity}")
        self.stats = TransferStats(bytes=handle["total_bytes"], buckets=1)
        yield from _STAGED[handle["session"]]

    def release(self) -> None:
        pass

    def close(self) -> None:
        self.opened = False


CHANNEL = WeightChannel(
    NAME,
    lambda trainer, hostname, rollout_gpus, local_rank: StubSender() if local_rank == 0 else None,
    lambda receiver_init, device: StubReceiver(receiver_init),
)
