"""The demo's RL job run by TRL's GRPOTrainer: the peer side of `make bench-peer`.

Runs in TRL's own virtual environment (bench/peer.py makes it), so it imports nothing of
Seesaw: bench/peer.py hands it the generated model, the task's training prompts with their
answers, and the job's knobs. One iteration is one generation batch (prompts x samples)
and the optimiser steps over it (prompts / miniBatchPrompts), as in Seesaw. It writes
per-iteration seconds (generation with reward scoring, training, weight sync when vLLM
generates) to --out/timings.json and the trained model to --out/model.

Usage (TRL's python): peer_trl.py --model DIR --prompts train.jsonl --out DIR --iterations N
    --prompts-per-iteration P --samples K --mini-batch-prompts M --micro-batch B
    --learning-rate LR --max-tokens T --temperature X [--vllm]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer


def exact_first_line(completions: list[str], answer: list[str], **_) -> list[float]:
    """Seesaw's exact_answer reward (seesaw/tasks/base.py): 1 when the response's first line is the answer."""
    return [1.0 if c.strip().split("\n")[0].strip() == a else 0.0 for c, a in zip(completions, answer)]


class TimedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that splits each iteration's wall time into generation (with reward
    scoring and the old policy's log-probs), weight sync (vLLM only) and training."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.iterations: list[dict[str, float]] = []
        if self.use_vllm:
            sync = self.vllm_generation.sync_weights

            def timed_sync() -> None:
                started = time.perf_counter()
                sync()
                self.iterations[-1]["sync_seconds"] += time.perf_counter() - started
            self.vllm_generation.sync_weights = timed_sync

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


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--model", "--prompts", "--out"):
        parser.add_argument(name, required=True)
    for name in ("--iterations", "--prompts-per-iteration", "--samples", "--mini-batch-prompts", "--micro-batch",
                 "--max-tokens", "--seed"):
        parser.add_argument(name, type=int, required=True)
    parser.add_argument("--learning-rate", type=float, required=True)
    parser.add_argument("--temperature", type=float, required=True)
    parser.add_argument("--vllm", action="store_true", help="generate with vLLM in colocate mode")
    args = parser.parse_args()
    out = Path(args.out)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines()]
    # Seesaw's encoding (seesaw/model/prompt.py): BOS, then the prompt's characters; TRL
    # tokenizes the text as it is, so the BOS goes into the text.
    for row in rows[:3]:
        ids = tokenizer(tokenizer.bos_token + row["prompt"], add_special_tokens=True)["input_ids"]
        if ids != row["prompt_ids"]:
            raise SystemExit(f"TRL would feed {ids}, Seesaw feeds {row['prompt_ids']} for {row['prompt']!r}")
    dataset = Dataset.from_list([{"prompt": tokenizer.bos_token + r["prompt"], "answer": r["answer"]} for r in rows])

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
        max_completion_length=args.max_tokens, temperature=args.temperature, top_p=1.0,
        logging_steps=samples // per_step, save_strategy="no", disable_tqdm=True,
        use_vllm=args.vllm, vllm_mode="colocate",
    )
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    trainer = TimedGRPOTrainer(model=model, reward_funcs=exact_first_line, args=config, train_dataset=dataset,
                               processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - started
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    trainer.save_model(str(out / "model"))
    tokenizer.save_pretrained(str(out / "model"))
    # an iteration's wall: from its generation to the next one's (the trainer loop's own time included)
    ends = [this["started"] for this in trainer.iterations[1:]] + [started + wall]
    for this, end in zip(trainer.iterations, ends):
        this["iteration_seconds"] = end - this.pop("started")
    (out / "timings.json").write_text(json.dumps({
        "generation": "vLLM colocate" if args.vllm else "transformers generate",
        "wall_seconds": wall, "iterations": trainer.iterations, "mean_reward": rewards,
        "loss_type": config.loss_type, "beta": config.beta,
    }, indent=1))


if __name__ == "__main__":
    main()
