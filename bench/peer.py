"""Seesaw against TRL's GRPOTrainer on the same RL job, on this machine, in one run.

The job is the demo (examples/tiny-reverse.yaml, or --job), or with --real the SmolLM2 job of
`make bench-real` (SmolLM2-135M-Instruct, examples/smollm2-math.yaml with bench/real_model.py's
settings and one-digit prompts): the same model (and SFT warm-up, for a generated one), training
prompts in the same text (the chat template where the model has one), prompts per iteration,
samples per prompt, maximum tokens, temperature, learning rate, optimiser steps per iteration
and iterations (by default the job's), and the same reward: TRL's process asks Seesaw's own
scoring for it (bench/peer_reward.py), as its environment lacks the math verifier. Seesaw
runs it with `seesaw run`; TRL runs it in its own virtual environment (bench/peer_trl.py;
`make trl-venv` builds the environment). The two sides alternate, round by round, so drift of
the machine hits both alike. Both trained models are then scored by one evaluator on the
held-out prompts, greedy and sampled at the job's temperature, scored by the job's verifier,
so neither side's own evaluation decides: Hugging Face generate for the demo, and for --real
bench-real's evaluation (vLLM built as the rollout's, in a process of its own, 4 samples a
prompt), as Hugging Face generate had not finished one model's 32 x 9 responses after 18
minutes here.

Both sides train and generate in the job's dtype (spec.model.dtype). Each side's loss is its
own: Seesaw's Kimi k1.5 mirror-descent loss (tau, mean-reward baseline), TRL's GRPO defaults
(its loss_type and beta are printed).

Prints the CPU and its instruction sets that vLLM's CPU build dispatches on, median wall
seconds per iteration (whole, and its rollout = generation with reward scoring, train and
weight-sync parts; the rest is each loop's own time), held-out accuracy, and the TRL/Seesaw
ratios; writes peer.json and peer.png to --out (runs/bench-peer, runs/bench-peer-real with
--real). Each side's output goes to a log file in --out; a side that fails stops the bench
with one line naming the side, the cause and the log.

Usage: python bench/peer.py --trl-python "$(tools/trl_venv.sh)/bin/python" [--iterations N] [--rounds 3] [--vllm]
    [--job examples/tiny-reverse.yaml | --real] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import real_model
from seesaw.model.sources import prepare_model
from seesaw.model.prompt import PromptFormat, encode_prompt, prompt_text
from seesaw.spec import load_manifest
from seesaw.tasks import Task, load_task

ROOT = Path(__file__).resolve().parents[1]
SEESAW = str(Path(sys.executable).parent / "seesaw")
JOB = ROOT / "examples" / "tiny-reverse.yaml"
OUT = ROOT / "runs" / "bench-peer"
OUT_REAL = ROOT / "runs" / "bench-peer-real"
PHASES = ("rollout", "train", "sync")
EVAL_SAMPLES = 8
# /proc/cpuinfo flags that decide vLLM's CPU kernels: its AVX2 or AVX-512 build, bfloat16 and
# VNNI GEMMs, and the AMX path that repacks linear weights
VLLM_CPU_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                  "amx_tile", "amx_bf16", "amx_int8", "amx_fp16")
EXCEPTION_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Exit|Interrupt)(: |$)")


class SideFailed(SystemExit):
    """One side of the bench could not run: its name, the cause and where its full log is."""

    def __init__(self, side: str, cause: str, log: Path) -> None:
        super().__init__(f"{side} side failed: {cause} (full log: {log})")


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """This CPU's model name and which of VLLM_CPU_FLAGS it has."""
    fields: dict[str, str] = {}
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name", "unknown"),
            "flags": [f for f in VLLM_CPU_FLAGS if f in flags], "missing": [f for f in VLLM_CPU_FLAGS if f not in flags]}


