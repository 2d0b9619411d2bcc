"""The CPU rollout backend: a live vLLM engine (the CPU build) that takes new weights in place.

vLLM starts once with dummy weights (Kimi k1.5 does the same): the first weight sync from
the trainer gives it the policy, and every later sync replaces it through vLLM's RL API
with Seesaw's Mooncake weight-transfer engine.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from seesaw.interfaces import MemoryReport, Sample, register
from seesaw.checkpoint_engine.weights import VLLM_ENGINE
from seesaw.checkpoint_engine.weights.checksum import checksum_hex
from seesaw.rollout.vllm_plugin import ASLEEP_SPIN_SECONDS, AWAKE_SPIN_SECONDS

WORKER_EXTENSION = "seesaw.rollout.worker_extension.SeesawWorkerExtension"
GiB = 1024 ** 3


def sampling_params(samples_per_prompt: int, temperature: float, max_tokens: int, top_p: float = 1.0, top_k: int = 0,
                    stop: list[str] | None = None):
    """The SamplingParams of a rollout request (one place, so a bench's bare generate matches the engine's)."""
    from vllm import SamplingParams

    # No per-request seed: vLLM derives the k samples of a seeded request from one
    # generator, which makes them repeat; the engine's own seed keeps runs reproducible.
    # top_k 0: no cut (vLLM's own "off"); a stop string ends a response as the EOS does ("stop")
    return SamplingParams(n=samples_per_prompt, temperature=temperature, top_p=top_p, top_k=top_k,
                          stop=stop or None, max_tokens=max_tokens, logprobs=0)


class VLLMCPURollout:
    """RolloutEngine protocol on vLLM's CPU build."""

    def __init__(self, model_dir: str, spec: dict[str, Any], seed: int = 0, load_format: str = "dummy") -> None:
        """load_format "dummy": the policy arrives with the first sync; "auto" loads the model
        directory's weights (what a bench measures the bare engine with)."""
        from vllm import LLM

        rollout = spec["rollout"]
        self.llm = LLM(
            model=str(model_dir),
            dtype=spec["model"]["dtype"],
            max_model_len=rollout["maxModelLen"],
            seed=seed,
            load_format=load_format,
            enforce_eager=True,
            # On the CPU build this is the fraction of host memory vLLM reserves, unless the
            # job sizes the KV cache itself.
            gpu_memory_utilization=min(rollout["gpuMemoryUtilization"], 0.2),
            kv_cache_memory_bytes=int(rollout["cpuKVCacheGiB"] * GiB) or None,
            max_num_seqs=256,
            # tensor parallelism over gloo, one worker process per rank (vLLM's CPU platform)
            tensor_parallel_size=rollout["tensorParallel"],
            distributed_executor_backend="mp" if rollout["tensorParallel"] > 1 else None,
            weight_transfer_config={"backend": VLLM_ENGINE},
            worker_extension_cls=WORKER_EXTENSION,
        )
        self.weight_version = 0

    # --- generation --------------------------------------------------------------------
    def generate(self, prompt_ids: list[list[int]], samples_per_prompt: int, temperature: float,
                 max_tokens: int, top_p: float = 1.0, top_k: int = 0, stop: list[str] | None = None) -> list[Sample]:
        from vllm.inputs import TokensPrompt

        params = sampling_params(samples_per_prompt, temperature, max_tokens, top_p, top_k, stop)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False)
        samples = []
        for index, (prompt, output) in enumerate(zip(prompt_ids, outputs)):
            for completion in output.outputs:
                tokens = list(completion.token_ids)
                logprobs = [step[token].logprob for step, token in zip(completion.logprobs, tokens)]
                samples.append(Sample(index, list(prompt), tokens, logprobs, finished=completion.finish_reason == "stop"))
        return samples

    def sequence_logprobs(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[list[float]]:
        """log-probs vLLM assigns to given responses (prompt_logprobs over prompt+response)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        sequences = [p + r for p, r in zip(prompt_ids, response_ids)]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=s) for s in sequences], params, use_tqdm=False)
        result = []
        for prompt, sequence, output in zip(prompt_ids, sequences, outputs):
            steps = output.prompt_logprobs
            result.append([steps[i][sequence[i]].logprob for i in range(len(prompt), len(sequence))])
        return result

    # --- memory ------------------------------------------------------------------------
    def sleep(self) -> MemoryReport:
        # vLLM's CPU worker has no sleep mode (it would only log a warning): nothing to free.
        # What a sleeping engine must stop is its worker spinning for the next step on the
        # core the trainer is about to use.
        started = time.perf_counter()
        self._set_idle_spin(ASLEEP_SPIN_SECONDS)
        return MemoryReport(bytes=0, seconds=time.perf_counter() - started)

    def wake_up(self, tags: Iterable[str] = ("weights", "kv_cache")) -> MemoryReport:
        started = time.perf_counter()
        if "weights" in tags:  # the first of the two wake-up calls of a sync
            self._set_idle_spin(AWAKE_SPIN_SECONDS)
        return MemoryReport(bytes=0, seconds=time.perf_counter() - started)

    def _set_idle_spin(self, seconds: float) -> None:
        """In the worker (waiting for steps) and in the engine core (waiting for the worker)."""
        self.llm.collective_rpc("seesaw_set_idle_spin", args=(seconds,))
        self.llm.llm_engine.engine_core.call_utility("seesaw_set_idle_spin", seconds)

    # --- weights -----------------------------------------------------------------------
    def init_weight_channel(self, receiver_init: dict[str, Any]) -> None:
        self.llm.init_weight_transfer_engine({"init_info": receiver_init})

    def update_weights(self, handle: dict[str, Any]) -> dict[str, float]:
        """Pull the trainer's weights through the channel into the running engine."""
        started = time.perf_counter()
        self.llm.start_weight_update()
        self.llm.update_weights({"update_info": {"handle": handle}})
        self.weight_version += 1
        self.llm.finish_weight_update(weight_version=str(self.weight_version))
        # Cached prefixes hold keys and values computed with the old weights: reused, they
        # would put the old policy into the new one's samples (a prompt drawn again, a
        # partial rollout continued).
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM did not reset its prefix cache after the weight update")
        return {"bytes": handle["total_bytes"], "seconds": time.perf_counter() - started,
                "buckets": handle["bucket_count"], "weight_version": self.weight_version,
                "weight_checksum": self.weight_checksum()}

    def weight_checksum(self) -> str:
        """The checksum of the weights the engine's workers loaded at the last update ("" before
        it); every tensor-parallel worker loads every tensor, so all must agree."""
        sums = self.llm.collective_rpc("seesaw_weight_checksum")
        if None in sums:
            return ""
        if len(set(sums)) > 1:
            raise RuntimeError(f"the engine's tensor-parallel workers loaded different weights: "
                               f"checksums {[checksum_hex(v) for v in sums]}")
        return checksum_hex(sums[0])


@register("rollout", "vllm-cpu")
def vllm_cpu_rollout(model_dir: str, spec: dict[str, Any], seed: int = 0) -> VLLMCPURollout:
    return VLLMCPURollout(model_dir, spec, seed)
