"""Each trainer rank of a pod stages the weights its channel asks of it, and the pod leader
answers the checkpoint engine with the pod's handle.

Producing the full Hugging Face tensors is collective (TP/PP/EP gathers), so every rank makes
the call. The channel decides which ranks keep what they produce: CUDA IPC stages one copy on
each rollout GPU, by the trainer rank that runs on that GPU; Mooncake stages once per pod, on
the leader. The others let each tensor go as it comes.
"""
from __future__ import annotations

from typing import Any

from seesaw.checkpoint_engine.weights.checksum import StreamChecksum
from seesaw.interfaces import WeightChannel, WeightSender
from seesaw.trainer import distributed


class WeightStaging:
    """A trainer backend plus this rank's sender (None: this rank stages nothing)."""

    def __init__(self, trainer: Any, sender: WeightSender | None, channel: WeightChannel) -> None:
        self.trainer = trainer
        self.sender = sender
        self.channel = channel

    def __getattr__(self, name: str) -> Any:  # the backend's own calls pass through
        return getattr(self.trainer, name)

    def stage_weights(self, bucket_bytes: int) -> dict[str, Any] | None:
        """Every rank: produce and (where asked) stage; the leader returns the pod's handle,
        carrying the checksum of what was staged, which each engine must report back."""
        staged = StreamChecksum()
        tensors = staged.over(self.trainer.hf_state())
        if self.sender is None:
            for _ in tensors:
                pass
            handle = None
        else:
            handle = self.sender.stage(tensors, bucket_bytes, declared=self.trainer.hf_metadata())
        handles = distributed.gather_on_pod_leader(handle)
        if distributed.local_rank() != 0:
            return None
        return dict(self.channel.merge([h for h in handles if h is not None]), weight_checksum=staged.hex())

    def release_weights(self) -> None:
        """Every rank: free its staging copies once the engines have loaded them."""
        if self.sender is not None:
            self.sender.release()
