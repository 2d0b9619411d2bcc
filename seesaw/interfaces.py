"""The three engine interfaces the checkpoint engine speaks, and the registry of their backends.

A backend (CPU PyTorch or Megatron-core trainer; vLLM CPU or GPU rollout; Mooncake or CUDA
IPC weight channel) registers under a name; the RLJob spec names it, or `auto` picks one
from the hardware found. Nothing here imports an engine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, TypeVar

import torch


@dataclass
class Sample:
    """One sampled response to one prompt, as the rollout engine produced it."""

    prompt_index: int
    prompt_ids: list[int]
    response_ids: list[int]
    # log pi_theta_i(token) of each response token under the policy that sampled it
    logprobs: list[float]
    reward: float = 0.0
    finished: bool = True
    # tokens before this index came from an older policy (partial rollouts): not trained on
    train_from: int = 0


@dataclass
class TrainStats:
    loss: float
    tokens: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class MemoryReport:
    """What an offload or onload moved, for the phase log."""

    bytes: int
    seconds: float


@dataclass
class BucketLayout:
    """Where each tensor of one bucket sits inside the bucket's flat byte buffer."""

    names: list[str]
    shapes: list[list[int]]
    dtypes: list[str]
    offsets: list[int]
    nbytes: int


class Trainer(Protocol):
    """A trainer backend: owns the policy's parameters and optimiser state."""

    def train_step(self, batch: Any, tau: float) -> TrainStats:
        """One iteration: each rank trains on its data-parallel share of the batch, which
        `batch` holds (the whole batch, or the pod's part of it: seesaw.rl.training.BatchShare);
        the statistics are the whole batch's, the same on every rank."""
        ...

    def sequence_logprobs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]: ...

    def hf_state(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full (unsharded) tensors under Hugging Face names, in a fixed order."""
        ...

    def hf_metadata(self) -> list[tuple[str, list[int], str]]:
        """(name, shape, dtype) of each tensor hf_state yields, in its order, without computing them."""
        ...

    def offload(self, keep_weights: bool = False) -> MemoryReport:
        """Release optimiser state and gradients from the device, and the parameters unless keep_weights."""
        ...

    def onload(self) -> MemoryReport: ...

    def save_checkpoint(self, path: str, iteration: int) -> None: ...

    def load_checkpoint(self, path: str) -> int: ...


class RolloutEngine(Protocol):
    """A rollout backend: generates samples and accepts new weights without restarting."""

    def generate(self, prompt_ids: list[list[int]], samples_per_prompt: int, temperature: float,
                 max_tokens: int, top_p: float = 1.0, top_k: int = 0, stop: list[str] | None = None) -> list[Sample]: ...

    def sequence_logprobs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]: ...

    def sleep(self) -> MemoryReport: ...

    def wake_up(self, tags: Iterable[str] = ("weights", "kv_cache")) -> MemoryReport: ...

    def init_weight_channel(self, receiver_init: dict[str, Any]) -> None:
        """Prepare the engine's receiving side of the weight channel (once), from the sender's handle."""
        ...

    def update_weights(self, handle: dict[str, Any]) -> dict[str, float]:
        """Pull the weights a sender staged (its handle) into the running engine."""
        ...


def weight_handle(channel: str, total_bytes: int, bucket_count: int, receiver_init: dict[str, Any],
                  staging: dict[str, int] | None = None, **channel_fields: Any) -> dict[str, Any]:
    """A sender's handle for one sync. The conductor reads only these common keys; the rest
    (bucket addresses, IPC handles) is for the channel's own receiver. `staging` is the
    sender's byte ledger: what it holds beyond the trainer's memory now, and its peak. The
    receiver_init names the channel, so vLLM's one engine opens the right receiver."""
    return {"channel": channel, "total_bytes": total_bytes, "bucket_count": bucket_count,
            "receiver_init": {"channel": channel, **receiver_init}, "staging": staging or {"staged_bytes": 0, "peak_bytes": 0},
            **channel_fields}


class WeightSender(Protocol):
    """Trainer side of a weight channel: stages buckets for a receiver to pull."""

    def stage(self, named_tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int,
              declared: list[tuple[str, list[int], str]] | None = None) -> dict[str, Any]:
        """Copy the tensors into transfer buffers; return a JSON-able handle for the receiver.
        `declared` (name, shape, dtype) in order lets a sender plan its buffers before the
        tensors arrive, and pack each as it comes.

        The handle's "receiver_init" is what the rollout engine's side of this channel needs
        to start (RolloutEngine.init_weight_channel), so no caller branches on the channel."""
        ...

    def release(self) -> None:
        """Free what stage() allocated, once the receiver has loaded it."""
        ...

    def close(self) -> None: ...


@dataclass
class TransferStats:
    """What a channel's last stage or receive moved, for the log and the benchmarks."""

    bytes: int = 0
    seconds: float = 0.0
    buckets: int = 0
    transfer_wait_seconds: float = 0.0  # Mooncake: waiting for reads in flight
    zero_copy_tensors: int = 0  # CUDA IPC: tensors shared where they lie, not packed


class WeightReceiver(Protocol):
    """Rollout side of a weight channel: pulls staged buckets, yields named tensors."""

    stats: TransferStats  # of the last receive

    def receive(self, handle: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]: ...

    def release(self) -> None:
        """Drop what the last receive holds of the sender's memory, once vLLM has loaded it."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class WeightChannel:
    """One way the weights travel from the trainer to a rollout engine, found by its name
    (spec.weightSync.channel, seesaw.checkpoint_engine.weights): how the trainer opens its
    sender, and how vLLM's side opens the receiver from the handle's receiver_init. Nothing
    outside the channel's own module branches on its name."""

    name: str
    # (trainer, hostname the receivers reach it at, the pod's rollout GPUs, this trainer rank's
    # local rank) -> its sender, or None where this rank stages nothing (it still produces the
    # tensors: gathering them is collective)
    open_sender: Callable[[Any, str, list[int], int], "WeightSender | None"]
    # (the sender's receiver_init, the vLLM worker's torch device) -> the receiver
    open_receiver: Callable[[dict[str, Any], torch.device], WeightReceiver]
    # the pod's handle from those of its staging ranks (in local-rank order)
    merge: Callable[[list[dict[str, Any]]], dict[str, Any]] = lambda handles: handles[0]


T = TypeVar("T")
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {}


class UnknownBackend(LookupError):
    pass


def register(kind: str, name: str) -> Callable[[T], T]:
    """Decorator: make a backend factory available under (kind, name)."""

    def wrap(factory: T) -> T:
        _REGISTRY.setdefault(kind, {})[name] = factory
        return factory

    return wrap


def backend(kind: str, name: str) -> Callable[..., Any]:
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        known = sorted(_REGISTRY.get(kind, {}))
        raise UnknownBackend(f"no {kind} backend named {name!r}; registered: {known}") from None


def backends(kind: str) -> list[str]:
    return sorted(_REGISTRY.get(kind, {}))
