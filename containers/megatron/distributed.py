"""The trainer ranks of a job as one torch.distributed group, and the checks that keep its
data-parallel replicas identical.

Ranks come from the pod contract: pod index x processes per pod + local rank; the group
meets on pod 0 (SEESAW_RENDEZVOUS) at the trainer-dist port. gloo on the CPU, NCCL on GPUs.
Each pod's ranks also share a small gloo group over which its local rank 0, the one the
checkpoint engine talks to, tells the others each call (seesaw.trainer.lockstep).
With one rank every call here is a no-op, so a single-pod job runs as before.
"""
from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from seesaw import pod_contract as pc
from seesaw.checkpoint_engine.weights.checksum import checksum_hex, params_checksum


class ReplicaMismatch(RuntimeError):
    """Data-parallel replicas diverged after an optimiser step; the message names the ranks."""


# Between two calls a pod's follower ranks wait for the next one, through whole rollout
# phases: their control group must not time out as a collective would.
CONTROL_TIMEOUT = datetime.timedelta(days=365)
_pod_group = None  # this pod's trainer ranks, for the leader's control messages (gloo)
_pod_leader = 0  # the global rank of this pod's local rank 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def join_trainer_group(device: str, timeout_seconds: float) -> tuple[int, int]:
    """Join (once) the group of every trainer rank of the job; returns (rank, world size).
    On a GPU each rank takes the GPU of its local rank."""
    global _pod_group, _pod_leader
    pods = int(os.environ.get(pc.NUM_PODS, "1"))
    local_world = local_world_size()
    rank = int(os.environ.get(pc.POD_INDEX, "0")) * local_world + local_rank()
    world = pods * local_world
    if device == "cuda":
        torch.cuda.set_device(local_rank())
    if world > 1 and not dist.is_initialized():
        host = os.environ.get(pc.RENDEZVOUS, "127.0.0.1")
        port = int(os.environ.get(pc.TRAINER_DIST_PORT, pc.DEFAULT_TRAINER_DIST_PORT))
        extra = {"device_id": torch.device("cuda", local_rank())} if device == "cuda" else {}
        dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=f"tcp://{host}:{port}",
                                rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_seconds), **extra)
        if local_world > 1:  # every rank creates every pod's group, in the same order
            for pod in range(pods):
                members = list(range(pod * local_world, (pod + 1) * local_world))
                group = dist.new_group(members, backend="gloo", timeout=CONTROL_TIMEOUT)
                if rank in members:
                    _pod_group, _pod_leader = group, members[0]
    return rank, world


def tell_pod(message: Any) -> None:
    """The pod's leader (local rank 0): send the pod's other ranks a control message."""
    if _pod_group is not None:
        dist.broadcast_object_list([message], src=_pod_leader, group=_pod_group)


def hear_pod_leader() -> Any:
    """A follower rank: wait for the pod leader's next control message."""
    box = [None]
    dist.broadcast_object_list(box, src=_pod_leader, group=_pod_group)
    return box[0]


def gather_on_pod_leader(value: Any) -> list[Any] | None:
    """Every rank of the pod sends `value`; the leader gets them all in local-rank order, the others None."""
    if _pod_group is None:
        return [value]
    gathered = [None] * local_world_size() if local_rank() == 0 else None
    dist.gather_object(value, gathered, dst=_pod_leader, group=_pod_group)
    return gathered


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


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_over_ranks(values: list[float]) -> list[float]:
    if world_size() == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(total)
    return total.tolist()


def max_over_ranks(value: float) -> float:
    if world_size() == 1:
        return value
    box = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return float(box[0])


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
