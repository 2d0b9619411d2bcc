"""The vLLM weight-transfer engine of every Seesaw channel: it opens the channel's receiver and
loads what it yields into the running model.

It plugs into vLLM's own RL API (init_weight_transfer_engine / start_weight_update /
update_weights / finish_weight_update), so the running engine takes new weights without a
restart or a disk round trip. The channel is named in the receiver_init the trainer's
sender wrote; loading goes through vLLM's layerwise reload, which restores the weight
loaders that a loaded model no longer has (vllm_reload.py). vLLM imports this module only in
its own processes (registered lazily: seesaw.checkpoint_engine.weights.register_vllm_engine).
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

from seesaw.checkpoint_engine.weights import weight_channel
from seesaw.checkpoint_engine.weights.checksum import StreamChecksum
from seesaw.checkpoint_engine.weights.vllm_reload import begin_reload, finish_reload
from seesaw.interfaces import WeightReceiver

log = logging.getLogger(__name__)


@dataclass
class SeesawInitInfo(WeightTransferInitInfo):
    channel: str
    options: dict[str, Any] = field(default_factory=dict)  # the rest of the sender's receiver_init


@dataclass
class SeesawUpdateInfo(WeightTransferUpdateInfo):
    handle: dict[str, Any] = field(default_factory=dict)


class SeesawWeightTransferEngine(WeightTransferEngine[SeesawInitInfo, SeesawUpdateInfo]):
    init_info_cls = SeesawInitInfo
    update_info_cls = SeesawUpdateInfo
    supports_draft_weight_update = False

    receiver: WeightReceiver | None = None
    received_checksum: int | None = None  # of the tensors loaded at the last update

    def parse_init_info(self, init_dict: dict[str, Any]) -> SeesawInitInfo:
        options = dict(init_dict)
        return SeesawInitInfo(channel=options.pop("channel"), options=options)

    def init_transfer_engine(self, init_info: SeesawInitInfo) -> None:
        if self.receiver is not None:  # a re-join: one receiver at a time
            self.receiver.close()
        self.channel = init_info.channel
        self.receiver = weight_channel(init_info.channel).open_receiver(init_info.options, self.device)

    def start_weight_update(self) -> None:
        started = time.perf_counter()
        begin_reload(self.model)
        self._timing = {"start": time.perf_counter() - started}

    def receive_weights(self, update_info: SeesawUpdateInfo) -> None:
        if self.receiver is None:
            raise RuntimeError("init_weight_transfer_engine must be called before update_weights")
        started = time.perf_counter()
        loaded = StreamChecksum()
        self.model.load_weights(loaded.over(self.receiver.receive(update_info.handle)))
        self.received_checksum = loaded.value
        self._timing["receive"] = time.perf_counter() - started
        stats = self.receiver.stats
        log.info("received over %s: %s", self.channel, vars(stats))

    def finish_weight_update(self) -> None:
        started = time.perf_counter()
        finish_reload(self.model, self.model_config)
        if self.receiver is not None:
            self.receiver.release()
        self._timing["finish"] = time.perf_counter() - started
        log.info("weight update timing: %s", {k: round(v, 4) for k, v in self._timing.items()})

    def shutdown(self) -> None:
        if self.receiver is not None:
            self.receiver.close()
            self.receiver = None
