"""A Mooncake receiver run in a child process (spawned processes need an importable target)."""
import multiprocessing as mp


def _receive(handle, queue):
    from seesaw.checkpoint_engine.channels.mooncake import MooncakeReceiver

    receiver = MooncakeReceiver(handle["total_bytes"])
    queue.put({name: tensor.clone() for name, tensor in receiver.receive(handle)})


def pull(handle, timeout=120):
    """Receive everything `handle` describes in another process; return {name: tensor}."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_receive, args=(handle, queue))
    process.start()
    try:
        return queue.get(timeout=timeout)
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
