"""Memory returned across phase cycles on one GPU: the Megatron trainer's offload/onload.

Each cycle trains one step, offloads (what the rollout phase would get) and onloads. After a
warm-up, the GPU memory still held after each offload (allocated by PyTorch, reserved by its
caching allocator, and used on the device as the driver sees it) must not grow: peers leak
here (memory that grows after every sleep/wake). Prints growth in all and per cycle.

Usage: python bench/gpu_cycles.py [--cycles 50] [--warmup 3] [--json out.json]
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


def device_used_bytes() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


def trainer_spec() -> dict:
    """The trainer's spec, defaulted as the CRD does: bf16, AdamW on the distributed optimizer."""
    return plain(job_spec({"model": {"dtype": "bfloat16"}, "rl": {"seed": 0},
                           "trainer": {"microBatchSize": 8, "optimizer": {"name": "adamw", "learningRate": 1e-5}}}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=1024, num_attention_heads=16, num_key_value_heads=4, head_dim=64,
                      intermediate_size=4096, num_hidden_layers=8, vocab_size=32000, max_position_embeddings=512,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    spec = trainer_spec()
    rows = []
    with tempfile.TemporaryDirectory() as model_dir:
        LlamaForCausalLM(cfg).save_pretrained(model_dir)
        trainer = backend("trainer", "megatron")(model_dir, spec, device="cuda")
        for cycle in range(args.warmup + args.cycles):
            trainer.train_step(random_samples(cycle, cfg.vocab_size, 16, (8, 64)), tau=0.1)
            down = trainer.offload()
            torch.cuda.synchronize()
            row = {"cycle": cycle, "allocated": torch.cuda.memory_allocated(), "reserved": torch.cuda.memory_reserved(),
                   "device_used": device_used_bytes(), "offloaded_bytes": down.bytes}
            trainer.onload()
            row["onloaded_allocated"] = torch.cuda.memory_allocated()
            rows.append(row)
            if cycle % 10 == 0 or cycle == args.warmup + args.cycles - 1:
                print(f"cycle {cycle:3d}: after offload allocated {row['allocated'] / 2**20:8.1f} MiB reserved "
                      f"{row['reserved'] / 2**20:8.1f} MiB device {row['device_used'] / 2**20:8.1f} MiB; "
                      f"onloaded {row['onloaded_allocated'] / 2**20:8.1f} MiB", flush=True)
    base, last = rows[args.warmup], rows[-1]
    result = {"gpu": torch.cuda.get_device_name(0), "date": datetime.date.today().isoformat(), "cycles": args.cycles}
    for key in ("allocated", "reserved", "device_used", "onloaded_allocated"):
        growth = last[key] - base[key]
        result[key] = {"after_warmup": base[key], "last": last[key], "growth_bytes": growth,
                       "growth_per_cycle_bytes": growth / args.cycles}
        print(f"{key}: {base[key] / 2**20:.1f} -> {last[key] / 2**20:.1f} MiB over {args.cycles} cycles "
              f"({growth / 2**20:+.2f} MiB, {growth / args.cycles / 2**10:+.1f} KiB/cycle)")
    result["rows"] = rows
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
