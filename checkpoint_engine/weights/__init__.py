"""Everything about moving weights from the trainer to the vLLM engines, in one room.

- one module a channel: its trainer-side sender, its rollout-side receiver and its
  `WeightChannel` object (mooncake.py: TCP and RDMA; cuda_ipc.py);
- `vllm_engine.py`: the one vLLM weight-transfer engine, which loads what any channel's
  receiver yields through vLLM's layerwise reload (`vllm_reload.py`);
- `checksum.py`: the checksum both ends compute; `staging.py`: the senders' byte ledger;
- this module: the registry, the one place a channel is known by name. Channels register
  lazily (name -> module, attribute), as vLLM's weight-transfer factory does, with the rules
  of where each can run as data, which backend selection and the spec checks read without
  importing the channel (or torch).

Adding a channel that the receiver pulls: one module with its sender, receiver and
`WeightChannel`, one line in CHANNELS, its test, and its name in the CRD's
spec.weightSync.channel enum.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seesaw.interfaces import WeightChannel


@dataclass(frozen=True)
class ChannelRules:
    """Where a channel can run."""

    needs_gpu: bool = False  # a GPU on the node
    # trainer and vLLM on the same GPU: the megatron trainer and vLLM's GPU build, colocated
    same_gpu: bool = False
    needs_rdma: bool = False  # an RDMA device on the node
    leaves_pod: bool = True  # reaches engines in other pods (rollout replicas)


@dataclass(frozen=True)
class ChannelEntry:
    module: str
    attribute: str  # the module's WeightChannel
    rules: ChannelRules


CHANNELS: dict[str, ChannelEntry] = {
    "mooncake-tcp": ChannelEntry(f"{__name__}.mooncake", "TCP", ChannelRules()),
    "mooncake-rdma": ChannelEntry(f"{__name__}.mooncake", "RDMA", ChannelRules(needs_rdma=True)),
    "cuda-ipc": ChannelEntry(f"{__name__}.cuda_ipc", "CHANNEL", ChannelRules(needs_gpu=True, same_gpu=True, leaves_pod=False)),
}

# The one vLLM weight-transfer engine, whatever the channel (its receiver_init names the channel).
VLLM_ENGINE = "seesaw"
VLLM_ENGINE_CLASS = (f"{__name__}.vllm_engine", "SeesawWeightTransferEngine")


class UnknownChannel(LookupError):
    pass


def channel_names() -> list[str]:
    return sorted(CHANNELS)


def _entry(name: str) -> ChannelEntry:
    try:
        return CHANNELS[name]
    except KeyError:
        raise UnknownChannel(f"spec.weightSync.channel: expected one of {channel_names()}, got {name!r}") from None


def channel_rules(name: str) -> ChannelRules:
    return _entry(name).rules


def weight_channel(name: str) -> "WeightChannel":
    """The channel called name (imports its module)."""
    entry = _entry(name)
    return getattr(importlib.import_module(entry.module), entry.attribute)


def register_vllm_engine() -> None:
    """Make Seesaw's engine known to vLLM's weight-transfer factory in this process; idempotent."""
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

    if VLLM_ENGINE not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(VLLM_ENGINE, *VLLM_ENGINE_CLASS)