def cause_of(log: str, returncode: int) -> str:
    """The last exception line of a failed run's log, else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    raised = [line for line in lines if EXCEPTION_LINE.match(line)]
    if raised:
        return raised[-1]
    return lines[-1] if lines else f"exit status {returncode}, no output"


def write_prompts(task: Task, tokenizer, form: PromptFormat, path: Path) -> None:
    """The training prompts for TRL: each one's index (the reward server's name for it), its
    text and the ids Seesaw feeds, which TRL checks its tokenization of the text against."""
    with path.open("w") as out:
        for index, problem in enumerate(task.train):
            out.write(json.dumps({"index": index, "text": prompt_text(tokenizer, problem.prompt, form),
                                  "prompt_ids": encode_prompt(tokenizer, problem.prompt, form)}) + "\n")


@torch.no_grad()
def held_out_accuracy(model_dir: str | Path, task: Task, form: PromptFormat, max_tokens: int, temperature: float,
                      seed: int) -> dict[str, float]:
    """Greedy and sampled accuracy on the held-out prompts with Hugging Face generate, scored by
    the job's verifier: one evaluator for both sides."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    problems = task.eval
    prompts = [encode_prompt(tokenizer, p.prompt, form) for p in problems]
    width = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    result = {}
    for name, k, sampling in (("greedy", 1, {"do_sample": False}),
                              ("sampled", EVAL_SAMPLES, {"do_sample": True, "temperature": temperature, "top_k": 0,
                                                         "top_p": 1.0})):
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_tokens, num_return_sequences=k,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling)
        texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        scores = [task.score(text, problems[i // k]) for i, text in enumerate(texts)]
        result[name] = sum(scores) / len(scores)
    return result


def vllm_held_out_accuracy(model_dir: str | Path, spec: dict, seed: int, out: Path) -> dict[str, float]:
    """Greedy and sampled accuracy on the held-out prompts by bench-real's evaluation part: one
    evaluator for both sides, its request, answer and log in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    result = real_model.in_own_process("vllm-evaluation", {"spec": spec, "model_dir": str(model_dir), "seed": seed,
                                                           "repeats": 1}, out)
    return {"greedy": result["greedy"]["accuracy"], "sampled": result["sampled"][0]["accuracy"]}


def run_seesaw(job: Path, iterations: int, seed: int, workdir: Path) -> dict:
    summary_path = workdir / f"seesaw-summary-{seed}.json"
    log = workdir / f"seesaw-{seed}.log"
    started = time.perf_counter()
    done = subprocess.run([SEESAW, "run", str(job), "--iterations", str(iterations), "--seed", str(seed),
                           "--workdir", str(workdir), "--summary-json", str(summary_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write_text(done.stdout)
    if done.returncode:
        raise SideFailed("Seesaw", cause_of(done.stdout, done.returncode), log)
    summary = json.loads(summary_path.read_text())
    run_dir = Path(summary["exported_model"]).parents[2]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"model": summary["exported_model"], "wall_seconds": time.perf_counter() - started,
            # rollout: generation and the verifier's scoring, as TRL's generation step has both
            "iterations": [{"rollout_seconds": m["rollout_seconds"] + m["scoring_seconds"], "train_seconds": m["train_seconds"],
                            "sync_seconds": m["sync_seconds"], "iteration_seconds": m["iteration_seconds"]}
                           for m in metrics],
            "own_eval": {"sampled": summary["accuracy_after"], "greedy": summary["greedy_accuracy_after"]}}


def run_trl(trl_python: str, job: Path, spec: dict, model_dir: Path, prompts: Path, iterations: int, seed: int,
            out: Path, vllm: bool) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    log = out / "trl.log"
    rl, rollout = spec["rl"], spec["rollout"]
    reward_server = [sys.executable, str(ROOT / "bench" / "peer_reward.py"), "--job", str(job),
                     "--model", str(model_dir)]
    argv = [trl_python, str(ROOT / "bench" / "peer_trl.py"), "--model", str(model_dir), "--prompts", str(prompts),
            "--reward-command", json.dumps(reward_server),
            "--out", str(out), "--iterations", str(iterations), "--seed", str(seed),
            "--prompts-per-iteration", str(rl["promptsPerIteration"]), "--samples", str(rollout["samplesPerPrompt"]),
            "--mini-batch-prompts", str(rl["miniBatchPrompts"]), "--micro-batch", str(spec["trainer"]["microBatchSize"]),
            "--learning-rate", str(spec["trainer"]["optimizer"]["learningRate"]),
            "--max-tokens", str(rollout["maxTokens"]), "--temperature", str(rollout["temperature"]),
            "--max-model-len", str(rollout["maxModelLen"]), "--kv-cache-gib", str(rollout["cpuKVCacheGiB"]),
            "--dtype", spec["model"]["dtype"]]
    # vLLM's CPU build pins the process's OpenMP threads to cores; colocated in TRL's
    # process that pins the trainer's threads too (train steps 3-4x slower here). Seesaw's
    # engines run unpinned where they share cores (seesaw/local/runner.py): the same for TRL.
    env = dict(os.environ, VLLM_CPU_OMP_THREADS_BIND="nobind") if vllm else None
    started = time.perf_counter()
    done = subprocess.run(argv + (["--vllm"] if vllm else []), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=env)
    log.write_text(done.stdout)
    if done.returncode:
        failure = out / "failure.txt"
        raise SideFailed("TRL", failure.read_text() if failure.exists() else cause_of(done.stdout, done.returncode), log)
    timings = json.loads((out / "timings.json").read_text())
    return dict(timings, model=str(out / "model"), wall_seconds=time.perf_counter() - started)


def per_iteration(runs: list[dict]) -> dict[str, float]:
    """Median seconds of each phase over every round's iterations after the first (warm-up)."""
    rows = [it for run in runs for it in run["iterations"][1:]]
    medians = {p: statistics.median(it[f"{p}_seconds"] for it in rows) for p in PHASES}
    medians["iteration"] = statistics.median(it["iteration_seconds"] for it in rows)
    return medians


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = list(summary)
    fig, (speed, accuracy) = plt.subplots(1, 2, figsize=(10, 4))
    bottom = [0.0] * len(sides)
    for phase in PHASES + ("rest of the loop",):
        values = [summary[s]["seconds"][phase] if phase in PHASES
                  else max(0.0, summary[s]["seconds"]["iteration"] - b) for s, b in zip(sides, bottom)]
        speed.bar(sides, values, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, values)]
    speed.set_ylabel("median seconds per iteration")
    speed.legend()
    width = 0.35
    for offset, name in ((-width / 2, "greedy"), (width / 2, "sampled")):
        accuracy.bar([i + offset for i in range(len(sides))], [summary[s]["accuracy"][name] for s in sides], width,
                     label=name)
    accuracy.axhline(summary[sides[0]]["accuracy_before"]["sampled"], color="grey", linestyle=":", label="before RL (sampled)")
    accuracy.set_xticks(range(len(sides)), sides)
    accuracy.set_ylabel("held-out accuracy (one evaluator)")
    accuracy.set_ylim(0, 1)
    accuracy.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trl-python", required=True, help="the python of TRL's virtual environment")
    parser.add_argument("--iterations", type=int, help="iterations a round (default: the job's spec.rl.iterations)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--vllm", action="store_true", help="TRL generates with vLLM in colocate mode")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--job", type=Path, default=JOB, help="the RLJob manifest both sides run")
    which.add_argument("--real", action="store_true",
                       help="the SmolLM2 job of make bench-real (bench/real_model.py's SETTINGS and write_job)")
    parser.add_argument("--out", type=Path, help="where logs, peer.json and peer.png go "
                                                 "(default runs/bench-peer, runs/bench-peer-real with --real)")
    args = parser.parse_args()
    if args.iterations is not None and args.iterations < 2:
        parser.error("--iterations must be at least 2: the first iteration is the warm-up, left out of the medians")
    if not Path(args.trl_python).exists():
        raise SystemExit(f"TRL side cannot run: no python at {args.trl_python} (make trl-venv builds TRL's environment)")
    out = (args.out or (OUT_REAL if args.real else OUT)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cpu = cpu_description()
    print(f"CPU: {cpu['model']}; vLLM's instruction sets: {' '.join(cpu['flags']) or 'none'} "
          f"(not: {' '.join(cpu['missing']) or 'none'})", flush=True)
    if args.real:
        job, spec = real_model.write_job(real_model.JOB, real_model.SETTINGS, out)
        job_name = f"{real_model.JOB.name} with bench-real's settings"
    else:
        job, spec, job_name = args.job, load_manifest(args.job)["spec"], args.job.name
    iterations = args.iterations or spec["rl"]["iterations"]
    task, form = load_task(spec), PromptFormat.from_spec(spec)
    # the models cache seesaw run reads: both sides start from one model directory
    model_dir = prepare_model(spec, task, log=lambda line: print(line, flush=True))
    prompts = out / "train-prompts.jsonl"
    write_prompts(task, AutoTokenizer.from_pretrained(model_dir), form, prompts)
    rollout = spec["rollout"]

    def evaluate(model: str | Path, seed: int, name: str) -> dict[str, float]:
        if args.real:
            return vllm_held_out_accuracy(model, spec, seed, out / f"eval-{name}")
        return held_out_accuracy(model, task, form, rollout["maxTokens"], rollout["temperature"], seed)

    before = evaluate(model_dir, 0, "before")
    runs: dict[str, list[dict]] = {"Seesaw": [], "TRL": []}
    for round_ in range(args.rounds):
        seed = round_ + 1
        print(f"round {round_ + 1}/{args.rounds}: Seesaw ...", flush=True)
        runs["Seesaw"].append(run_seesaw(job, iterations, seed, out))
        print(f"round {round_ + 1}/{args.rounds}: TRL ...", flush=True)
        runs["TRL"].append(run_trl(args.trl_python, job, spec, model_dir, prompts, iterations, seed,
                                   out / f"trl-{seed}", args.vllm))
        for side in runs:
            runs[side][-1]["accuracy"] = evaluate(runs[side][-1]["model"], seed, f"{side}-{seed}")
            print(f"  {side}: {runs[side][-1]['wall_seconds']:.0f}s, held-out {runs[side][-1]['accuracy']}", flush=True)

    summary = {side: {"seconds": per_iteration(side_runs),
                      "accuracy": {k: statistics.fmean(r["accuracy"][k] for r in side_runs) for k in ("greedy", "sampled")},
                      "accuracy_by_round": [r["accuracy"] for r in side_runs],
                      "wall_seconds": [r["wall_seconds"] for r in side_runs],
                      "accuracy_before": before}
               for side, side_runs in runs.items()}
    trl = runs["TRL"][0]
    print(f"\n{job_name}, {iterations} iterations x {args.rounds} rounds; TRL {trl['generation']}, "
          f"loss_type {trl['loss_type']}, beta {trl['beta']}; held-out accuracy before RL: "
          f"{before['greedy']:.3f} greedy, {before['sampled']:.3f} sampled")
    print(f"{'':8s} {'rollout':>8s} {'train':>8s} {'sync':>8s} {'iteration':>10s}   held-out greedy / sampled   wall (s)")
    for side, row in summary.items():
        s, a = row["seconds"], row["accuracy"]
        print(f"{side:8s} {s['rollout']:8.3f} {s['train']:8.3f} {s['sync']:8.3f} {s['iteration']:10.3f}   "
              f"{a['greedy']:.3f} / {a['sampled']:.3f}{'':15s}{statistics.median(row['wall_seconds']):.0f}")
    if trl["probe_logp_gap"] is not None:
        print(f"TRL's vLLM against its trainer after the last sync: max |dlogp| {trl['probe_logp_gap']:.2e} "
              f"on the first {trl['probe_prompts']} training prompts")
    ratios = {k: summary["TRL"]["seconds"][k] / max(summary["Seesaw"]["seconds"][k], 1e-9) for k in ("rollout", "train", "iteration")}
    print("TRL / Seesaw seconds: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    (out / "peer.json").write_text(json.dumps({"cpu": cpu, "job": str(job), "summary": summary, "ratios": ratios,
                                               "runs": runs}, indent=1))
    plot(summary, out / "peer.png")
    print(f"wrote {out / 'peer.json'} and {out / 'peer.png'}")


if __name__ == "__main__":
    main()
