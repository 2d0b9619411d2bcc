"""The Mooncake weight channel over RDMA: for trainer and rollout engines on different GPUs or nodes.

The transfer itself is the TCP channel's (checkpoint_engine/channels/mooncake.py) with the
RDMA protocol and the receive buffer on the GPU, so the NIC writes straight into device
memory (GPUDirect RDMA) and the host is not on the data path.
"""
from __future__ import annotations

from seesaw.checkpoint_engine.channels.mooncake import VLLM_ENGINE, pod_leader_sender
from seesaw.interfaces import WeightChannel, register


NIC = ""  # e.g. "mlx5_0"; empty lets Mooncake pick from its topology scan

register("weight_channel", "mooncake-rdma")(WeightChannel("mooncake-rdma", VLLM_ENGINE, pod_leader_sender("rdma", NIC)))
