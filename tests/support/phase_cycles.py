"""Repeat the sync's memory moves on a live pod and watch each container's resident memory.

One cycle is what the conductor does around a weight sync (docs/ARCHITECTURE.md): the
trainer offloads its optimiser state, stages its weights, the live engine loads them, the
sender frees its staging copies, the trainer offloads everything and onloads it again.
Resident memory is the sum over each container's process group (vLLM's engine-core
process included), read after a warm-up and after every cycle. Shared by the CI test
(loose bound) and `make bench-cycles` (the 2 % goal).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import psutil

MiB = 1024 * 1024


def group_rss(leader_pid: int) -> int:
    """Resident bytes of every process in the leader's process group."""
    group = os.getpgid(leader_pid)
    total = 0
    for process in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(process.pid) == group:
                total += process.memory_info().rss
        except (psutil.Error, ProcessLookupError):
            continue
    return total


def one_cycle(trainer, rollout, bucket_bytes: int) -> None:
    trainer.call("/offload", {"keep_weights": True})
    rollout.call("/wake_up", {"tags": ["weights"]})
    handle = trainer.call("/weights/handle", {"bucket_bytes": bucket_bytes})
    if rollout.health()["weight_version"] == 0:
        rollout.call("/weights/init", {"receiver_init": handle["receiver_init"]})
    rollout.call("/weights/update", {"handle": handle})
    trainer.call("/weights/release")
    trainer.call("/offload", {"keep_weights": False})
    rollout.call("/wake_up", {"tags": ["kv_cache"]})
    trainer.call("/onload")


def run_cycles(pod, trainer, rollout, cycles: int = 50, warmup: int = 5, bucket_bytes: int = 4 * MiB,
               progress: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Warm up, then `cycles` cycles; returns resident memory per container and its growth."""
    pids = {name: pod.processes[name].pid for name in ("trainer", "rollout")}
    for _ in range(warmup):
        one_cycle(trainer, rollout, bucket_bytes)
    baseline = {name: group_rss(pid) for name, pid in pids.items()}
    series: dict[str, list[int]] = {name: [] for name in pids}
    started = time.perf_counter()
    for cycle in range(1, cycles + 1):
        one_cycle(trainer, rollout, bucket_bytes)
        for name, pid in pids.items():
            series[name].append(group_rss(pid))
        if cycle % 10 == 0:
            progress(f"cycle {cycle}/{cycles}: " + ", ".join(
                f"{name} {series[name][-1] / MiB:.0f} MiB" for name in pids))
    result: dict[str, Any] = {"cycles": cycles, "warmup": warmup, "seconds_per_cycle": (time.perf_counter() - started) / cycles}
    for name in pids:
        # the last cycles' median against the baseline: one allocator hiccup is not a leak
        tail = sorted(series[name][-5:])[2]
        growth = (tail - baseline[name]) / baseline[name]
        result[name] = {"baseline_bytes": baseline[name], "final_bytes": tail, "growth": growth,
                        "growth_per_cycle": growth / cycles, "series_bytes": series[name]}
    return result
