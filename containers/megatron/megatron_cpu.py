"""Megatron-core on the CPU: the few CUDA assumptions of Megatron itself, each sent to the CPU.

Slow, and only for debugging a TP/PP/DP layout without a GPU (a laptop, CI): the ranks
talk over gloo, and every tensor Megatron asks for on "cuda" is made on the CPU. Seesaw's
own backend takes its device from where it runs; what is shimmed here is Megatron's:

- allocations on `device="cuda"`, `.cuda()`, `.to("cuda")` and pinned host buffers (DDP
  grad buffers, p2p buffers of the pipeline schedules, the distributed optimizer's shards);
- `Tensor.type()`, which Megatron's DDP and optimizer read to group parameters by dtype
  ("torch.cuda.FloatTensor"), reported as CUDA type names;
- `torch.cuda.current_device()`, which is the CPU device itself (autograd's backward runs
  without the function mode, and Megatron allocates there on `device=current_device()`);
- `synchronize()` / `empty_cache()` (nothing to wait for or release), and one stream (and
  events) whose waits do nothing: the MoE token dispatcher works on a side stream;
- the CUDA RNG tracker of `tensor_parallel/random.py` (TP-rank seeds for dropout and init),
  backed by CPU generator states;
- the MoE dispatcher's copy of its all-to-all split sizes to the host (numpy arrays).

`enable()` patches torch.cuda once per process; `allocations_on_cpu()` sends the allocations
to the CPU for the calls made inside it (the backend wraps each of its methods in it).
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode

CUDA_TYPE_NAMES = {torch.float32: "torch.cuda.FloatTensor", torch.float16: "torch.cuda.HalfTensor",
                   torch.bfloat16: "torch.cuda.BFloat16Tensor", torch.float64: "torch.cuda.DoubleTensor",
                   torch.int64: "torch.cuda.LongTensor", torch.int32: "torch.cuda.IntTensor",
                   torch.uint8: "torch.cuda.ByteTensor", torch.bool: "torch.cuda.BoolTensor"}
_enabled = False


def _is_cuda(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    return isinstance(device, int)  # a device index: torch.cuda's devices are numbered


class _CudaToCpu(TorchFunctionMode):
    """Every "cuda" device argument becomes the CPU; pinning is dropped (no device to DMA to)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "cuda" or name == "pin_memory":
            return args[0]
        if name == "type" and len(args) == 1 and not kwargs:
            tensor = args[0]
            return CUDA_TYPE_NAMES.get(tensor.dtype, func(*args))
        if name == "is_pinned":
            return True
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = "cpu"
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False
        if name == "to" and len(args) > 1 and not isinstance(args[1], bool) and _is_cuda(args[1]):
            args = (args[0], "cpu", *args[2:])  # tensor.to(device, ...): the device comes first
        return func(*args, **kwargs)


class _NoEvent:
    def synchronize(self) -> None: ...
    def wait(self, *_: Any) -> None: ...
    def record(self, *_: Any) -> None: ...
    def query(self) -> bool:
        return True


class _NoStream:
    """torch.cuda streams on the CPU: work is already ordered, waits return at once. One
    stream stands for them all, so Megatron sees no side stream to record tensors on."""

    def wait_stream(self, *_: Any) -> None: ...
    def wait_event(self, *_: Any) -> None: ...
    def synchronize(self) -> None: ...

    def record_event(self, *_: Any) -> _NoEvent:
        return _NoEvent()


_STREAM = _NoStream()


class _CpuIsTheCudaState(logging.Filter):
    # fork() warns when the CPU state moves inside a CUDA-state fork: here they are one state
    def filter(self, record: logging.LogRecord) -> bool:
        return "CPU RNG state changed within GPU RNG context" not in record.getMessage()


def _cpu_rng_tracker() -> None:
    """The tracker keeps one CPU generator state per name and swaps it in around `fork`."""
    from megatron.core.tensor_parallel import random as mrandom

    logging.getLogger(mrandom.__name__).addFilter(_CpuIsTheCudaState())
    mrandom._get_cuda_rng_state = lambda *a, clone=False, **k: torch.get_rng_state().clone() if clone else torch.get_rng_state()
    mrandom._set_cuda_rng_state = lambda state, *a, **k: torch.set_rng_state(state)


def _moe_split_sizes_on_the_host() -> None:
    """The MoE dispatcher hands its all-to-all split sizes to the host as numpy arrays, but
    only moves tensors that are on a GPU: on the CPU they stayed tensors, which gloo's
    all_to_all_single refuses as split sizes."""
    from megatron.core.transformer.moe import moe_utils, token_dispatcher

    def to_host(tensor: Any, as_numpy: bool = False, record_stream: bool = False) -> Any:
        if torch.is_tensor(tensor) and as_numpy:
            return tensor.numpy()
        return tensor

    moe_utils.maybe_move_tensor_to_cpu = token_dispatcher.maybe_move_tensor_to_cpu = to_host


def enable() -> None:
    global _enabled
    if _enabled:
        return
    cuda = torch.cuda
    # the CPU device itself, not an index: torch's function modes are off inside autograd's
    # backward, where Megatron still allocates on `device=torch.cuda.current_device()`
    cuda.current_device = lambda: torch.device("cpu")
    cuda.synchronize = lambda *a, **k: None
    cuda.empty_cache = lambda: None
    # the CUDA generator is the CPU's: the tracker's named states (one per TP rank) are seeded
    # from it as on a GPU, and Megatron's data-parallel seed reseeds it
    cuda.manual_seed = torch.manual_seed
    cuda.get_rng_state = lambda *a, **k: torch.get_rng_state()
    cuda.set_rng_state = lambda state, *a, **k: torch.set_rng_state(state)
    cuda.current_stream = cuda.default_stream = cuda.Stream = lambda *a, **k: _STREAM  # Stream: MoE's dispatcher
    cuda.Event = lambda *a, **k: _NoEvent()
    cuda.stream = lambda *a, **k: contextlib.nullcontext()
    cuda.device_count = lambda: 1
    _cpu_rng_tracker()
    _moe_split_sizes_on_the_host()
    _enabled = True


_thread = threading.local()


@contextlib.contextmanager
def allocations_on_cpu() -> Iterator[None]:
    """Megatron's "cuda" allocations go to the CPU inside this block. Torch's function modes
    are per thread, and the trainer is called from its server's threads: each call enters
    this (re-entrant) block itself."""
    enable()
    if getattr(_thread, "depth", 0):
        _thread.depth += 1
        try:
            yield
        finally:
            _thread.depth -= 1
        return
    _thread.depth = 1
    try:
        with _CudaToCpu():
            yield
    finally:
        _thread.depth = 0
