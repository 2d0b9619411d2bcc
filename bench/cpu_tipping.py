"""Does the seesaw tip on the CPU? The demo job with vLLM's own idle spin against Seesaw's
sleeping engine (containers/vllm/vllm_plugin.py), side by side in one run.

vLLM's processes spin on their shared-memory queue for 1 s after each message; on the CPU
build that kept the rollout worker on a core through the trainer's step. Seesaw's sleep
stops the spin for the train phase and its wake-up restores it. Each round
runs `seesaw run examples/tiny-reverse.yaml` once per setting (alternating, so drift of the
machine hits both alike) and samples every process's CPU time by the in-pod phase that pod
0's /metrics reports. Prints, per setting, the median seconds of each phase over the
iterations after the first, the rollout engine's and the trainer's share of a core during
the train phase, and the ratios.

Usage: python bench/cpu_tipping.py [--iterations 30] [--rounds 2]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SEESAW = str(Path(sys.executable).parent / "seesaw")
SETTINGS = {"vLLM spins always": "1", "Seesaw's engine sleeps": ""}
PHASES = ("rollout", "train", "sync")
SAMPLE_SECONDS = 0.1


def _role(process: psutil.Process) -> str:
    try:
        name, command = process.name(), " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    if name.startswith("VLLM::") or "seesaw.rollout" in command:
        return "rollout engine"
    # the trainer's launcher and the rank process it spawns
    return "trainer" if "seesaw.trainer" in command or "multiprocessing" in command else "other"


def one_run(keep_spinning: str, iterations: int, workdir: Path) -> dict:
    env = dict(os.environ, SEESAW_VLLM_KEEP_SPINNING=keep_spinning)
    process = subprocess.Popen([SEESAW, "run", str(ROOT / "examples" / "tiny-reverse.yaml"), "--iterations",
                                str(iterations), "--workdir", str(workdir)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env)
    found: dict[str, str] = {}

    def read() -> None:
        for line in process.stdout:
            if match := re.search(r"prometheus metrics: (http://\S+)", line):
                found["url"] = match.group(1)
            if match := re.search(r"run dir (\S+)", line):
                found["run_dir"] = match.group(1)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    cpu: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    wall: collections.Counter = collections.Counter()
    last: dict[int, float] = {}
    root = psutil.Process(process.pid)
    while process.poll() is None:
        time.sleep(SAMPLE_SECONDS)
        try:
            text = urllib.request.urlopen(found["url"], timeout=1).read().decode()
        except (KeyError, OSError):
            continue
        phase = next(iter(re.findall(r'seesaw_job_phase\{phase="(\w+)"\} 1\.0', text)), "")
        wall[phase] += SAMPLE_SECONDS
        for child in root.children(recursive=True):
            try:
                times = child.cpu_times()
            except psutil.Error:
                continue
            used = times.user + times.system
            cpu[phase][_role(child)] += used - last.get(child.pid, used)
            last[child.pid] = used
    reader.join(10)
    if process.returncode != 0:
        raise SystemExit(f"the run with SEESAW_VLLM_KEEP_SPINNING={keep_spinning!r} failed ({process.returncode})")
    metrics = [json.loads(line) for line in (Path(found["run_dir"]) / "metrics.jsonl").read_text().splitlines()][1:]
    return {"seconds": {p: [m[f"{p}_seconds"] for m in metrics] for p in PHASES},
            "train_core_share": {role: cpu["train"][role] / max(wall["train"], 1e-9) for role in ("rollout engine", "trainer")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = ROOT / "runs" / "bench-cpu-tipping"
    results: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        for name, spin in SETTINGS.items():
            print(f"round {round_ + 1}/{args.rounds}: {name} ...", flush=True)
            results[name].append(one_run(spin, args.iterations, out / "runs"))
    summary = {}
    for name, runs in results.items():
        seconds = {p: statistics.median(s for run in runs for s in run["seconds"][p]) for p in PHASES}
        shares = {role: statistics.fmean(run["train_core_share"][role] for run in runs) for role in ("rollout engine", "trainer")}
        summary[name] = {"median_seconds": seconds, "iteration_seconds": sum(seconds.values()),
                         "train_phase_core_share": shares}
    print(f"\n{'setting':24s} {'rollout':>8s} {'train':>8s} {'sync':>8s} {'iteration':>10s}   "
          "during train: engine / trainer (share of a core)")
    for name, row in summary.items():
        s = row["median_seconds"]
        shares = row["train_phase_core_share"]
        print(f"{name:24s} {s['rollout']:8.3f} {s['train']:8.3f} {s['sync']:8.3f} {row['iteration_seconds']:10.3f}   "
              f"{shares['rollout engine']:.2f} / {shares['trainer']:.2f}")
    base, ours = (summary[name] for name in SETTINGS)
    ratios = {p: ours["median_seconds"][p] / base["median_seconds"][p] for p in PHASES}
    ratios["iteration"] = ours["iteration_seconds"] / base["iteration_seconds"]
    print("ratio (sleeping / spinning): " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu_tipping.json").write_text(json.dumps({"summary": summary, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
