"""One pod against two on this machine: each phase's seconds per iteration and peak memory,
measured side by side in one run, and (with --seeds) held-out accuracy over several seeds.

Both jobs are the tiny reversal task (examples/tiny-reverse.yaml and its 2-pod twin) with
the same prompts per iteration, samples, model and seed; `seesaw run` plays every pod's
processes, each pod on its share of the cores. Peak memory is the largest sum of the
resident memory of all the run's processes, sampled every 0.2 s.

Prints a table with 2-pod/1-pod ratios, writes runs/bench-scale/scale.{json,png}.

Usage: python bench/scale.py [--iterations 6] [--seeds 0] [--accuracy-iterations 30]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SEESAW = str(Path(sys.executable).parent / "seesaw")
JOBS = {1: ROOT / "examples" / "tiny-reverse.yaml", 2: ROOT / "examples" / "tiny-reverse-2pods.yaml"}
PHASES = ("rollout", "train", "sync")


def write_job(pods: int, iterations: int, out: Path) -> Path:
    from seesaw.spec import load_manifest

    manifest = load_manifest(JOBS[pods])
    spec = manifest["spec"]
    spec["rl"]["iterations"] = iterations
    spec["rl"]["evaluation"]["everyIterations"] = 0
    spec["checkpoint"]["everyIterations"] = 0
    spec["failurePolicy"]["maxRestarts"] = 0
    path = out / f"job-{pods}pod.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def peak_rss(root: psutil.Process, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        total = 0
        try:
            for process in [root, *root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            return
        peak[0] = max(peak[0], total)
        time.sleep(0.2)


def run(pods: int, iterations: int, seed: int, out: Path) -> dict:
    """One `seesaw run`; its per-iteration phase seconds (the first iteration, a warm-up, left
    out), wall seconds, peak memory and held-out accuracy."""
    job = write_job(pods, iterations, out)
    workdir = out / f"runs-{pods}pod-seed{seed}"
    summary_path = workdir / "summary.json"
    started = time.monotonic()
    process = subprocess.Popen([SEESAW, "run", str(job), "--workdir", str(workdir), "--seed", str(seed),
                                "--summary-json", str(summary_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=out)
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=peak_rss, args=(psutil.Process(process.pid), stop, peak), daemon=True)
    sampler.start()
    for line in process.stdout:
        if line.startswith(("iter ", "held-out", "FAILED")):
            print(f"  [{pods} pod{'s' if pods > 1 else ''}, seed {seed}] {line.rstrip()}", flush=True)
    code = process.wait()
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"seesaw run ({pods} pods) failed with exit code {code}; see {workdir}")
    summary = json.loads(summary_path.read_text())
    steady = summary["history"][1:] or summary["history"]
    return {
        "pods": pods, "seed": seed, "iterations": iterations,
        "wall_seconds": time.monotonic() - started,
        "phase_seconds": {phase: statistics.fmean(m[f"{phase}_seconds"] for m in steady) for phase in PHASES},
        "iteration_seconds": statistics.fmean(sum(m[f"{phase}_seconds"] for phase in PHASES) for m in steady),
        "tokens_per_second": statistics.fmean(m["rollout_tokens_per_second"] for m in steady),
        "peak_rss_mib": peak[0] / 2 ** 20,
        "accuracy_before": summary["accuracy_before"], "accuracy_after": summary["accuracy_after"],
        "engines": summary["engines"],
    }


def plot(timing: dict, accuracy: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if accuracy else 1, figsize=(11 if accuracy else 6, 4), squeeze=False)
    ax = axes[0][0]
    labels = ["1 pod", "2 pods"]
    bottom = [0.0, 0.0]
    for phase, colour in zip(PHASES, ("#1f77b4", "#2ca02c", "#d62728")):
        values = [timing[p]["phase_seconds"][phase] for p in (1, 2)]
        ax.bar(labels, values, bottom=bottom, label=phase, color=colour)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("seconds per iteration")
    ax.set_title("phase time per iteration (2 cores)")
    ax.legend()
    if accuracy:
        ax = axes[0][1]
        for pods, marker in ((1, "o"), (2, "s")):
            runs = accuracy[pods]
            ax.scatter([r["seed"] for r in runs], [r["accuracy_after"] for r in runs], marker=marker, label=f"{pods} pod(s): after")
            ax.scatter([r["seed"] for r in runs], [r["accuracy_before"] for r in runs], marker=marker, alpha=0.3,
                       label=f"{pods} pod(s): before")
        ax.set_xlabel("seed")
        ax.set_ylabel("held-out accuracy (sampled)")
        ax.set_title("accuracy per seed")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=6, help="iterations of the timing runs")
    parser.add_argument("--seeds", type=int, default=0, help="also compare accuracy over this many seeds")
    parser.add_argument("--accuracy-iterations", type=int, default=30)
    parser.add_argument("--out", default="runs/bench-scale")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    timing = {pods: run(pods, args.iterations, 0, out) for pods in (1, 2)}
    one, two = timing[1], timing[2]
    print(f"\nper iteration, mean over iterations 2..{args.iterations} ({os.cpu_count()} cores):")
    print(f"{'':22}{'1 pod':>10}{'2 pods':>10}{'2/1':>8}")
    rows = [(f"{phase} s", one["phase_seconds"][phase], two["phase_seconds"][phase]) for phase in PHASES]
    rows += [("iteration s", one["iteration_seconds"], two["iteration_seconds"]),
             ("rollout tokens/s", one["tokens_per_second"], two["tokens_per_second"]),
             ("peak memory MiB", one["peak_rss_mib"], two["peak_rss_mib"])]
    for label, a, b in rows:
        print(f"{label:22}{a:10.3f}{b:10.3f}{b / a if a else float('nan'):8.2f}")
    print(f"what bounds it: {os.cpu_count()} cores for both pods, so each pod's workers get "
          f"{max(1, (os.cpu_count() or 1) // 2)} thread(s). Training splits the batch data-parallel, a half per "
          "pod on its own core (train 2/1 below 1); rollout gives each engine half the prompts but also only its "
          "share of the cores, beside the other pod's engine (rollout 2/1 near or above 1); memory doubles (a "
          "second vLLM engine and trainer). On a cluster each pod brings its own cores or GPUs.")

    accuracy = {}
    if args.seeds:
        accuracy = {pods: [run(pods, args.accuracy_iterations, seed, out) for seed in range(1, args.seeds + 1)]
                    for pods in (1, 2)}
        print(f"\nheld-out accuracy (sampled) after {args.accuracy_iterations} iterations:")
        for pods in (1, 2):
            runs = accuracy[pods]
            pairs = ", ".join(f"seed {r['seed']}: {r['accuracy_before']:.3f} -> {r['accuracy_after']:.3f}" for r in runs)
            print(f"  {pods} pod(s): {pairs}; mean after {statistics.fmean(r['accuracy_after'] for r in runs):.3f}")
    (out / "scale.json").write_text(json.dumps({"timing": timing, "accuracy": accuracy}, indent=2))
    plot(timing, accuracy, out / "scale.png")
    print(f"wrote {out / 'scale.json'} and {out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
