"""What a weight sender holds beyond the trainer's own memory, and packing tensors as they are produced.

A Megatron trainer produces its Hugging Face tensors one parameter at a time (gathered over
TP, PP and EP: fresh copies). A sender that collected them all before packing would hold the
weights twice, next to vLLM's own copy on the same GPU. Instead the sender plans its buckets
from the shapes the trainer declares (`hf_metadata`), copies each tensor into its place as it
arrives, and lets it go.

The ledger counts the sender's own buffers and every produced tensor it was handed, for as
long as that tensor is alive (a weak reference sees it freed), so a sender or a producer that
keeps tensors around shows up in the peak.
"""
from __future__ import annotations

import threading
import weakref
from typing import Callable, Iterable, Iterator

import torch

from seesaw.interfaces import BucketLayout

Declared = tuple[str, list[int], str]  # (name, shape, dtype) in the order the trainer yields them


class StagingError(RuntimeError):
    """The trainer produced other tensors than it declared; the message names the first one."""


def dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def nbytes_of(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


class StagingLedger:
    """Bytes a sender holds now, and the most it held since the sync began."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self._lock = threading.Lock()  # finalizers run in whichever thread drops the last reference

    def allocated(self, nbytes: int) -> None:
        with self._lock:
            self.now += nbytes
            self.peak = max(self.peak, self.now)

    def freed(self, nbytes: int) -> None:
        with self._lock:
            self.now -= nbytes

    def hold(self, tensor: torch.Tensor) -> None:
        """A produced tensor: counted until it is freed."""
        nbytes = nbytes_of(tensor)
        self.allocated(nbytes)
        weakref.finalize(tensor, self.freed, nbytes)

    def start_sync(self) -> None:
        with self._lock:
            self.peak = self.now

    def report(self) -> dict[str, int]:
        return {"staged_bytes": self.now, "peak_bytes": self.peak}


def check_declared(expected: Declared, name: str, tensor: torch.Tensor) -> None:
    want_name, want_shape, want_dtype = expected
    if (name, list(tensor.shape), dtype_name(tensor)) != (want_name, list(want_shape), want_dtype):
        raise StagingError(f"the trainer produced {name} {list(tensor.shape)} {dtype_name(tensor)} where it declared "
                           f"{want_name} {list(want_shape)} {want_dtype} (hf_metadata and hf_state disagree)")


def pack_as_produced(named_tensors: Iterable[tuple[str, torch.Tensor]], layouts: list[BucketLayout],
                     allocate: Callable[[int], torch.Tensor], ledger: StagingLedger) -> Iterator[tuple[BucketLayout, torch.Tensor]]:
    """Copy each produced tensor into its planned place in its bucket and drop it; yields each
    (layout, byte buffer) once filled. A bucket's buffer is `allocate(nbytes)`, called when its
    first tensor arrives; the caller counts in the ledger what that allocates."""
    produced = iter(named_tensors)
    for layout in layouts:
        buffer = allocate(layout.nbytes)
        for name, shape, dtype, offset in zip(layout.names, layout.shapes, layout.dtypes, layout.offsets):
            item = next(produced, None)
            if item is None:
                raise StagingError(f"the trainer declared {name} but its tensors ended before it")
            check_declared((name, shape, dtype), *item)
            tensor = item[1]
            del item
            ledger.hold(tensor)
            size = nbytes_of(tensor)
            with torch.no_grad():
                buffer[offset: offset + size].view(tensor.dtype).view(tensor.shape).copy_(tensor, non_blocking=True)
            del tensor  # packed: the producer's copy may go
        yield layout, buffer
    extra = next(produced, None)
    if extra is not None:
        raise StagingError(f"the trainer produced {extra[0]}, which it did not declare")
