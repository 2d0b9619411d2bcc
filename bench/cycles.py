"""Memory across phase cycles on the CPU: 50 weight syncs into the live vLLM engine and 50
trainer offload/onload cycles, resident memory of each container after a warm-up.

Peers leak here (memory that grows after every sleep/wake or weight update); the goal is
under 2 % growth in all over 50 cycles. Prints the growth per cycle and in all, writes
runs/bench-cycles/cycles.{json,png}.

Usage: python bench/cycles.py [--cycles 50] [--warmup 5] [--out runs/bench-cycles]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from phase_cycles import MiB, run_cycles  # noqa: E402
from pod_helpers import make_tiny_model, start_pod, wait_ready  # noqa: E402

GOAL = 0.02


class _Factory:
    """tmp_path_factory's one method, outside pytest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=name, dir=self.root))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name in ("trainer", "rollout"):
        base = result[name]["baseline_bytes"]
        ax.plot([100 * (b - base) / base for b in result[name]["series_bytes"]], label=name)
    ax.axhline(100 * GOAL, color="red", linestyle="--", label="goal (2 %)")
    ax.set_xlabel("cycle after warm-up")
    ax.set_ylabel("resident memory growth (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", default="runs/bench-cycles")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        manifest, model_dir = make_tiny_model(_Factory(Path(scratch)))
        pod, clients = start_pod(manifest, model_dir, Path(tempfile.mkdtemp(dir=scratch)))
        try:
            wait_ready(pod, clients, timeout=600)
            result = run_cycles(pod, clients["trainer"], clients["rollout"], args.cycles, args.warmup,
                                progress=lambda line: print(line, flush=True))
        finally:
            pod.stop()
    print(f"{args.cycles} cycles after {args.warmup} warm-up, {result['seconds_per_cycle']:.3f}s each")
    ok = True
    for name in ("trainer", "rollout"):
        r = result[name]
        ok &= r["growth"] < GOAL
        print(f"{name:8s} {r['baseline_bytes'] / MiB:8.1f} -> {r['final_bytes'] / MiB:8.1f} MiB: "
              f"{r['growth']:+.2%} in all, {r['growth_per_cycle']:+.4%} per cycle "
              f"({r['growth'] / GOAL:.2f} of the {GOAL:.0%} goal)")
    (out / "cycles.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "cycles.png")
    print(f"wrote {out / 'cycles.json'} and {out / 'cycles.png'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
