"""One pod against two, and rollout with 0, 1 and 2 rollout replicas, on this machine.

Seconds per phase, rollout tokens/s and peak memory, each comparison measured side by side
in one run, and (with --seeds) held-out accuracy of one pod against two over several seeds.

Pods: the tiny reversal task (examples/tiny-reverse.yaml and its 2-pod twin) with the same
prompts per iteration, samples, model and seed; `seesaw run` plays every pod's processes,
each pod on its share of the cores.

Replicas: the one-pod tiny job with spec.rollout.replicas set to 0, 1 and 2 and nothing else
changed. `seesaw run` starts each replica (a vLLM engine and a checkpoint engine) beside the
gang, and every iteration's prompts are split over all engines. Rollout tokens/s, rollout
seconds and the prompts each engine served come from the conductor's metrics.jsonl (median
over the iterations after the first). Every engine reserves 1 GiB of KV cache
(VLLM_CPU_KVCACHE_SPACE=1, in the 0-replica row too, so the rows differ only in the engines
added), which lets a gang pod and two replicas fit a 23 GB machine. `seesaw run` gives each
pod, gang or replica, its share of the cores: the 0-replica engine runs on every core, and
beside replicas each engine on one. On a 2-core machine the replicas' engines share the same
two cores as the gang's engine and trainer, so these rows show the overhead of spreading
prompts over more engines and syncing weights to them, not scaling: on a cluster each
replica is its own node with its own cores or GPUs.

Peak memory is the largest sum of the resident memory of all of a run's processes, sampled
every 0.2 s. The first iteration of each run is a warm-up and left out of every figure.

Prints a table per comparison, writes runs/bench-scale/scale.{json,png}.

Usage: python bench/scale.py [--only pods|replicas] [--iterations 6] [--replicas 0 1 2]
                             [--seeds 0] [--accuracy-iterations 30]
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
KV_CACHE_GIB = "1"  # per engine, so a gang pod and two replicas fit this machine
ROLLOUT_MODULE = "seesaw.rollout.launch"


def write_job(pods: int, iterations: int, out: Path, replicas: int | None = None) -> Path:
    from seesaw.spec import load_manifest

    manifest = load_manifest(JOBS[pods])
    spec = manifest["spec"]
    spec["rl"]["iterations"] = iterations
    spec["rl"]["evaluation"]["everyIterations"] = 0
    spec["checkpoint"]["everyIterations"] = 0
    spec["failurePolicy"]["maxRestarts"] = 0
    if replicas is not None:
        spec["rollout"]["replicas"] = replicas
    path = out / (f"job-{pods}pod.yaml" if replicas is None else f"job-{replicas}replicas.yaml")
    path.write_text(yaml.safe_dump(manifest))
    return path


def watch(root: psutil.Process, stop: threading.Event, peak: list[int], engines: dict[int, dict[str, str]]) -> None:
    """Until `stop`: the peak of the summed resident memory of `root` and its descendants, and
    the environment each rollout engine process started with (what the runner gave it)."""
    while not stop.is_set():
        total = 0
        try:
            for process in [root, *root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                    if process.pid not in engines and ROLLOUT_MODULE in " ".join(process.cmdline()):
                        env = process.environ()
                        engines[process.pid] = {key: env.get(key, "") for key in
                                                ("VLLM_CPU_KVCACHE_SPACE", "SEESAW_CPU_THREADS", "SEESAW_ROLLOUT_REPLICA")}
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        except psutil.NoSuchProcess:
            return
        peak[0] = max(peak[0], total)
        time.sleep(0.2)


def play(job: Path, label: str, seed: int, out: Path, env: dict[str, str] | None = None) -> dict:
    """One `seesaw run` of `job`: its summary, run directory, wall seconds, peak memory and the
    rollout engines' environments."""
    workdir = out / f"runs-{label}-seed{seed}"
    summary_path = workdir / "summary.json"
    started = time.monotonic()
    process = subprocess.Popen([SEESAW, "run", str(job), "--workdir", str(workdir), "--seed", str(seed),
                                "--summary-json", str(summary_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=out, env=env)
    stop, peak, engines = threading.Event(), [0], {}
    sampler = threading.Thread(target=watch, args=(psutil.Process(process.pid), stop, peak, engines), daemon=True)
    sampler.start()
    run_dir = None
    for line in process.stdout:
        if line.startswith("job ") and " run dir " in line:
            run_dir = out / line.rstrip().rsplit(" run dir ", 1)[1]
        if line.startswith(("iter ", "held-out", "FAILED", "rollout replica")):
            print(f"  [{label}, seed {seed}] {line.rstrip()}", flush=True)
    code = process.wait()
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"seesaw run ({label}) failed with exit code {code}; see {run_dir or workdir}")
    return {"summary": json.loads(summary_path.read_text()), "run_dir": run_dir, "wall_seconds": time.monotonic() - started,
            "peak_rss_mib": peak[0] / 2 ** 20, "engine_env": list(engines.values())}


def pod_timing(pods: int, iterations: int, seed: int, out: Path) -> dict:
    """One pod or two: per-iteration phase seconds (mean over the iterations after the first),
    wall seconds, peak memory and held-out accuracy."""
    played = play(write_job(pods, iterations, out), f"{pods}pod", seed, out)
    summary = played["summary"]
    steady = summary["history"][1:] or summary["history"]
    return {
        "pods": pods, "seed": seed, "iterations": iterations,
        "wall_seconds": played["wall_seconds"],
        "phase_seconds": {phase: statistics.fmean(m[f"{phase}_seconds"] for m in steady) for phase in PHASES},
        "iteration_seconds": statistics.fmean(sum(m[f"{phase}_seconds"] for phase in PHASES) for m in steady),
        "tokens_per_second": statistics.fmean(m["rollout_tokens_per_second"] for m in steady),
        "peak_rss_mib": played["peak_rss_mib"],
        "accuracy_before": summary["accuracy_before"], "accuracy_after": summary["accuracy_after"],
        "engines": summary["engines"],
    }


def replica_rollout(replicas: int, iterations: int, out: Path) -> dict:
    """The one-pod job with `replicas` rollout replicas: median rollout tokens/s and seconds
    over the iterations after the first (from metrics.jsonl), the engines that served prompts
    in each, peak memory and what the engines were given (KV cache GiB, threads)."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", KV_CACHE_GIB)
    played = play(write_job(1, iterations, out, replicas=replicas), f"{replicas}replicas", 0, out, env)
    if played["run_dir"] is None:
        raise SystemExit(f"seesaw run ({replicas} replicas) printed no 'run dir' line: cannot find its metrics.jsonl")
    history = [json.loads(line) for line in (played["run_dir"] / "metrics.jsonl").read_text().splitlines() if line]
    steady = history[1:] or history
    serving = [sum(1 for e in m["engines"] if e["prompts"] > 0 and not (e.get("lost") or e.get("left"))) for m in steady]

    def engine_id(record: dict) -> tuple:
        return record["pod"], record.get("replica"), record.get("engine")

    # an engine listed but with no prompt in any measured iteration (a replica that never joined is not listed)
    idle = [e for e in steady[-1]["engines"]
            if not any(f["prompts"] for m in steady for f in m["engines"] if engine_id(f) == engine_id(e))]
    return {
        "replicas": replicas, "iterations": iterations,
        "wall_seconds": played["wall_seconds"],
        "tokens_per_second": statistics.median(m["rollout_tokens_per_second"] for m in steady),
        "rollout_seconds": statistics.median(m["rollout_seconds"] for m in steady),
        "per_iteration": [{"iteration": m["iteration"], "rollout_tokens_per_second": m["rollout_tokens_per_second"],
                           "rollout_seconds": m["rollout_seconds"],
                           "prompts_per_engine": [e["prompts"] for e in m["engines"]]} for m in history],
        "engines_serving": serving,
        "engines_listed": len(steady[-1]["engines"]),
        "engines_idle": idle,
        "lost": [e for m in history for e in m["engines"] if e.get("lost")],
        "peak_rss_mib": played["peak_rss_mib"],
        "kv_cache_gib": sorted({e["VLLM_CPU_KVCACHE_SPACE"] or "unset" for e in played["engine_env"]}),
        "threads_per_engine": sorted({e["SEESAW_CPU_THREADS"] or "all" for e in played["engine_env"]}),
    }


def spread(values: list) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def print_pods(one: dict, two: dict, iterations: int) -> None:
    print(f"\none pod against two, per iteration, mean over iterations 2..{iterations} ({os.cpu_count()} cores):")
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


def print_replicas(rows: dict[int, dict], iterations: int) -> None:
    base = rows.get(0) or rows[min(rows)]
    ratio = "/0" if 0 in rows else f"/{min(rows)}"
    print(f"\nrollout replicas (one-pod job), median over iterations 2..{iterations} ({os.cpu_count()} cores):")
    print(f"{'replicas':>8}{'engines':>9}{'threads':>9}{'KV GiB':>8}{'tokens/s':>10}{ratio:>6}"
          f"{'rollout s':>11}{ratio:>6}{'peak MiB':>10}{ratio:>6}")
    for replicas, r in rows.items():
        print(f"{replicas:>8}{spread(r['engines_serving']):>9}{','.join(r['threads_per_engine']):>9}"
              f"{','.join(r['kv_cache_gib']):>8}"
              f"{r['tokens_per_second']:10.0f}{r['tokens_per_second'] / base['tokens_per_second']:6.2f}"
              f"{r['rollout_seconds']:11.3f}{r['rollout_seconds'] / base['rollout_seconds']:6.2f}"
              f"{r['peak_rss_mib']:10.0f}{r['peak_rss_mib'] / base['peak_rss_mib']:6.2f}")
    print("engines: how many engines (gang and replicas) served prompts in each measured iteration; threads: "
          "each engine's CPU threads (all = the machine's). Every engine runs on the same "
          f"{os.cpu_count()} cores, so more replicas add the cost of splitting prompts and syncing weights to "
          "more engines, not cores: this is overhead, not scaling. On a cluster each replica is its own node.")
    for replicas, r in rows.items():
        if max(r["engines_serving"]) < replicas + 1:
            print(f"  note: {replicas} replica(s): at most {max(r['engines_serving'])} engine(s) served prompts, "
                  f"{replicas + 1} expected (a replica that never joined?)")
        for engine in r["engines_idle"]:
            print(f"  note: {replicas} replica(s): engine {engine} served no prompt in the measured iterations")
        if r["lost"]:
            print(f"  note: {replicas} replica(s): {len(r['lost'])} engine(s) lost during the run")


def plot(timing: dict, replicas: dict, accuracy: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p, present in (("pods", timing), ("replicas", replicas), ("accuracy", accuracy)) if present]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "pods":
            labels = ["1 pod", "2 pods"]
            bottom = [0.0, 0.0]
            for phase, colour in zip(PHASES, ("#1f77b4", "#2ca02c", "#d62728")):
                values = [timing[p]["phase_seconds"][phase] for p in (1, 2)]
                ax.bar(labels, values, bottom=bottom, label=phase, color=colour)
                bottom = [b + v for b, v in zip(bottom, values)]
            ax.set_ylabel("seconds per iteration")
            ax.set_title(f"phase time per iteration ({os.cpu_count()} cores)")
            ax.legend()
        elif panel == "replicas":
            labels = [f"{n} replica{'' if n == 1 else 's'}" for n in replicas]
            values = [r["tokens_per_second"] for r in replicas.values()]
            bars = ax.bar(labels, values, color="#1f77b4")
            for bar, r in zip(bars, replicas.values()):
                ax.annotate(f"{spread(r['engines_serving'])} engine(s)\n{r['peak_rss_mib'] / 1024:.1f} GiB peak",
                            (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
            ax.set_ylabel("rollout tokens/s (median)")
            ax.set_ylim(0, max(values) * 1.25)
            ax.set_title(f"rollout with replicas, same {os.cpu_count()} cores")
        else:
            for pods, marker in ((1, "o"), (2, "s")):
                runs = accuracy[pods]
                ax.scatter([r["seed"] for r in runs], [r["accuracy_after"] for r in runs], marker=marker,
                           label=f"{pods} pod(s): after")
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
    parser.add_argument("--only", choices=("pods", "replicas"), help="run one comparison (default: both)")
    parser.add_argument("--iterations", type=int, default=6, help="iterations of the timing runs")
    parser.add_argument("--replicas", type=int, nargs="+", default=[0, 1, 2], help="rollout replica counts to compare")
    parser.add_argument("--seeds", type=int, default=0, help="also compare one pod's accuracy against two's over this many seeds")
    parser.add_argument("--accuracy-iterations", type=int, default=30)
    parser.add_argument("--out", default="runs/bench-scale")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    timing, replicas, accuracy = {}, {}, {}
    if args.only != "replicas":
        timing = {pods: pod_timing(pods, args.iterations, 0, out) for pods in (1, 2)}
    if args.only != "pods":
        replicas = {n: replica_rollout(n, args.iterations, out) for n in sorted(set(args.replicas))}
    if timing:
        print_pods(timing[1], timing[2], args.iterations)
    if replicas:
        print_replicas(replicas, args.iterations)

    if args.seeds and args.only != "replicas":
        accuracy = {pods: [pod_timing(pods, args.accuracy_iterations, seed, out) for seed in range(1, args.seeds + 1)]
                    for pods in (1, 2)}
        print(f"\nheld-out accuracy (sampled) after {args.accuracy_iterations} iterations:")
        for pods in (1, 2):
            runs = accuracy[pods]
            pairs = ", ".join(f"seed {r['seed']}: {r['accuracy_before']:.3f} -> {r['accuracy_after']:.3f}" for r in runs)
            print(f"  {pods} pod(s): {pairs}; mean after {statistics.fmean(r['accuracy_after'] for r in runs):.3f}")
    (out / "scale.json").write_text(json.dumps({"timing": timing, "replicas": replicas, "accuracy": accuracy}, indent=2))
    plot(timing, replicas, accuracy, out / "scale.png")
    print(f"wrote {out / 'scale.json'} and {out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
