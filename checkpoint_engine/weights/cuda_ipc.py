"""Weight channel over CUDA IPC: trainer and rollout engine share one GPU, weights never touch the host.

The sender packs the tensors into GPU bucket buffers as the trainer produces them (a
device-to-device copy, needed anyway where resharding splits fused tensors) or, with
`zero_copy`, shares contiguous CUDA tensors as they are; either way it exports CUDA IPC handles with torch's multiprocessing
reductions. The receiver opens the handles in its own process and yields views of the
sender's memory: vLLM's weight loaders copy from them straight into its parameters.

The handle is plain JSON (no pickle): the reduction's arguments are written out field by
field, bytes as base64, classes and dtypes by name from an allowlist, so a handle can
cross an HTTP hop between containers without trusting the sender with code execution.
"""
from __future__ import annotations

import base64
import time
from dataclasses import asdict
from typing import Any, Iterable, Iterator

import torch

from seesaw.checkpoint_engine.weights.staging import Declared, StagingLedger, dtype_name, pack_as_produced
from seesaw.interfaces import BucketLayout, TransferStats, WeightChannel, weight_handle

ALIGN = 256  # bytes: every tensor in a bucket starts aligned for any dtype and vector loads
DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int64, torch.int32, torch.int8, torch.uint8,
    torch.bool, torch.float8_e4m3fn, torch.float8_e5m2)}
# rebuild_cuda_tensor's argument order (torch/multiprocessing/reductions.py, reduce_tensor).
IPC_FIELDS = ("tensor_cls", "tensor_size", "tensor_stride", "tensor_offset", "storage_cls", "dtype", "storage_device",
              "storage_handle", "storage_size_bytes", "storage_offset_bytes", "requires_grad", "ref_counter_handle",
              "ref_counter_offset", "event_handle", "event_sync_required")
_BYTES_FIELDS = {"storage_handle", "ref_counter_handle", "event_handle"}


class IpcChannelError(RuntimeError):
    """A handle that cannot be opened here; the message names the bucket or tensor."""


def _classes() -> dict[str, type]:
    import torch.storage

    return {"torch.Tensor": torch.Tensor, "torch.nn.parameter.Parameter": torch.nn.Parameter,
            "torch.storage.TypedStorage": torch.storage.TypedStorage, "torch.storage.UntypedStorage": torch.UntypedStorage,
            "torch.UntypedStorage": torch.UntypedStorage}


def _class_name(cls: type) -> str:
    name = f"{cls.__module__}.{cls.__qualname__}"
    if name not in _classes():
        raise IpcChannelError(f"cannot share a {name} over CUDA IPC (expected a plain tensor or parameter)")
    return name


def encode_ipc_args(args: tuple) -> dict[str, Any]:
    """torch's reduce_tensor arguments -> a JSON-able dict."""
    if len(args) != len(IPC_FIELDS):
        raise IpcChannelError(f"reduce_tensor gave {len(args)} arguments, expected {len(IPC_FIELDS)} (torch version changed?)")
    out: dict[str, Any] = {}
    for name, value in zip(IPC_FIELDS, args):
        if name in ("tensor_cls", "storage_cls"):
            value = _class_name(value)
        elif name == "dtype":
            value = str(value).removeprefix("torch.")
        elif name in ("tensor_size", "tensor_stride"):
            value = list(value)
        elif name in _BYTES_FIELDS:
            value = None if value is None else base64.b64encode(bytes(value)).decode("ascii")
        out[name] = value
    return out


def decode_ipc_args(encoded: dict[str, Any], device_index: int | None = None) -> tuple:
    """Inverse of encode_ipc_args; device_index replaces the sender's ordinal (the same GPU
    may have another index in the receiver's CUDA_VISIBLE_DEVICES)."""
    missing = [f for f in IPC_FIELDS if f not in encoded]
    if missing:
        raise IpcChannelError(f"IPC handle lacks {missing}")
    classes = _classes()
    args = []
    for name in IPC_FIELDS:
        value = encoded[name]
        if name in ("tensor_cls", "storage_cls"):
            if value not in classes:
                raise IpcChannelError(f"{name}: {value!r} is not an allowed class")
            value = classes[value]
        elif name == "dtype":
            if value not in DTYPES:
                raise IpcChannelError(f"dtype: {value!r} is not supported")
            value = DTYPES[value]
        elif name in ("tensor_size",):
            value = torch.Size(value)
        elif name == "tensor_stride":
            value = tuple(value)
        elif name in _BYTES_FIELDS:
            value = None if value is None else base64.b64decode(value)
        elif name == "storage_device" and device_index is not None:
            value = device_index
        args.append(value)
    return tuple(args)


