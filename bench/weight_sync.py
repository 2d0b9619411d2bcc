"""Weight-sync throughput: trainer process -> live vLLM engine, against raw Mooncake and memcpy.

All three move the same bytes (a Llama model's fp32 weights, >= 256 MB) in one run:
  1. sync      the real path: trainer server -> Mooncake (TCP) -> vLLM's weight-transfer API
               -> model.load_weights, in buckets, timed inside the rollout server;
  2. mooncake  the same buckets read by a bare Mooncake receiver in another process (no vLLM);
  3. memcpy    one in-process torch copy of the same number of bytes;
  4. floor     vLLM's own loading of the same tensors from local memory (layerwise reload,
               load_weights, finalize: the sync without a wire), in an engine built as the pod's.
The sync cannot beat the slower of the wire (2) and the floor (4); sync/floor is how far it is.
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


def _raw_receiver(handle: dict, repeats: int, results: mp.Queue, log_path: str) -> None:
    # the transfer engine logs every bucket at INFO on stderr: into the bench's log, not the table
    os.dup2(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
    from seesaw.checkpoint_engine.weights.mooncake import MooncakeReceiver

    receiver = MooncakeReceiver(handle["total_bytes"])
    times = []
    for _ in range(repeats + 1):  # the first read also opens the connection: not timed
        started = time.perf_counter()
        for _name, _tensor in receiver.receive(handle):
            pass
        times.append(time.perf_counter() - started)
    results.put(times[1:])


def measure_raw_mooncake(handle: dict, repeats: int, log_path: Path) -> list[float]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_raw_receiver, args=(handle, repeats, results, str(log_path)))
    process.start()
    times = results.get(timeout=600)
    process.join()
    return times


def _local_reload(worker, model_file: str, repeats: int) -> list[float]:
    """Inside the vLLM worker: the engine's own weight loading (layerwise reload, load_weights,
    finalize) of the same tensors from local memory; no wire. Seconds per load."""
    import time

    from safetensors.torch import load_file
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload

    tensors = list(load_file(model_file).items())
    model = worker.get_model()
    times = []
    for _ in range(repeats + 1):  # the first load also touches every page: not timed
        started = time.perf_counter()
        initialize_layerwise_reload(model)
        model.load_weights(iter(tensors))
        finalize_layerwise_reload(model, worker.model_config)
        times.append(time.perf_counter() - started)
    return times[1:]


def _load_floor(model_dir: str, spec: dict, repeats: int, results: mp.Queue, log_path: str) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (1, 2):  # vLLM logs to stdout, its workers' loaders to stderr
        os.dup2(log, stream)
    os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"  # a function, not a method name, goes to the worker
    from seesaw.rollout.cpu_backend import VLLMCPURollout

    engine = VLLMCPURollout(model_dir, spec)
    results.put(engine.llm.collective_rpc(_local_reload, args=(str(Path(model_dir) / "model.safetensors"), repeats))[0])


def measure_load_floor(model_dir: Path, spec: dict, repeats: int, log_path: Path) -> list[float]:
    """vLLM loading the model's tensors from local memory, in an engine built as the pod's is."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    process = ctx.Process(target=_load_floor, args=(str(model_dir), spec, repeats, results, str(log_path)))
    process.start()
    times = results.get(timeout=900)
    process.join(60)
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
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    print(f"the Mooncake engines' logs: {Path(args.out).with_name('mooncake.log')} (bare receiver), {work}/*.log (pod)",
          flush=True)
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
            raw = measure_raw_mooncake(handle, args.repeats, Path(args.out).with_name("mooncake.log"))
            rows.append({"bucket_mib": bucket_mib, "buckets": len(handle["buckets"]), "bytes": handle["total_bytes"],
                         "sync_seconds": statistics.median(sync), "mooncake_seconds": statistics.median(raw)})
            print(f"bucket {bucket_mib:>4} MiB: sync {rows[-1]['sync_seconds']:.3f}s, raw Mooncake {rows[-1]['mooncake_seconds']:.3f}s",
                  flush=True)
    finally:
        pod.stop()
    memcpy = statistics.median(measure_memcpy(nbytes, args.repeats))
    floor = statistics.median(measure_load_floor(model_dir, manifest["spec"], args.repeats,
                                                 Path(args.out).with_name("vllm-load-floor.log")))

    gb = nbytes / 1e9
    print(f"\nweight sync of {nbytes / MiB:.0f} MiB, trainer process -> live vLLM engine (median of {args.repeats}); "
          f"memcpy in-process {gb / memcpy:.2f} GB/s")
    print(f"vLLM's own loading of the same tensors from local memory (the floor without a wire): "
          f"{floor:.3f}s, {gb / floor:.2f} GB/s")
    print(f"{'bucket MiB':>10} {'buckets':>8} {'sync GB/s':>10} {'Mooncake GB/s':>14} {'sync/Mooncake':>14} "
          f"{'sync/memcpy':>12} {'sync/floor':>11}")
    for row in rows:
        row["sync_gbps"] = gb / row["sync_seconds"]
        row["mooncake_gbps"] = gb / row["mooncake_seconds"]
        row["sync_over_mooncake"] = row["mooncake_seconds"] / row["sync_seconds"]
        row["sync_over_memcpy"] = memcpy / row["sync_seconds"]
        # the sync cannot beat the slower of the wire and the engine's own loading
        row["sync_over_floor"] = row["sync_seconds"] / max(floor, row["mooncake_seconds"])
        print(f"{row['bucket_mib']:>10} {row['buckets']:>8} {row['sync_gbps']:>10.2f} {row['mooncake_gbps']:>14.2f} "
              f"{row['sync_over_mooncake']:>14.2f} {row['sync_over_memcpy']:>12.2f} {row['sync_over_floor']:>10.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"bytes": nbytes, "memcpy_seconds": memcpy, "load_floor_seconds": floor, "rows": rows,
                               "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, indent=2))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
