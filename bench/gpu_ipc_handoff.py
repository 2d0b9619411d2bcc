"""Co-located weight hand-off on one GPU: trainer process -> rollout process through CUDA IPC.

For model-sized sets of bf16 tensors (0.5B, 1.5B, 7B parameters) the trainer side stages
them (packed into buckets, or shared as they are with zero_copy) and a second process opens
the handles and copies every tensor into its own parameters, as vLLM's weight loaders do.
The floor is measured in the same run: device-to-device copy bandwidth on this GPU. A
packed hand-off makes two copies (pack, load), a zero-copy one makes one (load).

Usage: python bench/gpu_ipc_handoff.py [--sizes 0.5,1.5,7] [--bucket-mib 512] [--json out.json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import time

import torch
import torch.multiprocessing as mp

from seesaw.checkpoint_engine.weights.cuda_ipc import CudaIpcReceiver, CudaIpcSender

GB = 1e9


def model_like(params: float, hidden: int) -> list[tuple[str, torch.Tensor]]:
    """bf16 tensors shaped like a decoder's (square attention, 4x-wide MLP), totalling ~params."""
    out, total, layer = [], 0, 0
    while total < params:
        for name, shape in (("qkv", (3 * hidden, hidden)), ("o", (hidden, hidden)), ("up", (8 * hidden, hidden)),
                            ("down", (hidden, 4 * hidden)), ("norm", (hidden,))):
            t = torch.empty(shape, dtype=torch.bfloat16, device="cuda").normal_()
            out.append((f"model.layers.{layer}.{name}.weight", t))
            total += t.numel()
        layer += 1
    return out


def d2d_bandwidth(nbytes: int = 1 << 30, repeats: int = 10) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    torch.cuda.synchronize()
    return nbytes * repeats / (time.perf_counter() - started)


def receiver_main(requests, replies) -> None:
    torch.cuda.set_device(0)
    receiver = CudaIpcReceiver(0)
    params: dict[str, torch.Tensor] = {}
    while True:
        handle = requests.get()
        if handle is None:
            return
        torch.cuda.synchronize()
        started = time.perf_counter()
        nbytes = 0
        for name, view in receiver.receive(handle):
            if name not in params:  # the rollout engine's own parameters, allocated once
                params[name] = torch.empty_like(view)
            params[name].copy_(view)
            nbytes += view.numel() * view.element_size()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        checksum = sum(float(p.float().sum()) for p in list(params.values())[:3])
        receiver.close()
        replies.put({"seconds": seconds, "bytes": nbytes, "checksum": checksum})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="0.5,1.5,7", help="billions of parameters")
    ap.add_argument("--bucket-mib", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    torch.cuda.set_device(0)
    ctx = mp.get_context("spawn")
    requests, replies = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=receiver_main, args=(requests, replies), daemon=True)
    child.start()
    floor = d2d_bandwidth()
    rows = []
    for billions in (float(s) for s in args.sizes.split(",")):
        hidden = 1024 if billions < 1 else 1536 if billions < 3 else 4096
        tensors = model_like(billions * 1e9, hidden)
        nbytes = sum(t.numel() * t.element_size() for _, t in tensors)
        for zero_copy in (False, True):
            best = None
            for _ in range(args.repeats):
                sender = CudaIpcSender(0, zero_copy=zero_copy)
                torch.cuda.synchronize()
                started = time.perf_counter()
                handle = sender.stage(tensors, args.bucket_mib << 20)
                stage_s = time.perf_counter() - started
                requests.put(handle)
                reply = replies.get(timeout=600)
                total_s = time.perf_counter() - started
                sender.close()
                if best is None or total_s < best["total_s"]:
                    best = {"stage_s": stage_s, "load_s": reply["seconds"], "total_s": total_s}
                del handle
            copies = 1 if zero_copy else 2
            floor_s = copies * nbytes / floor
            rows.append({"params_b": billions, "GB": nbytes / GB, "mode": "zero-copy" if zero_copy else f"packed {args.bucket_mib} MiB",
                         **best, "GB_per_s": nbytes / best["total_s"] / GB, "floor_s": floor_s,
                         "of_floor": floor_s / best["total_s"]})
            r = rows[-1]
            print(f"{billions:>4}B {r['GB']:6.2f} GB {r['mode']:>16}: stage {r['stage_s']:.3f}s load {r['load_s']:.3f}s "
                  f"total {r['total_s']:.3f}s ({r['GB_per_s']:.1f} GB/s; floor {floor_s:.3f}s = {r['of_floor']:.0%})", flush=True)
        del tensors
        torch.cuda.empty_cache()
    requests.put(None)
    child.join(timeout=60)
    result = {"gpu": torch.cuda.get_device_name(0), "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "d2d_copy_GB_per_s": floor / GB, "rows": rows}
    print(f"\nGPU {result['gpu']}, {result['date']}; device-to-device copy floor {floor / GB:.0f} GB/s")
    print("| params | GB (bf16) | mode | stage s | load s | total s | GB/s | floor s | % of floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['params_b']}B | {r['GB']:.2f} | {r['mode']} | {r['stage_s']:.3f} | {r['load_s']:.3f} | {r['total_s']:.3f} | "
              f"{r['GB_per_s']:.1f} | {r['floor_s']:.3f} | {r['of_floor']:.0%} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
