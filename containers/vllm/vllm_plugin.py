"""vLLM general plugin: registers Seesaw's weight-transfer engines in every vLLM process."""
from __future__ import annotations

from seesaw.checkpoint_engine.channels.mooncake import VLLM_ENGINE as MOONCAKE_BACKEND


def register() -> None:
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

    if MOONCAKE_BACKEND not in WeightTransferEngineFactory._registry:
        WeightTransferEngineFactory.register_engine(
            MOONCAKE_BACKEND, "seesaw.rollout.mooncake_engine", "MooncakeWeightTransferEngine"
        )
