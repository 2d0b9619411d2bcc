"""A Mooncake receiver run in a child process (spawned processes need an importable target)."""
import multiprocessing as mp

import torch


def _receive(handle, queue):
    import torch

    from seesaw.checkpoint_engine.weights.mooncake import MooncakeReceiver

    receiver = MooncakeReceiver(handle["total_bytes"])
    # plain bytes across the queue: pickled tensors would point at the child's memory
    queue.put({name: (str(t.dtype), tuple(t.shape), t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
               for name, t in receiver.receive(handle)})


def pull(handle, timeout=120):
    """Receive everything `handle` describes in another process; return {name: tensor}."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_receive, args=(handle, queue))
    process.start()
    try:
        raw = queue.get(timeout=timeout)
        return {name: torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype.removeprefix("torch."))).view(shape)
                for name, (dtype, shape, data) in raw.items()}
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
