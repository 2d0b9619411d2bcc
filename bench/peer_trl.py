"""An RL job run by TRL's GRPOTrainer: the peer side of `make bench-peer`.

Runs in TRL's own virtual environment (`make trl-venv` builds it), so it imports nothing of
Seesaw: bench/peer.py hands it the job's model, the task's training prompts (the text Seesaw's
prompt ids are tokenized from, chat template and all), the job's knobs, and a command that
serves the job's reward in Seesaw's environment (bench/peer_reward.py: Seesaw's own scoring,
so both sides' rewards are the same; TRL's environment lacks math-verify). One iteration is
one generation batch (prompts x samples) and the optimiser steps over it (prompts /
miniBatchPrompts), as in Seesaw. It writes per-iteration seconds (generation with reward
scoring, training, weight sync when vLLM generates) to --out/timings.json and the trained
model to --out/model. A run that fails writes its cause, one line, to --out/failure.txt.

TRL trains and generates in the job's dtype, as Seesaw does: by default it would autocast its
training to bfloat16, and vLLM's CPU build would turn a float32 model into bfloat16. With
vLLM, TRL's weight sync goes through vLLM's layerwise reload (sync_through_layerwise_reload):
after loading, vLLM's CPU build repacks linear layers for its GEMM kernels (oneDNN, AMX)
where the CPU has them and drops their weight loaders, so TRL's own sync (`load_weights` on
the loaded model) fails there with "'Parameter' object has no attribute 'weight_loader'".

Usage (TRL's python): peer_trl.py --model DIR --prompts train.jsonl --reward-command JSON --out DIR
    --iterations N --prompts-per-iteration P --samples K --mini-batch-prompts M --micro-batch B
    --learning-rate LR --max-tokens T --temperature X --max-model-len L [--vllm --dtype float32 --kv-cache-gib G]
"""
from __future__ import annotations

import argparse
import functools
import json
import subprocess
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

PROBE_PROMPTS = 16


class SeesawReward:
    """A TRL reward function that asks bench/peer_reward.py, in Seesaw's environment, for the
    job's reward of each completion's token ids (its problem named by the dataset's index)."""

    __name__ = "seesaw_reward"  # TRL logs a reward function under its name

    def __init__(self, command: list[str]) -> None:
        self.server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self._reply() != "ready":
            raise SystemExit(f"the reward server {command} did not start")

    def _reply(self):
        line = self.server.stdout.readline()
        if not line:
            raise SystemExit(f"the reward server stopped (exit status {self.server.wait()}); its output is in the log")
        return json.loads(line)

    def __call__(self, completion_ids: list[list[int]], index: list[int], **_) -> list[float]:
        self.server.stdin.write(json.dumps([[i, list(ids)] for i, ids in zip(index, completion_ids)]) + "\n")
        self.server.stdin.flush()
        return self._reply()

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait()


def engine_as_seesaws(dtype: str, kv_cache_gib: float) -> None:
    """Make TRL's colocated vLLM engine run in `dtype` with the job's KV cache: TRL passes no
    dtype, and vLLM's CPU build then runs a float32 checkpoint in bfloat16, unlike Seesaw's
    engine (spec.model.dtype); and without a KV cache size it reserves a share of the host's memory."""
    import trl.generation.vllm_generation as generation

    kv_cache_bytes = int(kv_cache_gib * 2 ** 30) or None
    generation.LLM = functools.partial(generation.LLM, dtype=dtype, kv_cache_memory_bytes=kv_cache_bytes)


def tied_heads(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The LM heads whose weight is an input embedding's (Seesaw's containers/vllm/layerwise_reload.py)."""
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding

    embeddings = {module.weight.data_ptr() for module in model.modules()
                  if isinstance(module, VocabParallelEmbedding) and not isinstance(module, ParallelLMHead)}
    return [module for module in model.modules()
            if isinstance(module, ParallelLMHead) and module.weight.data_ptr() in embeddings]


@torch.no_grad()
def sync_through_layerwise_reload(generation) -> None:
    """TRL's colocate-mode sync (VLLMGeneration.sync_weights: every parameter under the name
    vLLM expects, then a prefix-cache reset), with the loads bracketed by vLLM's layerwise
    reload, as vLLM's own reload_weights and Seesaw's engines do. The reload puts each layer
    back in checkpoint form, loads it and re-runs its post-load processing (the CPU build's
    repack), so it works whether or not this CPU's kernels repacked the layers. A tied LM
    head receives no weight of its own, so it is processed again over the new embedding.
    TRL's server mode, sleep mode and sharded (FSDP, DeepSpeed) gathers do not apply to one
    CPU process with the engine colocated."""
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload

    runner = generation.llm.llm_engine.model_executor.driver_worker.model_runner
    model = runner.model
    initialize_layerwise_reload(model)
    model.load_weights(generation._iter_named_params())
    finalize_layerwise_reload(model, runner.model_config)
    for head in tied_heads(model):
        head.quant_method.process_weights_after_loading(head)
    generation.llm.reset_prefix_cache()


@torch.no_grad()
def probe_logp_gap(trainer: GRPOTrainer, prompts: list[list[int]]) -> float:
    """After one more sync, the largest |vLLM - trainer| log-prob of each prompt's likeliest
    next tokens: about 1e-6 in float32 when the engine holds the trainer's weights."""
    from vllm import SamplingParams

    generation = trainer.vllm_generation
    sync_through_layerwise_reload(generation)
    outputs = generation.llm.generate([{"prompt_token_ids": ids} for ids in prompts],
                                      SamplingParams(max_tokens=1, temperature=1.0, logprobs=8), use_tqdm=False)
    model = trainer.model.eval()
    gap = 0.0
    for ids, output in zip(prompts, outputs):
        reference = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
        for token, logprob in output.outputs[0].logprobs[0].items():
            gap = max(gap, abs(logprob.logprob - reference[token].item()))
    return gap


class TimedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that splits each iteration's wall time into generation (with reward
    scoring and the old policy's log-probs), weight sync (vLLM only) and training."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.iterations: list[dict[str, float]] = []
        if self.use_vllm:
            if self.vllm_generation.mode != "colocate" or self.vllm_generation.enable_sleep_mode:
                raise SystemExit("the TRL side syncs weights in vLLM's colocate mode without sleep mode only")
            self.vllm_generation.sync_weights = self.timed_sync

    def timed_sync(self) -> None:
        started = time.perf_counter()
        sync_through_layerwise_reload(self.vllm_generation)
        self.iterations[-1]["sync_seconds"] += time.perf_counter() - started

    def _generate_and_score_completions(self, inputs):
        self.iterations.append({"rollout_seconds": 0.0, "sync_seconds": 0.0, "train_seconds": 0.0,
                                "started": time.perf_counter()})
        started = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        this = self.iterations[-1]
        this["rollout_seconds"] = time.perf_counter() - started - this["sync_seconds"]
        return out

    def training_step(self, model, inputs, num_items_in_batch):
        started = time.perf_counter()
        generations = len(self.iterations)
        output = super().training_step(model, inputs, num_items_in_batch)
        spent = time.perf_counter() - started
        if len(self.iterations) > generations:  # this step generated: only the rest is training
            this = self.iterations[-1]
            spent -= this["rollout_seconds"] + this["sync_seconds"]
        self.iterations[-1]["train_seconds"] += spent
        return output


def train(args: argparse.Namespace) -> None:
    out = Path(args.out)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines()]
    # TRL tokenizes a text prompt as it is (its tokenizer's defaults): the text must give Seesaw's ids
    for row in rows:
        ids = tokenizer(row["text"])["input_ids"]
        if ids != row["prompt_ids"]:
            raise SystemExit(f"TRL would feed {ids}, Seesaw feeds {row['prompt_ids']} for {row['text']!r}")
    dataset = Dataset.from_list([{"prompt": r["text"], "index": r["index"]} for r in rows])

    samples = args.prompts_per_iteration * args.samples
    per_step = args.mini_batch_prompts * args.samples
    accumulation = per_step // args.micro_batch
    config = GRPOConfig(
        output_dir=str(out / "trainer"), use_cpu=True, seed=args.seed, report_to="none",
        per_device_train_batch_size=args.micro_batch, gradient_accumulation_steps=accumulation,
        generation_batch_size=samples, num_generations=args.samples,
        max_steps=args.iterations * (samples // per_step), learning_rate=args.learning_rate,
        lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        gradient_checkpointing=False,  # TRL turns it on by default; Seesaw keeps activations too
        bf16=args.dtype == "bfloat16",  # TRL autocasts to bfloat16 by default, even on a CPU
        max_completion_length=args.max_tokens, temperature=args.temperature, top_p=1.0,
        logging_steps=samples // per_step, save_strategy="no", disable_tqdm=True,
        use_vllm=args.vllm, vllm_mode="colocate", vllm_max_model_length=args.max_model_len,
    )
    if args.vllm:
        engine_as_seesaws(args.dtype, args.kv_cache_gib)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    reward = SeesawReward(json.loads(args.reward_command))
    trainer = TimedGRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                               processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    reward.close()
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    probe_gap = probe_logp_gap(trainer, [r["prompt_ids"] for r in rows[:PROBE_PROMPTS]]) if args.vllm else None
    trainer.save_model(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))
    # an iteration's wall: from its generation to the next one's (the trainer loop's own time included)
    ends = [this["started"] for this in trainer.iterations[1:]] + [started + wall]
    for this, end in zip(trainer.iterations, ends):
        this["iteration_seconds"] = end - this.pop("started")
    (out / "timings.json").write_text(json.dumps({
        "generation": f"vLLM colocate ({args.dtype})" if args.vllm else "transformers generate",
        "wall_seconds": wall, "iterations": trainer.iterations, "mean_reward": rewards,
        "probe_logp_gap": probe_gap, "probe_prompts": PROBE_PROMPTS,
        "loss_type": config.loss_type, "beta": config.beta,
    }, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--model", "--prompts", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--reward-command", required=True,
                        help="a JSON list: the command that serves the job's reward (bench/peer_reward.py)")
    for name in ("--iterations", "--prompts-per-iteration", "--samples", "--mini-batch-prompts", "--micro-batch",
                 "--max-tokens", "--max-model-len", "--seed"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--temperature", type=float, required=True)
    parser.add_argument("--vllm", action="store_true", help="generate with vLLM in colocate mode")
    parser.add_argument("--dtype", default="float32", help="the job's spec.model.dtype: training and vLLM's")
    parser.add_argument("--kv-cache-gib", type=float, default=0.0,
                        help="the job's spec.rollout.cpuKVCacheGiB (0: vLLM's own sizing)")
    args = parser.parse_args()
    failure = Path(args.out) / "failure.txt"
    failure.unlink(missing_ok=True)
    try:
        train(args)
    except BaseException as error:
        # bench/peer.py reports this line; the traceback stays in the log
        Path(args.out).mkdir(parents=True, exist_ok=True)
        failure.write_text(str(error) if isinstance(error, SystemExit) else f"{type(error).__name__}: {error}")
        raise


if __name__ == "__main__":
    main()
