"""Inside each vLLM GPU worker: receive the trainer's weights in buckets and report device memory.

`SeesawWorkerExtension` is passed to vLLM as `worker_extension_cls`, so vLLM imports this
module in every worker before the worker builds its weight-transfer engine; importing it
there registers Seesaw's CUDA IPC engine with vLLM's weight-transfer factory. The engine
opens the CUDA IPC handles the trainer on the same GPU exported (no copy through the host)
and feeds the views to vLLM's layerwise reload, bucket by bucket. Across GPUs or nodes the
Mooncake engine (seesaw.rollout.mooncake_engine) does the same over RDMA into a GPU buffer.

Nothing here imports vLLM unless vLLM is already loaded (i.e. inside a worker).
"""
from __future__ import annotations

import functools
import logging
import sys
from typing import Any

log = logging.getLogger("seesaw.rollout.worker")

from seesaw.checkpoint_engine.channels.cuda_ipc import VLLM_ENGINE as CUDA_IPC_BACKEND
from seesaw.checkpoint_engine.channels.mooncake import VLLM_ENGINE as MOONCAKE_BACKEND


@functools.cache
def engine_class() -> type:
    """vLLM WeightTransferEngine over Seesaw's CUDA IPC channel (built on first use)."""
    from dataclasses import dataclass, field

    from vllm.distributed.weight_transfer.base import (
        WeightTransferEngine,
        WeightTransferInitInfo,
        WeightTransferUpdateInfo,
    )

    from seesaw.checkpoint_engine.channels.cuda_ipc import CudaIpcReceiver

    @dataclass
    class CudaIpcInitInfo(WeightTransferInitInfo):
        pass

    @dataclass
    class CudaIpcUpdateInfo(WeightTransferUpdateInfo):
        handle: dict[str, Any] = field(default_factory=dict)

    class SeesawCudaIpcEngine(WeightTransferEngine[CudaIpcInitInfo, CudaIpcUpdateInfo]):
        init_info_cls = CudaIpcInitInfo
        update_info_cls = CudaIpcUpdateInfo
        supports_draft_weight_update = False
        receiver: CudaIpcReceiver | None = None
        received_checksum: int | None = None  # of the tensors loaded at the last update

        def init_transfer_engine(self, init_info: CudaIpcInitInfo) -> None:
            self.receiver = CudaIpcReceiver(self.device.index)

        def start_weight_update(self) -> None:
            from seesaw.rollout.layerwise_reload import begin_reload

            begin_reload(self.model)

        def receive_weights(self, update_info: CudaIpcUpdateInfo) -> None:
            if self.receiver is None:
                self.receiver = CudaIpcReceiver(self.device.index)
            from seesaw.trainer.distributed import StreamChecksum

            loaded = StreamChecksum()
            self.model.load_weights(loaded.over(self.receiver.receive(update_info.handle)))
            self.received_checksum = loaded.value
            stats = self.receiver.stats
            log.info("received %d bytes in %d buckets (+%d shared tensors) in %.3fs over CUDA IPC",
                     stats.bytes, stats.buckets, stats.zero_copy_tensors, stats.seconds)

        def finish_weight_update(self) -> None:
            from seesaw.rollout.layerwise_reload import finish_reload

            finish_reload(self.model, self.model_config)
            if self.receiver is not None:
                self.receiver.close()  # drop the views: the trainer may free or reuse its buckets

        def shutdown(self) -> None:
            if self.receiver is not None:
                self.receiver.close()
                self.receiver = None

    return SeesawCudaIpcEngine


def register_engines() -> None:
    """Register the CUDA IPC engine (and the Mooncake one) with vLLM's factory; idempotent."""
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

    from seesaw.rollout import vllm_plugin

    if CUDA_IPC_BACKEND not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(CUDA_IPC_BACKEND, engine_class())
    vllm_plugin.register()


class SeesawWorkerExtension:
    """Mixed into vLLM's worker (GPU and CPU); methods are reached with `LLM.collective_rpc`."""

    def seesaw_weight_checksum(self) -> int | None:
        """The checksum of the tensors this worker loaded at its last weight update, as they
        arrived (Hugging Face layout: what the trainer staged), or None before the first.
        What vLLM holds after loading cannot be summed instead: it fuses q/k/v, pads the
        vocabulary, and the CPU build repacks linear weights into its GEMM library's format.
        The probe batch's log-probs prove that the loaded weights compute what the trainer's do."""
        engine = getattr(self, "weight_transfer_engine", None)
        return getattr(engine, "received_checksum", None)

    def seesaw_set_idle_spin(self, seconds: float) -> int:
        """The CPU build's sleep and wake-up: how long this worker spins for the next step."""
        from seesaw.rollout import vllm_plugin

        return vllm_plugin.set_idle_spin(seconds)

    def seesaw_device_memory(self) -> dict[str, int]:
        import torch

        free, total = torch.cuda.mem_get_info()
        return {"free": int(free), "total": int(total), "allocated": int(torch.cuda.memory_allocated())}

    def seesaw_gpu_uuid(self) -> str:
        import torch

        return str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)


if "vllm" in sys.modules:  # inside a vLLM worker: make the engines known before the worker builds one
    register_engines()
