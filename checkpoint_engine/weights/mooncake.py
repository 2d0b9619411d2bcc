"""The weight channels over the Mooncake transfer engine: TCP here, RDMA on GPU clusters.

The CPU trainer keeps its parameters in one contiguous buffer and registers it with its
transfer engine once; no staging copy is made per sync. A Megatron trainer's full tensors are
gathered from its shards and packed into a staging buffer of the sender's, one at a time. The
receiver registers one buffer of the same size, pulls bucket after bucket with
asynchronous reads, and hands each bucket's tensors to the engine while the next bucket is
in flight. Buckets land at distinct offsets, so a bucket's tensors stay valid for as long
as the engine keeps references to them (vLLM's layerwise reload does).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Iterator

import torch

from seesaw.checkpoint_engine.weights.staging import Declared, StagingLedger, check_declared, nbytes_of
from seesaw.interfaces import BucketLayout, TransferStats, WeightChannel, weight_handle

DTYPES = {str(d).removeprefix("torch."): d for d in (torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.int32, torch.uint8)}


class TransferError(RuntimeError):
    """A Mooncake call failed; the message names the peer and the bucket."""


@dataclass(frozen=True)
class TensorSlot:
    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int  # bytes from the start of the flat buffer
    nbytes: int


def layout_of(named_tensors: list[tuple[str, torch.Tensor]], base_ptr: int) -> list[TensorSlot]:
    """Where each tensor lives inside the flat buffer starting at base_ptr."""
    slots = []
    for name, tensor in named_tensors:
        if not tensor.is_contiguous():
            raise TransferError(f"{name}: tensor is not contiguous inside the flat buffer")
        slots.append(TensorSlot(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."),
                                tensor.data_ptr() - base_ptr, tensor.numel() * tensor.element_size()))
    return slots


def plan_buckets(slots: list[TensorSlot], bucket_bytes: int) -> list[BucketLayout]:
    """Group consecutive tensors into buckets of at most bucket_bytes (a bigger tensor is a bucket alone).

    Offsets inside a BucketLayout are relative to the bucket's first byte, and a bucket is
    one contiguous byte range of the flat buffer, so it moves in one read.
    """
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes: expected > 0, got {bucket_bytes}")
    buckets: list[list[TensorSlot]] = []
    size = 0
    for slot in sorted(slots, key=lambda s: s.offset):
        if buckets and size + slot.nbytes <= bucket_bytes and slot.offset == buckets[-1][-1].offset + buckets[-1][-1].nbytes:
            buckets[-1].append(slot)
            size += slot.nbytes
        else:
            buckets.append([slot])
            size = slot.nbytes
    layouts = []
    for group in buckets:
        start = group[0].offset
        layouts.append(BucketLayout(
            names=[s.name for s in group], shapes=[list(s.shape) for s in group], dtypes=[s.dtype for s in group],
            offsets=[s.offset - start for s in group], nbytes=group[-1].offset + group[-1].nbytes - start,
        ))
    return layouts


def _engine(hostname: str, protocol: str, device: str = ""):
    from mooncake.engine import TransferEngine  # imported late: the wheel is Linux-only

    engine = TransferEngine()
    rc = engine.initialize(hostname, "P2PHANDSHAKE", protocol, device)
    if rc != 0:
        raise TransferError(f"Mooncake transfer engine failed to start on {hostname} over {protocol} (rc={rc})")
    return engine


class MooncakeSender:
    """Trainer side: exposes a registered buffer of weights for receivers to read.

    Given the trainer's flat parameter buffer, its tensors are served in place (zero copy).
    With `staging`, the buffer is the sender's own and the tensors (a Megatron trainer's TP
    shards gathered into full Hugging Face tensors) are packed into it one by one as they
    are produced; its byte ledger counts the buffer and the tensor in hand.
    """

    def __init__(self, flat_buffer: torch.Tensor, hostname: str = "127.0.0.1", protocol: str = "tcp", device: str = "",
                 staging: bool = False) -> None:
        if not flat_buffer.is_contiguous():
            raise TransferError("flat_buffer must be contiguous")
        self.buffer = flat_buffer
        self.hostname = hostname
        self.protocol = protocol
        self.device = device
        self.staging = staging
        self.engine = _engine(hostname, protocol, device)
        self.nbytes = flat_buffer.numel() * flat_buffer.element_size()
        if self.engine.register_memory(flat_buffer.data_ptr(), self.nbytes) != 0:
            raise TransferError(f"could not register {self.nbytes} bytes with Mooncake")
        self.ledger = StagingLedger()
        if staging:  # kept for every sync: the sender's memory for the life of the trainer
            self.ledger.allocated(self.nbytes)

    @property
    def session(self) -> str:
        return f"{self.hostname}:{self.engine.get_rpc_port()}"

    def _in_buffer(self, tensor: torch.Tensor) -> bool:
        start = self.buffer.data_ptr()
        return start <= tensor.data_ptr() and tensor.data_ptr() + tensor.numel() * tensor.element_size() <= start + self.nbytes

    def _pack(self, named_tensors: Iterable[tuple[str, torch.Tensor]],
              declared: list[Declared] | None) -> list[tuple[str, torch.Tensor]]:
        """Each tensor copied to the next free bytes of the staging buffer as it arrives, then dropped."""
        raw = self.buffer.view(torch.uint8)
        expected = iter(declared) if declared is not None else None
        packed, offset = [], 0
        for name, tensor in named_tensors:
            if expected is not None:
                check_declared(next(expected, ("(nothing more)", [], "")), name, tensor)
            self.ledger.hold(tensor)
            size = nbytes_of(tensor)
            if offset + size > self.nbytes:
                raise TransferError(f"{name}: the weights exceed the {self.nbytes}-byte staging buffer")
            view = raw[offset: offset + size].view(tensor.dtype).view(tensor.shape)
            with torch.no_grad():
                view.copy_(tensor)
            packed.append((name, view))
            offset += size
            del tensor  # packed: the producer's copy may go
        return packed

    def stage(self, named_tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int,
              declared: list[Declared] | None = None) -> dict[str, Any]:
        """A JSON-able description of the buckets: the receiver needs nothing else."""
        self.ledger.start_sync()
        if self.staging:
            named_tensors = self._pack(named_tensors, declared)
        else:
            named_tensors = list(named_tensors)  # views of the trainer's own buffer: nothing is copied
            outside = [name for name, tensor in named_tensors if not self._in_buffer(tensor)]
            if outside:
                raise TransferError(f"{outside[0]}: not inside the trainer's flat parameter buffer, which this sender "
                                    "serves in place (a trainer without one gets a staging buffer)")
        base = self.buffer.data_ptr()
        slots = layout_of(named_tensors, base)
        layouts = plan_buckets(slots, bucket_bytes)
        by_name = {s.name: s for s in slots}
        starts = [by_name[layout.names[0]].offset for layout in layouts]
        return weight_handle(
            f"mooncake-{self.protocol}", self.nbytes, len(layouts),
            # the receiver shares this pod's network namespace, so it listens on the same address
            receiver_init={"capacity_bytes": self.nbytes, "hostname": self.hostname, "protocol": self.protocol,
                           "device": self.device},
            staging=self.ledger.report(),
            session=self.session,
            buckets=[dict(asdict(layout), remote_addr=base + start, start=start) for layout, start in zip(layouts, starts)],
        )

    def release(self) -> None:
        """Nothing to free: the buffer is the trainer's own parameters, or a staging area kept for the next sync."""

    def close(self) -> None:
        self.engine.unregister_memory(self.buffer.data_ptr())


