"""Weight-sync throughput: trainer process -> live vLLM engine, against raw Mooncake and memcpy.

All three move the same bytes (a Llama model's fp32 weights, >= 256 MB) in one run:
  1. sync      the real path: trainer server -> Mooncake (TCP) -> vLLM's weight-transfer API
               -> model.load_weights, in buckets, timed inside the rollout server;
  2. mooncake  the same buckets read by a bare Mooncake receiver in another process (no vLLM);
  3. memcpy    one in-process torch copy of the same number of bytes.
Prints the ratios and writes runs/bench/weight_sync.json.

    make bench            # or: python bench/weight_sync.py --bucket-mib 64 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

MiB = 1024 * 1024


def build_model(directory: Path) -> int:
    """A Llama with ~67M parameters (270 MB in fp32): random weights, the demo's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from seesaw.model.generate import build_tokenizer

    config = LlamaConfig(vocab_size=16384, hidden_size=768, intermediate_size=2048, num_hidden_layers=6,
                         num_attention_heads=12, num_key_value_heads=12, head_dim=64, max_position_embeddings=128,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0, dtype="float32")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    build_tokenizer("0123456789=").save_pretrained(directory)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _raw_receiver(handle: dict, repeats: int, results: mp.Queue) -> None:
    from seesaw.checkpoint_engine.channels.mooncake import MooncakeReceiver

    receiver = MooncakeReceiver(handle["total_bytes"])
    times = []
    for _ in range(repeats + 1):  # the first read also opens the connection: not timed
        started = time.perf_counter()
        for _name, _tensor in receiver.receive(handle):
            pass
        times.append(time.perf_counter() - started)
    results.put(times[1:])


def measure_raw_mooncake(handle: dict, repeats: int) -> list[float]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_raw_receiver, args=(handle, repeats, results))
    process.start()
    times = results.get(timeout=600)
    process.join()
    return times


def measure_memcpy(nbytes: int, repeats: int) -> list[float]:
    source = torch.empty(nbytes, dtype=torch.uint8).fill_(1)
    target = torch.empty_like(source)
    target.copy_(source)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        target.copy_(source)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bucket-mib", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "weight_sync.json"))
    args = parser.parse_args()

    from pod_helpers import start_pod, wait_ready, tiny_manifest

    work = Path(tempfile.mkdtemp(prefix="seesaw-bench-"))
    model_dir = work / "model"
    nbytes = build_model(model_dir)
    print(f"model: {nbytes / MiB:.0f} MiB of fp32 weights at {model_dir}", flush=True)
    manifest = tiny_manifest()
    manifest["spec"]["rollout"]["maxModelLen"] = 128
    pod, clients = start_pod(manifest, model_dir, work)
    rows = []
    try:
        wait_ready(pod, clients, timeout=600)
        trainer, rollout = clients["trainer"], clients["rollout"]
        first = True
        for bucket_mib in args.bucket_mib:
            handle = trainer.call("/weights/handle", {"bucket_bytes": bucket_mib * MiB})
            if first:
                rollout.call("/weights/init", {"receiver_init": handle["receiver_init"]})
                rollout.call("/weights/update", {"handle": handle})  # warm-up: connection setup, first touch
                first = False
            sync = [rollout.call("/weights/update", {"handle": handle}, timeout=600)["seconds"] for _ in range(args.repeats)]
            raw = measure_raw_mooncake(handle, args.repeats)
            rows.append({"bucket_mib": bucket_mib, "buckets": len(handle["buckets"]), "bytes": handle["total_bytes"],
                         "sync_seconds": statistics.median(sync), "mooncake_seconds": statistics.median(raw)})
            print(f"bucket {bucket_mib:>4} MiB: sync {rows[-1]['sync_seconds']:.3f}s, raw Mooncake {rows[-1]['mooncake_seconds']:.3f}s",
                  flush=True)
    finally:
        pod.stop()
    memcpy = statistics.median(measure_memcpy(nbytes, args.repeats))

    gb = nbytes / 1e9
    print(f"\nweight sync of {nbytes / MiB:.0f} MiB, trainer process -> live vLLM engine (median of {args.repeats}); "
          f"memcpy in-process {gb / memcpy:.2f} GB/s")
    print(f"{'bucket MiB':>10} {'buckets':>8} {'sync GB/s':>10} {'Mooncake GB/s':>14} {'sync/Mooncake':>14} {'sync/memcpy':>12}")
    for row in rows:
        row["sync_gbps"] = gb / row["sync_seconds"]
        row["mooncake_gbps"] = gb / row["mooncake_seconds"]
        row["sync_over_mooncake"] = row["mooncake_seconds"] / row["sync_seconds"]
        row["sync_over_memcpy"] = memcpy / row["sync_seconds"]
        print(f"{row['bucket_mib']:>10} {row['buckets']:>8} {row['sync_gbps']:>10.2f} {row['mooncake_gbps']:>14.2f} "
              f"{row['sync_over_mooncake']:>14.2f} {row['sync_over_memcpy']:>12.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bytes": nbytes, "memcpy_seconds": memcpy, "rows": rows,
                               "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, indent=2))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
