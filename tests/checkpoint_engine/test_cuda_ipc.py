"""CUDA IPC weight channel: bucket packing and JSON handles on the CPU; the two-process hand-off on a GPU."""
from __future__ import annotations

import json

import pytest
import torch

from seesaw.checkpoint_engine.weights.cuda_ipc import (
    ALIGN,
    IPC_FIELDS,
    IpcChannelError,
    decode_ipc_args,
    encode_ipc_args,
    plan_packing,
)
from seesaw.checkpoint_engine.weights import UnknownChannel, channel_rules, weight_channel


def test_packing_keeps_order_aligns_and_respects_the_bucket_size() -> None:
    metas = [("a", [3], "bfloat16"), ("b", [100], "float32"), ("c", [10, 10], "bfloat16"), ("d", [1], "float32")]
    buckets = plan_packing(metas, bucket_bytes=700)
    assert [b.names for b in buckets] == [["a", "b"], ["c", "d"]]
    assert buckets[0].offsets == [0, ALIGN] and buckets[0].nbytes == ALIGN + 400
    assert all(o % ALIGN == 0 for b in buckets for o in b.offsets)
    assert all(b.nbytes <= 700 for b in buckets)


def test_a_tensor_bigger_than_a_bucket_gets_its_own() -> None:
    buckets = plan_packing([("small", [4], "float32"), ("big", [1000], "float32"), ("tail", [4], "float32")], 256)
    assert [b.names for b in buckets] == [["small"], ["big"], ["tail"]]
    assert buckets[1].nbytes == 4000


def test_packing_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="bucket_bytes"):
        plan_packing([("a", [1], "float32")], 0)
    with pytest.raises(IpcChannelError, match="w: dtype 'complex64'"):
        plan_packing([("w", [1], "complex64")], 64)


def fake_reduce_args() -> tuple:
    # Same order and types as torch.multiprocessing.reductions.reduce_tensor for a CUDA tensor.
    return (torch.Tensor, torch.Size([4, 8]), (8, 1), 0, torch.storage.TypedStorage, torch.bfloat16, 3,
            b"\x01\x02handle\xff", 64, 0, False, b"refcount", 16, b"\x00event", True)


def test_ipc_args_survive_a_json_round_trip() -> None:
    encoded = json.loads(json.dumps(encode_ipc_args(fake_reduce_args())))
    assert set(encoded) == set(IPC_FIELDS)
    assert decode_ipc_args(encoded) == fake_reduce_args()


def test_decoding_puts_the_receivers_device_index() -> None:
    decoded = decode_ipc_args(encode_ipc_args(fake_reduce_args()), device_index=0)
    assert decoded[IPC_FIELDS.index("storage_device")] == 0


def test_decoding_refuses_classes_outside_the_allowlist() -> None:
    encoded = encode_ipc_args(fake_reduce_args())
    encoded["tensor_cls"] = "os.system"
    with pytest.raises(IpcChannelError, match="tensor_cls: 'os.system' is not an allowed class"):
        decode_ipc_args(encoded)
    del encoded["event_handle"]
    with pytest.raises(IpcChannelError, match="event_handle"):
        decode_ipc_args(encoded)


def test_channels_are_registered_without_a_gpu() -> None:
    for name in ("cuda-ipc", "mooncake-rdma", "mooncake-tcp"):
        channel = weight_channel(name)
        assert channel.name == name and callable(channel.open_sender) and callable(channel.open_receiver)
    assert not channel_rules("cuda-ipc").leaves_pod and channel_rules("mooncake-rdma").needs_rdma
    with pytest.raises(UnknownChannel, match=r"spec.weightSync.channel: expected one of \['cuda-ipc', 'mooncake-rdma', "
                                             r"'mooncake-tcp'\], got 'carrier-pigeon'"):
        weight_channel("carrier-pigeon")


def _receive_in_child(handle: dict, queue) -> None:  # runs in a spawned process
    from seesaw.checkpoint_engine.weights.cuda_ipc import CudaIpcReceiver

    receiver = CudaIpcReceiver(0)
    queue.put({name: tensor.float().sum().item() for name, tensor in receiver.receive(handle)})
    receiver.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA IPC needs a GPU")
@pytest.mark.parametrize("zero_copy", [False, True])
def test_two_process_handoff_on_one_gpu(zero_copy: bool) -> None:
    import torch.multiprocessing as mp

    from seesaw.checkpoint_engine.weights.cuda_ipc import CudaIpcSender

    tensors = {f"w{i}": torch.randn(257, 33, device="cuda", dtype=torch.bfloat16) for i in range(5)}
    tensors["strided"] = torch.randn(64, 64, device="cuda").t()
    sender = CudaIpcSender(0, zero_copy=zero_copy)
    handle = json.loads(json.dumps(sender.stage(tensors.items(), bucket_bytes=40_000)))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_receive_in_child, args=(handle, queue))
    child.start()
    sums = queue.get(timeout=120)
    child.join(timeout=60)
    sender.close()
    assert sums == pytest.approx({n: t.float().sum().item() for n, t in tensors.items()})


def test_each_tensor_parallel_worker_opens_the_part_staged_on_its_own_gpu() -> None:
    from seesaw.checkpoint_engine.weights.cuda_ipc import IpcChannelError, handle_for_gpu
    from seesaw.interfaces import weight_handle

    parts = [{"gpu_uuid": f"GPU-{i}", "buckets": [{"names": [f"on-{i}"]}], "shared": []} for i in range(2)]
    handle = json.loads(json.dumps(weight_handle("cuda-ipc", 100, 1, receiver_init={}, per_gpu=parts)))
    assert handle_for_gpu(handle, "GPU-1")["buckets"][0]["names"] == ["on-1"]
    assert handle_for_gpu(handle, "GPU-0")["buckets"][0]["names"] == ["on-0"]
    with pytest.raises(IpcChannelError, match=r"staged weights on GPU\(s\) \['GPU-0', 'GPU-1'\], not on this process's GPU GPU-7"):
        handle_for_gpu(handle, "GPU-7")


def test_the_pod_handle_holds_each_staging_ranks_gpu_and_the_largest_peak() -> None:
    from seesaw.interfaces import weight_handle

    ranks = [weight_handle("cuda-ipc", 100, 1, receiver_init={}, staging={"staged_bytes": 100 + i, "peak_bytes": 150 + i},
                           per_gpu=[{"gpu_uuid": f"GPU-{i}", "buckets": [], "shared": []}]) for i in range(2)]
    merged = weight_channel("cuda-ipc").merge(ranks)
    assert [part["gpu_uuid"] for part in merged["per_gpu"]] == ["GPU-0", "GPU-1"]
    assert merged["staging"] == {"staged_bytes": 101, "peak_bytes": 151} and merged["total_bytes"] == 100
    # the channel stages on each rollout GPU by the rank on it, and nowhere else
    assert weight_channel("cuda-ipc").open_sender(None, "", [0, 1], 3) is None