def _nbytes(shape: Iterable[int], dtype: str) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count * torch.empty((), dtype=DTYPES[dtype]).element_size()


def plan_packing(metas: list[tuple[str, list[int], str]], bucket_bytes: int, align: int = ALIGN) -> list[BucketLayout]:
    """Pack (name, shape, dtype) in order into buckets of at most bucket_bytes, each tensor
    aligned; a tensor bigger than a bucket gets a bucket of its own."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes: expected > 0, got {bucket_bytes}")
    buckets: list[BucketLayout] = []
    for name, shape, dtype in metas:
        if dtype not in DTYPES:
            raise IpcChannelError(f"{name}: dtype {dtype!r} is not supported")
        size = _nbytes(shape, dtype)
        current = buckets[-1] if buckets else None
        offset = -(-current.nbytes // align) * align if current else 0
        if current is None or (offset + size > bucket_bytes and current.names):
            current = BucketLayout(names=[], shapes=[], dtypes=[], offsets=[], nbytes=0)
            buckets.append(current)
            offset = 0
        current.names.append(name)
        current.shapes.append(list(shape))
        current.dtypes.append(dtype)
        current.offsets.append(offset)
        current.nbytes = offset + size
    return buckets


def gpu_uuid(device_index: int) -> str:
    return str(torch.cuda.get_device_properties(device_index).uuid)


def handle_for_gpu(handle: dict[str, Any], uuid: str) -> dict[str, Any]:
    """The part of a sync's handle staged on GPU `uuid`: each vLLM tensor-parallel worker
    opens the copy on its own GPU (a CUDA IPC handle opens only on the GPU it was made on)."""
    for part in handle["per_gpu"]:
        if part["gpu_uuid"] == uuid:
            return part
    staged = [part["gpu_uuid"] for part in handle["per_gpu"]]
    raise IpcChannelError(f"the trainer staged weights on GPU(s) {staged}, not on this process's GPU {uuid}: "
                          "CUDA IPC needs trainer and rollout on the same GPUs (use a Mooncake channel)")


class CudaIpcSender:
    """Trainer side: stages one copy of the weights in GPU buckets on this rank's own GPU (each
    trainer rank serves the rollout worker on its GPU) and exports their CUDA IPC handles."""

    def __init__(self, device: int | str | torch.device | None = None, zero_copy: bool = False) -> None:
        self.device = (torch.device("cuda", torch.cuda.current_device()) if device is None
                       else torch.device("cuda", device) if isinstance(device, int) else torch.device(device))
        self.zero_copy = zero_copy
        self._alive: list[torch.Tensor] = []  # exported memory must outlive the receiver's use
        self._staged_bytes = 0
        self.ledger = StagingLedger()
        self.stats = TransferStats()

    def _bucket(self, nbytes: int) -> torch.Tensor:
        buffer = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        self.ledger.allocated(nbytes)
        self._staged_bytes += nbytes
        return buffer

    def _shareable(self, tensor: torch.Tensor) -> bool:
        return self.zero_copy and tensor.is_cuda and tensor.is_contiguous() and tensor.device == self.device

    def stage(self, named_tensors: Iterable[tuple[str, torch.Tensor]], bucket_bytes: int,
              declared: list[Declared] | None = None) -> dict[str, Any]:
        """With `declared` (the trainer's hf_metadata) the buckets are planned from the shapes and
        each tensor is packed as it is produced; without, the tensors are collected first (a
        caller that holds them anyway: tests, the rollout engine loading its own tensors)."""
        from torch.multiprocessing.reductions import reduce_tensor

        started = time.perf_counter()
        self.release()
        self.stats = TransferStats()
        self.ledger.start_sync()
        shared: list[tuple[str, torch.Tensor]] = []
        if declared is None:
            named = [(name, tensor.detach()) for name, tensor in named_tensors]
            shared = [(n, t) for n, t in named if self._shareable(t)]
            named_tensors = [(n, t) for n, t in named if not self._shareable(t)]
            declared = [(n, list(t.shape), dtype_name(t)) for n, t in named_tensors]
            del named
        buckets = []
        for layout, buffer in pack_as_produced(named_tensors, plan_packing(declared, bucket_bytes), self._bucket, self.ledger):
            self._alive.append(buffer)
            buckets.append(dict(asdict(layout), ipc=encode_ipc_args(reduce_tensor(buffer)[1])))
        direct = []
        for name, tensor in shared:
            self._alive.append(tensor)
            direct.append({"name": name, "ipc": encode_ipc_args(reduce_tensor(tensor)[1])})
        # The receiver reads on its own stream: the copies must be complete before it opens the handles.
        torch.cuda.synchronize(self.device)
        total = sum(b["nbytes"] for b in buckets) + sum(t.numel() * t.element_size() for _, t in shared)
        self.stats = TransferStats(bytes=total, seconds=time.perf_counter() - started, buckets=len(buckets),
                              zero_copy_tensors=len(shared))
        part = {"gpu_uuid": gpu_uuid(self.device.index), "total_bytes": total, "buckets": buckets, "shared": direct}
        return weight_handle("cuda-ipc", total, len(buckets), receiver_init={}, per_gpu=[part],
                             staging=self.ledger.report())

    def release(self) -> None:
        """Free the last staging buffers (after the receiver has finished with them): they
        are the memory the next rollout needs."""
        self._alive.clear()
        self.ledger.freed(self._staged_bytes)
        self._staged_bytes = 0
        if torch.cuda.is_initialized():
            torch.cuda.ipc_collect()
            torch.cuda.empty_cache()

    def close(self) -> None:
        self.release()


def merge_rank_handles(handles: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod's handle from each staging rank's: one part per GPU, the largest staging peak."""
    merged = dict(handles[0], per_gpu=[part for handle in handles for part in handle["per_gpu"]])
    merged["staging"] = {key: max(h["staging"][key] for h in handles) for key in handles[0]["staging"]}
    return merged


class CudaIpcReceiver:
    """Rollout side: opens the sender's handles and yields (name, tensor) views on this GPU."""

    def __init__(self, device_index: int | None = None) -> None:
        self.device_index = torch.cuda.current_device() if device_index is None else device_index
        self._opened: list[torch.Tensor] = []
        self.stats = TransferStats()

    def _open(self, encoded: dict[str, Any], what: str) -> torch.Tensor:
        from torch.multiprocessing.reductions import rebuild_cuda_tensor

        try:
            return rebuild_cuda_tensor(*decode_ipc_args(encoded, self.device_index))
        except RuntimeError as err:
            raise IpcChannelError(f"could not open the CUDA IPC handle of {what}: {err}") from err

    def receive(self, handle: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
        mine = handle_for_gpu(handle, gpu_uuid(self.device_index))
        started = time.perf_counter()
        self.release()
        stats = TransferStats()
        for index, bucket in enumerate(mine["buckets"]):
            buffer = self._open(bucket["ipc"], f"bucket {index} ({bucket['names'][0]}...)")
            self._opened.append(buffer)
            for name, shape, dtype, offset in zip(bucket["names"], bucket["shapes"], bucket["dtypes"], bucket["offsets"]):
                size = _nbytes(shape, dtype)
                yield name, buffer[offset: offset + size].view(DTYPES[dtype]).view(shape)
            stats.bytes += bucket["nbytes"]
            stats.buckets += 1
        for entry in mine.get("shared", []):
            tensor = self._open(entry["ipc"], entry["name"])
            self._opened.append(tensor)
            stats.bytes += tensor.numel() * tensor.element_size()
            stats.zero_copy_tensors += 1
            yield entry["name"], tensor
        stats.seconds = time.perf_counter() - started
        self.stats = stats

    def release(self) -> None:
        """Drop the views: the trainer may free or reuse its buckets once vLLM has loaded them."""
        self._opened.clear()

    def close(self) -> None:
        self.release()


# one staged copy on each GPU of the rollout engines, by the trainer rank on that GPU
CHANNEL = WeightChannel(
    "cuda-ipc",
    lambda trainer, hostname, rollout_gpus, local_rank: CudaIpcSender(local_rank) if local_rank in rollout_gpus else None,
    lambda receiver_init, device: CudaIpcReceiver(device.index),
    merge=merge_rank_handles)
