"""The GPU rollout backend: vLLM with sleep mode, taking new weights over CUDA IPC or Mooncake RDMA.

vLLM starts once with dummy weights and `enable_sleep_mode`. Around each training phase it
sleeps at level 2 (KV cache and weights released: the weights are about to be replaced),
then wakes by tags: "weights" before the sync, "kv_cache" after it, so the trainer's state
and vLLM's KV cache are never on the GPU together. Generation and log-probs are the CPU
backend's (same vLLM API); only memory and the weight path differ.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

import torch

from seesaw.checkpoint_engine.weights import VLLM_ENGINE
from seesaw.interfaces import MemoryReport, register
from seesaw.rollout.cpu_backend import WORKER_EXTENSION, VLLMCPURollout

SLEEP_LEVEL = 2  # discard weights too: the sync overwrites them anyway, and nothing is copied to the host


def engine_args(model_dir: str, spec: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Keyword arguments of vllm.LLM for this job (pure: tested on the CPU)."""
    rollout = spec["rollout"]
    return dict(
        model=str(model_dir),
        dtype=spec["model"]["dtype"],
        max_model_len=rollout["maxModelLen"],
        tensor_parallel_size=rollout["tensorParallel"],
        gpu_memory_utilization=rollout["gpuMemoryUtilization"],
        seed=seed,
        load_format="dummy",
        enable_sleep_mode=True,
        enable_prefix_caching=True,
        weight_transfer_config={"backend": VLLM_ENGINE},
        worker_extension_cls=WORKER_EXTENSION,
    )


class VLLMGPURollout(VLLMCPURollout):
    """RolloutEngine protocol on vLLM's CUDA build."""

    def __init__(self, model_dir: str, spec: dict[str, Any], seed: int = 0) -> None:
        from vllm import LLM

        from seesaw.rollout.worker_extension import register_engines

        register_engines()  # in this process too (vLLM validates the backend name here)
        self.llm = LLM(**engine_args(model_dir, spec, seed))
        self.weight_version = 0
        self.asleep = False

    # --- memory ------------------------------------------------------------------------
    def _free_bytes(self) -> int:
        return int(torch.cuda.mem_get_info()[0])  # device-wide, so it sees the workers' frees

    def sleep(self) -> MemoryReport:
        started, free = time.perf_counter(), self._free_bytes()
        self.llm.sleep(level=SLEEP_LEVEL)
        self.asleep = True
        return MemoryReport(bytes=max(0, self._free_bytes() - free), seconds=time.perf_counter() - started)

    def wake_up(self, tags: Iterable[str] = ("weights", "kv_cache")) -> MemoryReport:
        tags = list(tags)
        unknown = set(tags) - {"weights", "kv_cache", "scheduling"}
        if unknown:
            raise ValueError(f"tags: expected a subset of ['weights', 'kv_cache'], got {sorted(unknown)}")
        started, free = time.perf_counter(), self._free_bytes()
        self.llm.wake_up(tags=tags)
        if "kv_cache" in tags:
            self.asleep = False
        return MemoryReport(bytes=max(0, free - self._free_bytes()), seconds=time.perf_counter() - started)

    # --- weights -----------------------------------------------------------------------
    # init_weight_channel and update_weights are the CPU backend's: the channel's handle says
    # what its receiver needs, and a CUDA IPC handle holds one part per GPU, which each
    # tensor-parallel worker picks for itself.

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int = 256 << 20) -> int:
        """Load tensors held by this process (on its GPU) through the CUDA IPC path."""
        from seesaw.checkpoint_engine.weights.cuda_ipc import CudaIpcSender

        sender = CudaIpcSender(torch.cuda.current_device())
        try:
            handle = sender.stage(named_tensors, bucket_bytes)
            if self.weight_version == 0:
                self.init_weight_channel(handle["receiver_init"])
            self.update_weights(handle)
            return int(handle["total_bytes"])
        finally:
            sender.close()


@register("rollout", "vllm-gpu")
def vllm_gpu_rollout(model_dir: str, spec: dict[str, Any], seed: int = 0) -> VLLMGPURollout:
    return VLLMGPURollout(model_dir, spec, seed)
