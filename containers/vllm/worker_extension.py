"""Inside each vLLM worker: the checksum of the weights it loaded, its idle spin on the CPU,
and its device memory, reached with `LLM.collective_rpc`.

`SeesawWorkerExtension` is passed to vLLM as `worker_extension_cls`, so vLLM imports this
module in every worker before the worker builds its weight-transfer engine; importing it
there registers Seesaw's engine (seesaw.checkpoint_engine.weights.vllm_engine), which loads
what any weight channel receives.

Nothing here imports vLLM unless vLLM is already loaded (i.e. inside a worker).
"""
from __future__ import annotations

import sys



def register_engines() -> None:
    """Register Seesaw's weight-transfer engine with vLLM's factory (and the plugin's CPU hooks); idempotent."""
    from seesaw.checkpoint_engine.weights import register_vllm_engine
    from seesaw.rollout import vllm_plugin

    register_vllm_engine()
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
