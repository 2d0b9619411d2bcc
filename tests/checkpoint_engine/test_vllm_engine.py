"""Seesaw's one vLLM weight-transfer engine opens the receiver of the channel its init names,
and holds one at a time: a replica re-joining after a gang restart gets a new receiver, and
the old one is closed (not leaked, as a Mooncake receive buffer would be)."""
import pytest
import torch

import stub_channel
from seesaw.checkpoint_engine import weights
from seesaw.checkpoint_engine.weights import vllm_engine


@pytest.fixture(autouse=True)
def stub_registered(monkeypatch):
    monkeypatch.setitem(weights.CHANNELS, stub_channel.NAME, weights.ChannelEntry("stub_channel", "CHANNEL", weights.ChannelRules()))


def engine():
    made = vllm_engine.SeesawWeightTransferEngine.__new__(vllm_engine.SeesawWeightTransferEngine)
    made.device = torch.device("cpu")
    return made


def test_each_init_opens_the_named_channels_receiver_and_closes_the_one_before():
    transfer = engine()
    init = transfer.parse_init_info({"channel": stub_channel.NAME, "capacity_bytes": 64})
    transfer.init_transfer_engine(init)
    first = transfer.receiver
    assert isinstance(first, stub_channel.StubReceiver) and first.capacity == 64 and first.opened
    transfer.init_transfer_engine(transfer.parse_init_info({"channel": stub_channel.NAME, "capacity_bytes": 128}))
    assert not first.opened, "the re-join's init closes the receiver it replaces"
    assert transfer.receiver is not first and transfer.receiver.capacity == 128
    transfer.shutdown()
    assert transfer.receiver is None


def test_an_init_naming_no_known_channel_is_refused_by_name():
    with pytest.raises(weights.UnknownChannel, match=r"spec.weightSync.channel: expected one of .*got 'carrier-pigeon'"):
        engine().init_transfer_engine(engine().parse_init_info({"channel": "carrier-pigeon"}))
