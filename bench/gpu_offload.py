"""Offload/onload of trainer state between phases, against the pinned host <-> device floor.

Trainer state of a bf16 model with Adam under mixed precision: bf16 parameters (2 B/param,
kept), fp32 gradients (4 B/param, freed, not copied) and fp32 master weights plus two
moments (12 B/param, kept), moved with the Megatron trainer's StateOffloader. The floor is
pinned host<->device copy bandwidth measured in the same run.

Usage: python bench/gpu_offload.py [--sizes 0.5,1.5,7] [--json out.json]
Sizes whose state does not fit on the GPU are reported as skipped.
"""
from __future__ import annotations

import argparse
import datetime
import json
import time

import torch

from seesaw.trainer.megatron_backend import StateOffloader

GB = 1e9
STATE_BYTES_PER_PARAM = 2 + 4 + 12


def pinned_bandwidth(nbytes: int = 1 << 30, repeats: int = 5) -> tuple[float, float]:
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    speeds = []
    for to_device in (False, True):
        (dev.copy_(host, non_blocking=True) if to_device else host.copy_(dev, non_blocking=True))
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            (dev.copy_(host, non_blocking=True) if to_device else host.copy_(dev, non_blocking=True))
        torch.cuda.synchronize()
        speeds.append(nbytes * repeats / (time.perf_counter() - started))
    return speeds[0], speeds[1]  # device->host, host->device


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="0.5,1.5,7")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    d2h, h2d = pinned_bandwidth()
    rows = []
    for billions in (float(s) for s in args.sizes.split(",")):
        n = int(billions * 1e9)
        free = torch.cuda.mem_get_info()[0]
        if n * STATE_BYTES_PER_PARAM > 0.9 * free:
            rows.append({"params_b": billions, "skipped": f"needs {n * STATE_BYTES_PER_PARAM / GB:.0f} GB, {free / GB:.0f} GB free"})
            print(f"{billions}B: skipped ({rows[-1]['skipped']})")
            continue
        params = torch.empty(n, dtype=torch.bfloat16, device="cuda").normal_()
        grads = torch.zeros(n, dtype=torch.float32, device="cuda")
        opt = [torch.empty(n, dtype=torch.float32, device="cuda").normal_() for _ in range(3)]
        off = StateOffloader(pin=True)
        off.add("params", [params])
        off.add("grads", [grads], keep_content=False)
        off.add("optimizer", opt)
        probe = params[:1000].clone()
        off.offload()  # the first round allocates the pinned buffers: time the second
        off.onload()
        torch.cuda.synchronize()
        down = off.offload()
        up = off.onload()
        assert torch.equal(params[:1000], probe)
        for group in ("params", "grads", "optimizer"):
            floor_down = down[group].bytes / d2h if group != "grads" else 0.0
            floor_up = up[group].bytes / h2d if group != "grads" else 0.0
            rows.append({"params_b": billions, "group": group, "GB": down[group].bytes / GB,
                         "offload_s": down[group].seconds, "onload_s": up[group].seconds,
                         "floor_offload_s": floor_down, "floor_onload_s": floor_up})
            r = rows[-1]
            print(f"{billions}B {group:>9}: {r['GB']:6.2f} GB offload {r['offload_s']:.3f}s (floor {floor_down:.3f}s) "
                  f"onload {r['onload_s']:.3f}s (floor {floor_up:.3f}s)", flush=True)
        del params, grads, opt, off
        torch.cuda.empty_cache()
    result = {"gpu": torch.cuda.get_device_name(0), "date": datetime.date.today().isoformat(), "torch": torch.__version__,
              "pinned_d2h_GB_per_s": d2h / GB, "pinned_h2d_GB_per_s": h2d / GB, "rows": rows}
    print(f"\nGPU {result['gpu']}, {result['date']}; pinned floor: device->host {d2h / GB:.1f} GB/s, host->device {h2d / GB:.1f} GB/s")
    print("| params | state | GB | offload s | floor s | onload s | floor s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "skipped" in r:
            print(f"| {r['params_b']}B | all | - | skipped: {r['skipped']} | | | |")
        else:
            print(f"| {r['params_b']}B | {r['group']} | {r['GB']:.2f} | {r['offload_s']:.3f} | {r['floor_offload_s']:.3f} | "
                  f"{r['onload_s']:.3f} | {r['floor_onload_s']:.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
