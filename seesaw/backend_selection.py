"""Pick the trainer, rollout and weight-channel backends from the RLJob spec and the hardware found.

`auto` in spec.trainer.backend and spec.weightSync.channel resolves here, and only here, so
the local runner, the operator and the workers agree. Combinations that cannot run (CUDA
IPC without a GPU, tensor parallelism wider than a node) are refused with a SpecError that
names the field, the value and what the hardware offers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seesaw.checkpoint_engine.weights import UnknownChannel, channel_rules
from seesaw.spec import SpecError, check_torch_trainer_layout

# Names under which the backends register (seesaw.interfaces.register).
TORCH, MEGATRON = "torch", "megatron"
VLLM_CPU, VLLM_GPU = "vllm-cpu", "vllm-gpu"
MOONCAKE_TCP, MOONCAKE_RDMA, CUDA_IPC = "mooncake-tcp", "mooncake-rdma", "cuda-ipc"

# Set to 0 where the trainer and rollout engine do not share a GPU (e.g. rollout-only pods).
COLOCATED_ENV = "SEESAW_COLOCATED"


@dataclass(frozen=True)
class Hardware:
    """What this node offers the two engines."""

    gpu_count: int = 0
    # Trainer and rollout engine see the same GPU(s) and can open each other's CUDA IPC handles.
    shared_gpu: bool = False
    rdma_devices: tuple[str, ...] = ()
    gpu_model: str = ""

    @classmethod
    def detect(cls) -> "Hardware":
        gpus, model = _visible_gpus()
        colocated = os.environ.get(COLOCATED_ENV, "1") not in ("0", "false", "False")
        return cls(gpu_count=gpus, shared_gpu=bool(gpus) and colocated, rdma_devices=_rdma_devices(), gpu_model=model)


def _visible_gpus() -> tuple[int, str]:
    try:
        import torch

        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            return count, torch.cuda.get_device_name(0) if count else ""
    except Exception:  # a broken driver reads as no GPU, never as a crash in selection
        pass
    return 0, ""


def _rdma_devices(root: str = "/sys/class/infiniband") -> tuple[str, ...]:
    path = Path(root)
    return tuple(sorted(p.name for p in path.iterdir())) if path.is_dir() else ()


@dataclass(frozen=True)
class BackendChoice:
    trainer: str
    rollout: str
    weight_channel: str
    # Why each was chosen, for the startup log and `kubectl describe`.
    reasons: tuple[str, ...] = field(default=(), compare=False)


def _spec_of(doc: dict[str, Any]) -> dict[str, Any]:
    """Accept a resolved manifest or its spec."""
    return doc["spec"] if "spec" in doc and isinstance(doc["spec"], dict) and "apiVersion" in doc else doc


def _get(spec: dict[str, Any], path: str, default: Any) -> Any:
    node: Any = spec
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def check_channel_fits(channel: str, hardware: Hardware, on_gpu: bool, trainer: str, rollout: str) -> None:
    """An explicitly named channel against its rules (seesaw.checkpoint_engine.weights)."""
    try:
        rules = channel_rules(channel)
    except UnknownChannel as err:
        raise SpecError("spec.weightSync.channel", str(err).removeprefix("spec.weightSync.channel: ")) from None
    if rules.needs_gpu and hardware.gpu_count == 0:
        raise SpecError("spec.weightSync.channel", f"{channel} needs a GPU shared by trainer and rollout, found no GPU; use auto or mooncake-tcp")
    if rules.same_gpu and not on_gpu:
        raise SpecError("spec.weightSync.channel",
                        f"{channel} needs the megatron trainer and the vllm-gpu rollout, got trainer {trainer!r} and rollout {rollout!r}")
    if rules.same_gpu and not hardware.shared_gpu:
        raise SpecError("spec.weightSync.channel",
                        f"{channel} needs trainer and rollout on the same GPU, but they do not share one here; use mooncake-rdma or mooncake-tcp")
    if rules.needs_rdma and not hardware.rdma_devices:
        raise SpecError("spec.weightSync.channel", f"{channel} needs an RDMA device (/sys/class/infiniband is empty); use mooncake-tcp")


def choose_backends(spec: dict[str, Any], hardware: Hardware) -> BackendChoice:
    """Resolve the three backends for a (defaulted) RLJob spec on the given hardware."""
    spec = _spec_of(spec)
    gpus_per_node = _get(spec, "cluster.gpusPerNode", 8)
    gpu_job = gpus_per_node > 0 and hardware.gpu_count > 0
    reasons: list[str] = []

    trainer = _get(spec, "trainer.backend", "auto")
    if trainer == "auto":
        trainer = MEGATRON if gpu_job else TORCH
        reasons.append(f"trainer auto -> {trainer}: {hardware.gpu_count} GPU(s) found, cluster.gpusPerNode={gpus_per_node}")
        check_torch_trainer_layout(trainer, _get(spec, "trainer", {}), f" (auto, with {hardware.gpu_count} GPU(s) here)")
    if trainer == MEGATRON and not gpu_job:
        # Megatron's CPU mode (seesaw.trainer.megatron_cpu): slow, to debug a layout without a GPU
        reasons.append("trainer megatron on the CPU: no GPU for this job, ranks over gloo")
    elif trainer == MEGATRON:
        tp = _get(spec, "trainer.tensorParallel", 1)
        if tp > hardware.gpu_count:
            raise SpecError("spec.trainer.tensorParallel",
                            f"tensor parallelism stays within a node: got {tp}, this node has {hardware.gpu_count} GPU(s)")
    elif trainer != TORCH:
        raise SpecError("spec.trainer.backend", f"expected one of ['auto', 'torch', 'megatron'], got {trainer!r}")

    rollout_kind = _get(spec, "rollout.backend", "vllm")
    if rollout_kind != "vllm":
        raise SpecError("spec.rollout.backend", f"expected 'vllm', got {rollout_kind!r}")
    rollout = VLLM_GPU if gpu_job else VLLM_CPU
    reasons.append(f"rollout -> {rollout}")
    rollout_tp = _get(spec, "rollout.tensorParallel", 1)
    if rollout == VLLM_GPU and rollout_tp > hardware.gpu_count:
        raise SpecError("spec.rollout.tensorParallel",
                        f"got {rollout_tp}, this node has {hardware.gpu_count} GPU(s)")

    channel = _get(spec, "weightSync.channel", "auto")
    on_gpu = trainer == MEGATRON and rollout == VLLM_GPU
    if channel == "auto":
        replicas = _get(spec, "rollout.replicas", 0)
        if on_gpu and hardware.shared_gpu and not replicas:
            channel, why = CUDA_IPC, "trainer and rollout share the GPU"
        elif on_gpu and hardware.rdma_devices:
            channel, why = MOONCAKE_RDMA, ("rollout replicas need weights beyond the pod" if replicas else "GPUs not shared") + \
                f"; RDMA devices {list(hardware.rdma_devices)}"
        else:
            channel, why = MOONCAKE_TCP, "no shared GPU and no RDMA device" if on_gpu else "CPU job"
        reasons.append(f"weightSync.channel auto -> {channel}: {why}")
    else:
        check_channel_fits(channel, hardware, on_gpu, trainer, rollout)
    return BackendChoice(trainer=trainer, rollout=rollout, weight_channel=channel, reasons=tuple(reasons))
