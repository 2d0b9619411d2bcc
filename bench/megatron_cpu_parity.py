"""The Megatron backend against the torch backend on the CPU, per parallel layout (`make bench-megatron-cpu`).

The cases of tests/trainer/test_megatron_cpu.py, timed and printed side by side: for each
layout, the largest per-token log-prob, per-step loss and post-training weight differences
from the torch backend on the same tiny HF model and samples, and the seconds each
backend's ranks took (process start and Megatron's import included).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))  # the cases' rank runner

from megatron_cases import case_spec, max_difference, run_case, tiny_model  # noqa: E402

SGD = {"optimizer": {"name": "sgd", "learningRate": 0.5, "distributed": False}}
ADAM = {"optimizer": {"name": "adamw", "learningRate": 0.01}}
CASES = [  # name, model, trainer fields, ranks, dtype
    ("TP=2", "llama", {"tensorParallel": 2, **SGD}, 2, "float32"),
    ("PP=2, smaller last micro-batch", "qwen2", {"pipelineParallel": 2, **SGD}, 2, "float32"),
    ("DP=2", "llama", SGD, 2, "float32"),
    ("TP=2 x PP=2", "qwen2", {"tensorParallel": 2, "pipelineParallel": 2, **SGD}, 4, "float32"),
    ("Adam, distributed optimizer, DP=2", "llama", ADAM, 2, "float32"),
    ("Adam, no distributed optimizer", "llama", {"optimizer": dict(ADAM["optimizer"], distributed=False)}, 1, "float32"),
    ("TP=2, bf16", "llama", {"tensorParallel": 2, **SGD}, 2, "bfloat16"),
    ("EP=2, Qwen3-MoE (4 experts, top 2)", "qwen3_moe", {"expertParallel": 2, **SGD}, 2, "float32"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="")
    ap.add_argument("--job-iterations", type=int, default=20,
                    help="also run the tiny job this many iterations with each backend (0: skip)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {kind: tiny_model(work / kind, kind) for kind in ("llama", "qwen2", "qwen3_moe")}
        print(f"{'layout':36} {'ranks':>5} {'log-prob':>9} {'loss':>9} {'weights':>9} {'torch s':>8} {'megatron s':>10}")
        for index, (name, kind, trainer, world, dtype) in enumerate(CASES):
            spec = case_spec(trainer, dtype)
            started = time.perf_counter()
            reference = run_case(work / f"{index}-torch", models[kind], "torch", spec)
            middle = time.perf_counter()
            megatron = run_case(work / f"{index}-megatron", models[kind], "megatron", spec, world=world)
            done = time.perf_counter()
            diff = max_difference(reference, megatron)
            rows.append({"layout": name, "model": kind, "dtype": dtype, "ranks": world, **diff,
                         "torch_seconds": middle - started, "megatron_seconds": done - middle})
            print(f"{name:36} {world:5d} {diff['logprob']:9.1e} {diff['loss']:9.1e} {diff['weight']:9.1e} "
                  f"{middle - started:8.1f} {done - middle:10.1f}", flush=True)
    if args.job_iterations:
        rows += learning(args.job_iterations)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


def learning(iterations: int) -> list[dict]:
    """The tiny job with each backend (Megatron at TP=2 on two ranks): held-out accuracy
    before and after, side by side. Sampled batches differ between runs, so the two
    curves agree in trend, not to the digit."""
    import os
    import subprocess

    import yaml

    root = Path(__file__).resolve().parents[1]
    rows = []
    print(f"\nthe tiny job, {iterations} iterations: held-out greedy accuracy before -> after")
    with tempfile.TemporaryDirectory() as tmp:
        for backend, ranks, trainer in (("torch", 1, {}), ("megatron", 2, {"tensorParallel": 2})):
            manifest = yaml.safe_load((root / "examples" / "tiny-reverse.yaml").read_text())
            manifest["spec"]["trainer"].update(backend=backend, **trainer)
            manifest["spec"]["rl"]["iterations"] = iterations
            job = Path(tmp) / f"{backend}.yaml"
            job.write_text(yaml.safe_dump(manifest))
            summary_path = Path(tmp) / f"{backend}-summary.json"
            started = time.perf_counter()
            subprocess.run([str(Path(sys.executable).parent / "seesaw"), "run", str(job), "--workdir", str(Path(tmp) / "runs"),
                            "--summary-json", str(summary_path)], check=True, capture_output=True, text=True,
                           env=dict(os.environ, SEESAW_TRAINER_PROCESSES=str(ranks)))
            summary = json.loads(summary_path.read_text())
            row = {"job_backend": backend, "layout": summary["trainer"], "iterations": iterations,
                   "greedy_before": summary["greedy_accuracy_before"], "greedy_after": summary["greedy_accuracy_after"],
                   "sampled_before": summary["accuracy_before"], "sampled_after": summary["accuracy_after"],
                   "seconds": time.perf_counter() - started}
            rows.append(row)
            print(f"{backend:9} greedy {row['greedy_before']:.3f} -> {row['greedy_after']:.3f}   sampled "
                  f"{row['sampled_before']:.3f} -> {row['sampled_after']:.3f}   {row['seconds']:.0f} s", flush=True)
    return rows


if __name__ == "__main__":
    main()
