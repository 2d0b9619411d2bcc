"""The Mooncake weight channel between two processes, without vLLM: buckets, staging, errors."""
import pytest
import torch

from mooncake_peer import pull
from seesaw.checkpoint_engine.weights.mooncake import MooncakeSender, TensorSlot, TransferError, plan_buckets


def test_buckets_are_contiguous_ranges_of_at_most_the_bucket_size():
    slots = [TensorSlot(f"t{i}", (n,), "float32", offset, n * 4) for i, (n, offset) in
             enumerate([(10, 0), (20, 40), (5, 120), (100, 140), (1, 540)])]
    buckets = plan_buckets(slots, bucket_bytes=128)
    assert [b.names for b in buckets] == [["t0", "t1"], ["t2"], ["t3"], ["t4"]]
    assert [b.nbytes for b in buckets] == [120, 20, 400, 4]
    assert buckets[0].offsets == [0, 40]
    with pytest.raises(ValueError, match="bucket_bytes"):
        plan_buckets(slots, 0)


def test_in_place_weights_arrive_bit_exact_in_another_process():
    torch.manual_seed(0)
    flat = torch.randn(50_000)
    named = [("a.weight", flat[:30_000].view(100, 300)), ("b.bias", flat[30_000:30_010]), ("c.weight", flat[30_010:].view(-1))]
    sender = MooncakeSender(flat)
    handle = sender.stage(named, bucket_bytes=64 * 1024)
    assert len(handle["buckets"]) == 3
    received = pull(handle)
    for name, tensor in named:
        assert torch.equal(received[name], tensor), name
    sender.close()


def test_tensors_outside_the_buffer_are_staged_into_it():
    staging = torch.empty(4096, dtype=torch.uint8)
    named = [("x", torch.arange(12, dtype=torch.float32).view(3, 4)), ("y", torch.tensor([1, 2, 3], dtype=torch.bfloat16))]
    sender = MooncakeSender(staging, staging=True)
    received = pull(sender.stage(named, bucket_bytes=1024))
    assert torch.equal(received["x"], named[0][1]) and torch.equal(received["y"], named[1][1])
    with pytest.raises(TransferError, match="big: the weights exceed the 4096-byte staging buffer"):
        sender.stage([("big", torch.zeros(2048, dtype=torch.float32))], bucket_bytes=1024)
    sender.close()