class MooncakeReceiver:
    """Rollout side: pulls the sender's buckets into one registered local buffer."""

    def __init__(self, capacity_bytes: int, hostname: str = "127.0.0.1", protocol: str = "tcp", device: str = "",
                 buffer_device: str = "cpu") -> None:
        self.engine = _engine(hostname, protocol, device)
        self.buffer = torch.empty(capacity_bytes, dtype=torch.uint8, device=buffer_device)
        if self.engine.register_memory(self.buffer.data_ptr(), capacity_bytes) != 0:
            raise TransferError(f"could not register a {capacity_bytes}-byte receive buffer with Mooncake")
        self.stats = TransferStats()

    def _submit(self, session: str, bucket: dict[str, Any]) -> int:
        local = self.buffer.data_ptr() + bucket["start"]
        batch = self.engine.batch_transfer_async_read(session, [local], [bucket["remote_addr"]], [bucket["nbytes"]])
        if batch == 0 or batch is None:
            raise TransferError(f"could not submit a read of {bucket['nbytes']} bytes from {session} (bucket {bucket['names'][0]}...)")
        return batch

    def _wait(self, session: str, batch: int, bucket: dict[str, Any]) -> None:
        rc = self.engine.get_batch_transfer_status([batch])
        if rc != 0:
            raise TransferError(f"read from {session} failed (rc={rc}) for the bucket starting at {bucket['names'][0]}")

    def receive(self, handle: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (name, tensor) for every tensor, bucket by bucket, reading one bucket ahead."""
        if handle["total_bytes"] > self.buffer.numel():
            raise TransferError(f"sender has {handle['total_bytes']} bytes, receive buffer holds {self.buffer.numel()}")
        session, buckets = handle["session"], handle["buckets"]
        started = time.perf_counter()
        self.stats = TransferStats()
        pending = self._submit(session, buckets[0]) if buckets else None
        for index, bucket in enumerate(buckets):
            wait_started = time.perf_counter()
            self._wait(session, pending, bucket)
            self.stats.transfer_wait_seconds += time.perf_counter() - wait_started
            if index + 1 < len(buckets):
                pending = self._submit(session, buckets[index + 1])
            self.stats.bytes += bucket["nbytes"]
            self.stats.buckets += 1
            yield from self._tensors(bucket)
        self.stats.seconds = time.perf_counter() - started

    def _tensors(self, bucket: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
        base = bucket["start"]
        for name, shape, dtype, offset in zip(bucket["names"], bucket["shapes"], bucket["dtypes"], bucket["offsets"]):
            torch_dtype = DTYPES[dtype]
            count = 1
            for dim in shape:
                count *= dim
            nbytes = count * torch.tensor([], dtype=torch_dtype).element_size()
            raw = self.buffer[base + offset: base + offset + nbytes]
            yield name, raw.view(torch_dtype).view(shape)

    def release(self) -> None:
        """Nothing to drop: the tensors were views of this receiver's own buffer, reused next sync."""

    def close(self) -> None:
        self.engine.unregister_memory(self.buffer.data_ptr())


def open_for_trainer(trainer: Any, hostname: str, protocol: str, device: str = "") -> MooncakeSender:
    """The sender over the trainer's flat parameter buffer when it has one (read in place, no
    staging copy), else over a staging buffer sized from the tensors the trainer declares
    (Megatron's shards are gathered into it at each sync)."""
    flat = getattr(trainer, "flat", None)
    if flat is not None:
        return MooncakeSender(flat, hostname, protocol, device)
    total = sum(math.prod(shape) * DTYPES[dtype].itemsize for _, shape, dtype in trainer.hf_metadata())
    buffer = torch.empty(total, dtype=torch.uint8, pin_memory=torch.cuda.is_available())
    return MooncakeSender(buffer, hostname, protocol, device, staging=True)


def pod_leader_sender(protocol: str, device: str = "") -> Callable[..., MooncakeSender | None]:
    """One sender per pod, on its leader rank: the pod's engines all read from it."""
    return lambda trainer, hostname, rollout_gpus, local_rank: (
        open_for_trainer(trainer, hostname, protocol, device) if local_rank == 0 else None)


def open_receiver(receiver_init: dict[str, Any], device: torch.device) -> MooncakeReceiver:
    """The receive buffer on the vLLM worker's device: over RDMA the NIC writes straight into
    GPU memory (GPUDirect RDMA), so the host is not on the data path."""
    return MooncakeReceiver(receiver_init["capacity_bytes"], receiver_init["hostname"], receiver_init["protocol"],
                            receiver_init["device"], buffer_device="cpu" if device.type == "cpu" else str(device))


NIC = ""  # for RDMA, e.g. "mlx5_0"; empty lets Mooncake pick from its topology scan

TCP = WeightChannel("mooncake-tcp", pod_leader_sender("tcp"), open_receiver)
# for trainer and rollout engines on different GPUs or nodes
RDMA = WeightChannel("mooncake-rdma", pod_leader_sender("rdma", NIC), open_receiver)
