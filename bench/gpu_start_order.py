"""The start order and the sync of docs/ARCHITECTURE.md ("Starting on a shared GPU") on one GPU,
with a stand-in for vLLM's memory and a 0.5B-shaped Megatron trainer.

vLLM's CUDA build is too large to bring along, so a second process plays its memory: it
refuses to start unless `--utilization` of the device is free (as vLLM does), then holds that
much (weights + KV cache); sleeping at level 2 frees it all; waking "weights" takes the
weights' bytes back and opens the trainer's CUDA IPC buckets into them; waking "kv_cache"
takes the rest. The trainer is the real Megatron backend on a Qwen2.5-0.5B-shaped Llama (bf16,
tied embeddings, Adam), built only once the stand-in sleeps, trained one step, then synced
through the real CudaIpcSender with the shapes it declares. Prints the device memory at each
step, the sender's staging peak against the weights, and the step time.

Expected run time on one H200: about 1 minute (most of it writing and loading the 1 GB model).
Usage: python bench/gpu_start_order.py [--utilization 0.8] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time

import torch
import torch.multiprocessing as mp
from transformers import LlamaConfig, LlamaForCausalLM

from seesaw.checkpoint_engine.weights.cuda_ipc import CudaIpcReceiver, CudaIpcSender
from seesaw.interfaces import backend
from seesaw.spec import job_spec
from seesaw.spec_reads import plain
from synthetic import random_samples
import seesaw.trainer.megatron_backend  # noqa: F401  (registers "megatron")

GiB = 2 ** 30
SHAPE_0_5B = dict(hidden_size=896, num_attention_heads=14, num_key_value_heads=2, head_dim=64, intermediate_size=4864,
                  num_hidden_layers=24, vocab_size=151936, max_position_embeddings=4096, tie_word_embeddings=True,
                  pad_token_id=0, bos_token_id=1, eos_token_id=2)


def trainer_spec() -> dict:
    """The trainer's spec, defaulted as the CRD does: bf16, Adam, micro-batches of 4."""
    return plain(job_spec({"model": {"dtype": "bfloat16"}, "rl": {"seed": 0}, "trainer": {"microBatchSize": 4}}))


def used_bytes() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


def stand_in_vllm(conn, utilization: float, weight_bytes: int) -> None:  # a spawned process
    torch.cuda.set_device(0)
    free, total = torch.cuda.mem_get_info()
    wanted = int(utilization * total)
    if free < wanted:  # vLLM's own start check
        conn.send(("refused", f"{free / GiB:.1f} GiB free, {wanted / GiB:.1f} GiB wanted"))
        return
    held = {"weights": torch.empty(weight_bytes, dtype=torch.uint8, device="cuda"),
            "kv_cache": torch.empty(wanted - weight_bytes, dtype=torch.uint8, device="cuda")}
    conn.send(("started", used_bytes()))
    receiver = CudaIpcReceiver(0)
    while True:
        command, argument = conn.recv()
        if command == "sleep":
            held.clear()
            torch.cuda.empty_cache()
            conn.send(("asleep", used_bytes()))
        elif command == "wake_weights":
            held["weights"] = torch.empty(weight_bytes, dtype=torch.uint8, device="cuda")
            conn.send(("awake", used_bytes()))
        elif command == "load":
            offset = 0
            for _, tensor in receiver.receive(argument):
                size = tensor.numel() * tensor.element_size()
                held["weights"][offset: offset + size].copy_(tensor.contiguous().view(-1).view(torch.uint8))
                offset += size
            torch.cuda.synchronize()
            receiver.close()
            conn.send(("loaded", offset))
        elif command == "wake_kv_cache":
            held["kv_cache"] = torch.empty(wanted - weight_bytes, dtype=torch.uint8, device="cuda")
            conn.send(("awake", used_bytes()))
        elif command == "exit":
            return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--utilization", type=float, default=0.8)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = LlamaConfig(**SHAPE_0_5B)
    spec = trainer_spec()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as model_dir:
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
        model.save_pretrained(model_dir)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())  # the tied head once
        del model
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe()
        vllm = ctx.Process(target=stand_in_vllm, args=(theirs, args.utilization, weight_bytes))
        vllm.start()

        def ask(command: str, argument=None):
            ours.send((command, argument))
            return ours.recv()

        def row(step: str, **extra) -> None:
            rows.append(dict(step=step, device_used_gib=used_bytes() / GiB, **extra))
            print(f"{step:<44} device used {rows[-1]['device_used_gib']:7.2f} GiB" +
                  "".join(f"  {k} {v:.3f}" if isinstance(v, float) else f"  {k} {v}" for k, v in extra.items()))

        state, value = ours.recv()
        if state == "refused":
            raise SystemExit(f"the stand-in for vLLM refused to start: {value}")
        row("engines start (weights + KV cache)")
        ask("sleep")
        row("rollout /sleep (level 2)")
        built = time.perf_counter()
        trainer = backend("trainer", "megatron")(model_dir, spec, device="cuda")
        row("trainer /start", build_seconds=time.perf_counter() - built)
        samples = random_samples(0, cfg.vocab_size, 64, (64, 256))
        torch.cuda.synchronize()
        stepped = time.perf_counter()
        stats = trainer.train_step(samples, tau=0.1)
        torch.cuda.synchronize()
        row("train step (32 samples, 128-320 tokens)", step_seconds=time.perf_counter() - stepped, loss=float(stats.loss),
            max_allocated_gib=torch.cuda.max_memory_allocated() / GiB)
        trainer.offload(keep_weights=True)
        row("sync: trainer /offload keep_weights")
        ask("wake_weights")
        row("rollout /wake_up weights")
        sender = CudaIpcSender(0)
        torch.cuda.reset_peak_memory_stats()
        staged = time.perf_counter()
        handle = sender.stage(trainer.hf_state(), 256 << 20, declared=trainer.hf_metadata())
        stage_seconds = time.perf_counter() - staged
        row("trainer /weights/handle", stage_seconds=stage_seconds,
            staging_peak_over_weights=handle["staging"]["peak_bytes"] / weight_bytes)
        _, loaded = ask("load", handle)
        row("rollout /weights/update", loaded_gib=loaded / GiB)
        sender.release()
        trainer.offload()
        row("trainer /weights/release; trainer /offload")
        ask("wake_kv_cache")
        row("rollout /wake_up kv_cache")
        ask("exit")
        vllm.join(60)
    result = {"gpu": torch.cuda.get_device_name(0), "date": datetime.date.today().isoformat(),
              "utilization": args.utilization, "weight_gib": weight_bytes / GiB, "staging": handle["staging"], "rows": rows}
    print(f"weights {weight_bytes / GiB:.2f} GiB; sender staging peak {handle['staging']['peak_bytes'] / GiB:.2f} GiB "
          f"({handle['staging']['peak_bytes'] / weight_bytes:.2f}x the weights; the bound is 1x + one bucket)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
