"""The Mooncake weight channel over RDMA: for trainer and rollout engines on different GPUs or nodes.

The transfer itself is the TCP channel's (checkpoint_engine/channels/mooncake.py) with the
RDMA protocol and the receive buffer on the GPU, so the NIC writes straight into device
memory (GPUDirect RDMA) and the host is not on the data path.
"""
from __future__ import annotations

from typing import Any

from seesaw.interfaces import register


@register("weight_channel", "mooncake-rdma")
def mooncake_rdma_channel(role: str, **options: Any):
    """role "sender": options flat_buffer, hostname, nic; role "receiver": capacity_bytes, hostname, nic, gpu."""
    from seesaw.checkpoint_engine.channels.mooncake import MooncakeReceiver, MooncakeSender

    nic = options.get("nic", "")  # e.g. "mlx5_0"; empty lets Mooncake pick from its topology scan
    if role == "sender":
        return MooncakeSender(options["flat_buffer"], options.get("hostname", "127.0.0.1"), "rdma", nic)
    if role == "receiver":
        return MooncakeReceiver(int(options["capacity_bytes"]), options.get("hostname", "127.0.0.1"), "rdma", nic,
                                buffer_device=options.get("buffer_device", "cuda"))
    raise ValueError(f"role: expected 'sender' or 'receiver', got {role!r}")
