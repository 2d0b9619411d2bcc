"""vLLM weight-transfer engine that pulls the trainer's weights over the Mooncake transfer engine.

It plugs into vLLM's own RL API (init_weight_transfer_engine / start_weight_update /
update_weights / finish_weight_update), so the running engine takes new weights without a
restart or a disk round trip. Loading goes through vLLM's layerwise reload, which restores
the weight loaders that a loaded model no longer has (seesaw.rollout.layerwise_reload).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from vllm.distributed.weight_transfer.base import (
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)

from seesaw.checkpoint_engine.channels.mooncake import MooncakeReceiver
from seesaw.rollout.layerwise_reload import begin_reload, finish_reload
from seesaw.trainer.distributed import StreamChecksum

log = logging.getLogger(__name__)


@dataclass
class MooncakeInitInfo(WeightTransferInitInfo):
    capacity_bytes: int
    hostname: str = "127.0.0.1"
    protocol: str = "tcp"
    device: str = ""


@dataclass
class MooncakeUpdateInfo(WeightTransferUpdateInfo):
    handle: dict[str, Any] = field(default_factory=dict)


class MooncakeWeightTransferEngine(WeightTransferEngine[MooncakeInitInfo, MooncakeUpdateInfo]):
    init_info_cls = MooncakeInitInfo
    update_info_cls = MooncakeUpdateInfo
    supports_draft_weight_update = False

    receiver: MooncakeReceiver | None = None
    received_checksum: int | None = None  # of the tensors loaded at the last update

    def init_transfer_engine(self, init_info: MooncakeInitInfo) -> None:
        buffer_device = "cpu" if self.device.type == "cpu" else str(self.device)
        self.receiver = MooncakeReceiver(init_info.capacity_bytes, init_info.hostname, init_info.protocol,
                                         init_info.device, buffer_device=buffer_device)

    def start_weight_update(self) -> None:
        started = time.perf_counter()
        begin_reload(self.model)
        self._timing = {"start": time.perf_counter() - started}

    def receive_weights(self, update_info: MooncakeUpdateInfo) -> None:
        if self.receiver is None:
            raise RuntimeError("init_weight_transfer_engine must be called before update_weights")
        started = time.perf_counter()
        loaded = StreamChecksum()
        self.model.load_weights(loaded.over(self.receiver.receive(update_info.handle)))
        self.received_checksum = loaded.value
        stats = self.receiver.stats
        self._timing.update(receive=time.perf_counter() - started, transfer_wait=stats.transfer_wait_seconds)
        log.info("received %d bytes in %d buckets in %.3fs", stats.bytes, stats.buckets, stats.seconds)

    def finish_weight_update(self) -> None:
        started = time.perf_counter()
        finish_reload(self.model, self.model_config)
        self._timing["finish"] = time.perf_counter() - started
        log.info("weight update timing: %s", {k: round(v, 4) for k, v in self._timing.items()})

    def shutdown(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
            self.receiver = None
