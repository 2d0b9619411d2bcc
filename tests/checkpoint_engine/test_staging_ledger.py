"""The weight sender's byte ledger, and packing each tensor as it is produced, on the CPU.

The producers stand in for a Megatron trainer: each tensor is a fresh copy (a gather), made
when asked for. The ledger must see what the sender really holds: a producer or sender that
keeps the tensors around must show up in its peak, so the bound below can fail.
"""
from __future__ import annotations

import pytest
import torch

from mooncake_peer import pull
from seesaw.checkpoint_engine.weights.cuda_ipc import plan_packing
from seesaw.checkpoint_engine.weights.mooncake import MooncakeSender, TransferError
from seesaw.checkpoint_engine.weights.staging import StagingError, StagingLedger, pack_as_produced

SHAPES = {"embed": [512, 64], "q": [64, 64], "k": [16, 64], "v": [16, 64], "mlp": [256, 64], "norm": [64]}
DECLARED = [(name, shape, "float32") for name, shape in SHAPES.items()]
WEIGHTS = sum(torch.Size(s).numel() * 4 for s in SHAPES.values())
LARGEST = max(torch.Size(s).numel() * 4 for s in SHAPES.values())
BUCKET = 40_000


def fresh(name: str) -> torch.Tensor:
    return torch.randn(SHAPES[name], generator=torch.Generator().manual_seed(sum(map(ord, name))))


def produced_one_at_a_time():
    for name in SHAPES:
        yield name, fresh(name)


def produced_all_first():  # what a sender that collected the state before packing holds
    tensors = [(name, fresh(name)) for name in SHAPES]
    yield from tensors


def stage_on_cpu(producer) -> tuple[StagingLedger, dict[str, torch.Tensor]]:
    ledger = StagingLedger()
    buffers = []

    def allocate(nbytes: int) -> torch.Tensor:
        ledger.allocated(nbytes)
        return torch.empty(nbytes, dtype=torch.uint8)

    received = {}
    for layout, buffer in pack_as_produced(producer, plan_packing(DECLARED, BUCKET), allocate, ledger):
        buffers.append(buffer)
        for name, shape, offset in zip(layout.names, layout.shapes, layout.offsets):
            received[name] = buffer[offset: offset + torch.Size(shape).numel() * 4].view(torch.float32).view(shape)
    return ledger, received


def test_packing_as_produced_holds_the_packed_weights_and_one_tensor_at_most():
    ledger, received = stage_on_cpu(produced_one_at_a_time())
    packed = sum(layout.nbytes for layout in plan_packing(DECLARED, BUCKET))
    assert ledger.peak <= packed + LARGEST, (ledger.peak, packed, LARGEST)
    assert ledger.now == packed  # the buckets stay for the receiver; every produced tensor is gone
    for name in SHAPES:
        assert torch.equal(received[name], fresh(name)), name


def test_the_ledger_sees_a_producer_that_keeps_its_tensors():
    ledger, _ = stage_on_cpu(produced_all_first())
    packed = sum(layout.nbytes for layout in plan_packing(DECLARED, BUCKET))
    assert ledger.peak > packed + LARGEST and ledger.peak >= WEIGHTS * 2 - LARGEST


def test_a_tensor_other_than_declared_is_named():
    def wrong():
        yield "embed", fresh("embed")
        yield "q", torch.zeros(64, 32)

    with pytest.raises(StagingError, match=r"produced q \[64, 32\] float32 where it declared q \[64, 64\] float32"):
        stage_on_cpu(wrong())
    with pytest.raises(StagingError, match="declared k but its tensors ended before it"):
        stage_on_cpu(iter([("embed", fresh("embed")), ("q", fresh("q"))]))


def test_the_mooncake_staging_sender_packs_as_produced_and_reports_its_ledger():
    sender = MooncakeSender(torch.empty(WEIGHTS, dtype=torch.uint8), staging=True)
    try:
        handle = sender.stage(produced_one_at_a_time(), bucket_bytes=BUCKET, declared=DECLARED)
        assert WEIGHTS < handle["staging"]["peak_bytes"] <= WEIGHTS + LARGEST, handle["staging"]
        assert handle["staging"]["staged_bytes"] == WEIGHTS  # its buffer, kept for the next sync
        received = pull(handle)
        assert all(torch.equal(received[name], fresh(name)) for name in SHAPES)
        held = sender.stage(produced_all_first(), bucket_bytes=BUCKET, declared=DECLARED)
        assert held["staging"]["peak_bytes"] >= 2 * WEIGHTS - LARGEST
    finally:
        sender.close()


def test_an_in_place_sender_stages_nothing_and_refuses_a_foreign_tensor():
    flat = torch.randn(1000)
    sender = MooncakeSender(flat)
    try:
        handle = sender.stage([("w", flat[:600].view(20, 30)), ("b", flat[600:])], bucket_bytes=BUCKET)
        assert handle["staging"] == {"staged_bytes": 0, "peak_bytes": 0}
        with pytest.raises(TransferError, match="extra: not inside the trainer's flat parameter buffer"):
            sender.stage([("w", flat[:600]), ("extra", torch.zeros(4))], bucket_bytes=BUCKET)
    finally:
        sender.close()
