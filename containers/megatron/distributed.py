"""The trainer ranks of a job as one torch.distributed group, and the checks that keep its
data-parallel replicas identical.

Ranks come from the pod contract: pod index x processes per pod + local rank; the group
meets on pod 0 (SEESAW_RENDEZVOUS) at the trainer-dist port. gloo on the CPU, NCCL on GPUs.
With one rank every call here is a no-op, so a single-pod job runs as before.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from seesaw import pod_contract as pc


class ReplicaMismatch(RuntimeError):
    """Data-parallel replicas diverged after an optimiser step; the message names the ranks."""


def join_trainer_group(device: str, timeout_seconds: float) -> tuple[int, int]:
    """Join (once) the group of every trainer rank of the job; returns (rank, world size)."""
    pods = int(os.environ.get(pc.NUM_PODS, "1"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    rank = int(os.environ.get(pc.POD_INDEX, "0")) * local_world + local_rank
    world = pods * local_world
    if world > 1 and not dist.is_initialized():
        host = os.environ.get(pc.RENDEZVOUS, "127.0.0.1")
        port = int(os.environ.get(pc.TRAINER_DIST_PORT, pc.DEFAULT_TRAINER_DIST_PORT))
        dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=f"tcp://{host}:{port}",
                                rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_seconds))
    return rank, world


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_reduce_gradients(params: list[torch.nn.Parameter]) -> None:
    """Sum every parameter's gradient over the ranks (a rank with no prompts adds zeros)."""
    if world_size() == 1:
        return
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)


def params_checksum(flat: torch.Tensor) -> int:
    """An exact, order-independent checksum: the sum of the parameters' bit patterns."""
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
    return int(flat.detach().view(bits).sum(dtype=torch.int64))


def checksum_hex(value: int) -> str:
    """A checksum as 16 hex digits (the sum taken modulo 2**64)."""
    return f"{value & (2 ** 64 - 1):016x}"


def check_replicas_identical(flat: torch.Tensor) -> str:
    """Compare every rank's checksum; raise ReplicaMismatch naming the ranks that differ."""
    mine = params_checksum(flat)
    if world_size() == 1:
        return checksum_hex(mine)
    sums = [None] * world_size()
    dist.all_gather_object(sums, mine)
    odd = [r for r, value in enumerate(sums) if value != sums[0]]
    if odd:
        raise ReplicaMismatch(f"data-parallel replicas differ after the optimiser step: rank(s) {odd} hold other "
                              f"parameters than rank 0 (checksums {[checksum_hex(v) for v in sums]})")
    return checksum_hex(mine)
