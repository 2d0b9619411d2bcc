"""Does the seesaw tip on the CPU? The demo job with vLLM's own idle spin, with Seesaw's
sleeping engine (containers/vllm/vllm_plugin.py), and with the engine's processes stopped
outright (SIGSTOP) while the trainer steps, side by side in one run.

vLLM's processes spin on their shared-memory queue for 1 s after each message; on the CPU
build that kept the rollout worker on a core through the trainer's step. Seesaw's sleep
stops the spin for the train phase and its wake-up restores it. Each round
runs `seesaw run examples/tiny-reverse.yaml` once per setting (alternating, so drift of the
machine hits both alike) and samples every process's CPU time by the in-pod phase that pod
0's /metrics reports. Prints, per setting, the median seconds of each phase over the
iterations after the first, the trainer's own compute in its step (log-prob recomputation
and optimiser steps), the phase-switch overhead (the iteration's wall less generation,
reward scoring and the trainer's compute) as a share of the iteration, the rollout
engine's and the trainer's share of a core during the train phase, and the ratios.

"Stopped" is the floor: no engine process can run at all. The bench stops them a moment
after the train phase begins (once the engine answered the trainer's /sleep) and continues
them when it ends, or after STOP_AT_MOST seconds so that a stopped engine never holds the
job.

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

from seesaw.checkpoint_engine.tracking import switch_overhead_share

ROOT = Path(__file__).resolve().parents[1]
SEESAW = str(Path(sys.executable).parent / "seesaw")
# name: (SEESAW_VLLM_KEEP_SPINNING, stop the engine in the train phase)
SETTINGS = {"vLLM spins always": ("1", False), "Seesaw's engine sleeps": ("", False),
            "engine stopped (floor)": ("", True)}
BASELINE, OURS = "vLLM spins always", "Seesaw's engine sleeps"
PHASES = ("rollout", "train", "sync")
SAMPLE_SECONDS = 0.05
STOP_AFTER, STOP_AT_MOST = 0.1, 5.0


def _role(process: psutil.Process) -> str:
    try:
        name, command = process.name(), " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    if name.startswith("VLLM::") or "seesaw.rollout" in command:
        return "rollout engine"
    # the trainer's launcher and the rank process it spawns
    return "trainer" if "seesaw.trainer" in command or "multiprocessing" in command else "other"


class EngineStopper:
    """SIGSTOPs the rollout engine's processes during the train phase, SIGCONTs them after."""

    def __init__(self, root: psutil.Process) -> None:
        self.root, self.stopped, self.train_since = root, [], None

    def phase(self, phase: str) -> None:
        now = time.monotonic()
        self.train_since = (self.train_since or now) if phase == "train" else None
        in_train = self.train_since is not None and now - self.train_since >= STOP_AFTER
        if in_train and not self.stopped and now - self.train_since < STOP_AT_MOST:
            self.stopped = [p for p in self.root.children(recursive=True) if _role(p) == "rollout engine"]
            self._signal("suspend")
        elif self.stopped and (not in_train or now - self.train_since >= STOP_AT_MOST):
            self.resume()

    def resume(self) -> None:
        self._signal("resume")
        self.stopped = []

    def _signal(self, action: str) -> None:
        for process in self.stopped:
            try:
                getattr(process, action)()
            except psutil.Error:
                pass


def one_run(keep_spinning: str, stop_engine: bool, iterations: int, workdir: Path) -> dict:
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
    stopper = EngineStopper(root) if stop_engine else None
    try:
        while process.poll() is None:
            time.sleep(SAMPLE_SECONDS)
            try:
                text = urllib.request.urlopen(found["url"], timeout=1).read().decode()
            except (KeyError, OSError):
                continue
            phase = next(iter(re.findall(r'seesaw_job_phase\{phase="(\w+)"\} 1\.0', text)), "")
            if stopper:
                stopper.phase(phase)
            wall[phase] += SAMPLE_SECONDS
            _sample_cpu(root, phase, cpu, last)
    finally:
        if stopper:
            stopper.resume()
    reader.join(10)
    if process.returncode != 0:
        raise SystemExit(f"the run with SEESAW_VLLM_KEEP_SPINNING={keep_spinning!r} failed ({process.returncode})")
    metrics = [json.loads(line) for line in (Path(found["run_dir"]) / "metrics.jsonl").read_text().splitlines()][1:]
    seconds = {p: [m[f"{p}_seconds"] for m in metrics] for p in PHASES}
    seconds["iteration"] = [m["iteration_seconds"] for m in metrics]
    seconds["trainer compute"] = [m["trainer_compute_seconds"] for m in metrics]
    overhead = [switch_overhead_share(m) for m in metrics]
    return {"seconds": seconds, "overhead_share": overhead,
            "train_core_share": {role: cpu["train"][role] / max(wall["train"], 1e-9) for role in ("rollout engine", "trainer")}}


def _sample_cpu(root: psutil.Process, phase: str, cpu: dict, last: dict) -> None:
    """Add each process's CPU seconds since the last sample to the phase, by its role."""
    for child in root.children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        used = times.user + times.system
        cpu[phase][_role(child)] += used - last.get(child.pid, used)
        last[child.pid] = used


COLUMNS = PHASES + ("trainer compute", "iteration")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = ROOT / "runs" / "bench-cpu-tipping"
    results: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        for name, (spin, stop) in SETTINGS.items():
            print(f"round {round_ + 1}/{args.rounds}: {name} ...", flush=True)
            results[name].append(one_run(spin, stop, args.iterations, out / "runs"))
    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "median_seconds": {c: statistics.median(s for run in runs for s in run["seconds"][c]) for c in COLUMNS},
            "overhead_share": statistics.median(s for run in runs for s in run["overhead_share"]),
            "train_phase_core_share": {role: statistics.fmean(run["train_core_share"][role] for run in runs)
                                       for role in ("rollout engine", "trainer")}}
    print(f"\nmedian seconds over iterations 2-{args.iterations} of {args.rounds} rounds")
    print(f"{'setting':24s}" + "".join(f"{c:>16s}" for c in COLUMNS) + "  overhead   engine / trainer cores in train")
    for name, row in summary.items():
        shares = row["train_phase_core_share"]
        print(f"{name:24s}" + "".join(f"{row['median_seconds'][c]:16.3f}" for c in COLUMNS)
              + f"  {row['overhead_share']:8.1%}   {shares['rollout engine']:.2f} / {shares['trainer']:.2f}")
    base, ours = summary[BASELINE], summary[OURS]
    ratios = {c: ours["median_seconds"][c] / base["median_seconds"][c] for c in COLUMNS}
    print("ratio (sleeping / spinning): " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    out.mkdir(parents=True, exist_ok=True)
    (out / "cpu_tipping.json").write_text(json.dumps({"summary": summary, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
