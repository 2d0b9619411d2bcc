"""Megatron-core on the GPU against the CPU (PyTorch) backend: same weights, same batch, same loss?

Builds a tiny Llama, gives both trainers the same samples for a few steps (float32, SGD so
that both optimisers do the same arithmetic), and reports the largest differences in
per-token log-probs and in the loss; then times offload/onload and a distributed
checkpoint round trip. One GPU, one process.

Usage: python bench/gpu_megatron_parity.py [--steps 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import tempfile

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from seesaw.interfaces import backend
from seesaw.spec import job_spec
from seesaw.spec_reads import plain
from synthetic import random_samples
import seesaw.trainer.megatron_backend  # noqa: F401  (registers "megatron")
import seesaw.trainer.torch_backend  # noqa: F401  (registers "torch")


def trainer_spec() -> dict:
    """The trainers' spec, defaulted as the CRD does: SGD at a rate that moves the tiny model."""
    return plain(job_spec({"model": {"dtype": "float32"}, "rl": {"seed": 0},
                           "trainer": {"microBatchSize": 8,
                                       "optimizer": {"name": "sgd", "learningRate": 0.05, "gradClip": 0.0}}}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=32, intermediate_size=256,
                      num_hidden_layers=2, vocab_size=192, max_position_embeddings=128, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    spec = trainer_spec()
    with tempfile.TemporaryDirectory() as model_dir, tempfile.TemporaryDirectory() as ckpt:
        LlamaForCausalLM(cfg).save_pretrained(model_dir)
        cpu = backend("trainer", "torch")(model_dir, spec, device="cpu")
        gpu = backend("trainer", "megatron")(model_dir, spec, device="cuda")
        probe = random_samples(99, cfg.vocab_size, 6, (2, 12))
        lp_cpu = cpu.sequence_logprobs([s.prompt_ids for s in probe], [s.response_ids for s in probe])
        lp_gpu = gpu.sequence_logprobs([s.prompt_ids for s in probe], [s.response_ids for s in probe])
        lp_diff = max(abs(a - b) for ra, rb in zip(lp_cpu, lp_gpu) for a, b in zip(ra, rb))
        print(f"max |logprob cpu - megatron| before training: {lp_diff:.2e}")
        steps = []
        for step in range(args.steps):
            samples = random_samples(step, cfg.vocab_size, 6, (2, 12))
            a, b = cpu.train_step(samples, tau=0.1), gpu.train_step(samples, tau=0.1)
            steps.append({"step": step, "loss_cpu": a.loss, "loss_megatron": b.loss, "abs_diff": abs(a.loss - b.loss)})
            print(f"step {step}: loss cpu {a.loss:.8f} megatron {b.loss:.8f} |diff| {abs(a.loss - b.loss):.2e}")
        names_gpu = dict(gpu.hf_state())
        weight_diff = max(float((names_gpu[n].float().cpu() - t.float()).abs().max()) for n, t in cpu.hf_state())
        print(f"max |weight cpu - megatron| after {args.steps} steps: {weight_diff:.2e}")
        down, up = gpu.offload(), gpu.onload()
        print(f"offload {down.bytes / 2**20:.1f} MiB in {down.seconds:.4f}s, onload {up.bytes / 2**20:.1f} MiB in {up.seconds:.4f}s; "
              f"by group: {gpu.last_memory}")
        gpu.save_checkpoint(ckpt + "/iter", 7)
        assert gpu.load_checkpoint(ckpt + "/iter") == 7
        print("distributed checkpoint save/load: ok")
    result = {"gpu": torch.cuda.get_device_name(0), "date": datetime.date.today().isoformat(),
              "logprob_max_abs_diff": lp_diff, "steps": steps, "weight_max_abs_diff": weight_diff,
              "offload": {"bytes": down.bytes, "seconds": down.seconds}, "onload": {"bytes": up.bytes, "seconds": up.seconds}}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
