"""A real pretrained model under `seesaw run`, against its base model's noise and against bare floors.

The job is examples/smollm2-math.yaml (SmolLM2-135M-Instruct on one- and two-digit word
problems, where the base model is right sometimes) with the settings below, declared and
printed before anything runs. In one run of this bench:

1. the base model's held-out accuracy spread: `--eval-repeats` sampled evaluations of the
   base model on the job's held-out prompts (vLLM, the rollout's sampling settings,
   EVAL_SAMPLES samples a prompt, as the job's own evaluation), and one greedy;
2. the RL job with `seesaw run --keep-first-batch`, its memory sampled (the largest sum of
   the resident memory of its processes); its own held-out evaluation after RL is the "after";
   a gain counts only where it exceeds the base model's spread (max - min over the repeats
   and the job's own evaluation before RL);
3. the floors, each best of `--floor-repeats`, in processes of their own with the threads
   and dtype the job's workers had: a bare PyTorch forward and backward over exactly the
   tokens the trainer trained on in iteration 1 (first-batch.json: the same micro-batches,
   padding and order), the trainer's own train step replayed on that batch outside the job,
   and a bare vLLM generate of iteration 1's prompts with the rollout's sampling settings,
   on an engine built as the rollout's (seesaw.rollout.cpu_backend);
4. the table: accuracy before and after and whether the gain exceeds the spread, mean
   response tokens, the fraction cut at maxTokens, seconds per phase, train / its floor,
   rollout / its floor, iteration / (sum of the floors), peak memory. Iteration 1 trained
   on exactly the floors' tokens; the median over later iterations is shown beside it.

Writes real_model.json and real_model.png to --out (runs/bench-real).

Usage: python bench/real_model.py [--iterations 12] [--prompts 8] [--samples 4] [--max-tokens 64]
    [--learning-rate 3e-5] [--tau 0.1] [--eval-prompts 32] [--eval-repeats 4] [--floor-repeats 3]
    [--job examples/smollm2-math.yaml] [--out runs/bench-real]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from seesaw import pod_contract

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SEESAW = str(Path(sys.executable).parent / "seesaw")
JOB = ROOT / "examples" / "smollm2-math.yaml"
OUT = ROOT / "runs" / "bench-real"
PHASES = ("rollout", "train", "sync")

# The settings of a full run (about 40 minutes on 2 quiet cores): the example's learning rate and
# tau; its one-digit problems only (difficulty 1: the base model is right on 12-16 % of its samples
# at T = 1, against 0-3 % over the whole set, where most groups' rewards were all 0 and gave no
# gradient), and 8 samples a prompt, so that most groups hold a right and a wrong answer
# (1 - 0.86^8 = 70 %); 4 prompts keep the batch at the example's 32 samples.
SETTINGS = {"iterations": 12, "prompts": 4, "samples": 8, "max_tokens": 64, "learning_rate": 3e-5, "tau": 0.1,
            "max_difficulty": 1.0, "eval_prompts": 32, "eval_repeats": 4, "floor_repeats": 3}


# --- the job -------------------------------------------------------------------------------
def write_job(job: Path, settings: dict[str, Any], out: Path) -> tuple[Path, dict[str, Any]]:
    """The example with the bench's settings, defaulted as `seesaw run` reads it; its prompts
    those of the example's file up to the settings' difficulty (out/prompts.jsonl)."""
    from seesaw.local.paths import manifest_folder, resolve_paths
    from seesaw.spec import load_manifest

    manifest = load_manifest(job)
    spec = manifest["spec"]
    resolve_paths(spec, manifest_folder(str(job)))  # the copy lies elsewhere
    rows = [json.loads(line) for line in Path(spec["prompts"]["source"]).read_text().splitlines() if line.strip()]
    kept = [row for row in rows if float(row.get("difficulty", 0.0)) <= settings["max_difficulty"]]
    if not kept:
        raise SystemExit(f"--max-difficulty {settings['max_difficulty']}: none of the {len(rows)} prompts of "
                         f"{spec['prompts']['source']} is that easy")
    prompts = out / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in kept))
    spec["prompts"]["source"] = str(prompts)
    spec["rl"].update(iterations=settings["iterations"], promptsPerIteration=settings["prompts"],
                      miniBatchPrompts=settings["prompts"], tau=settings["tau"])
    spec["rl"]["evaluation"].update(prompts=settings["eval_prompts"], everyIterations=0)
    spec["rollout"].update(samplesPerPrompt=settings["samples"], maxTokens=settings["max_tokens"])
    spec["trainer"]["optimizer"]["learningRate"] = settings["learning_rate"]
    spec["checkpoint"]["everyIterations"] = 0
    path = out / "job.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path, spec


def watch(root: psutil.Process, stop: threading.Event, peak: list[int]) -> None:
    """Until `stop`: the peak of the summed resident memory of `root` and its descendants."""
    while not stop.is_set():
        total = 0
        try:
            for process in [root, *root.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
        except psutil.NoSuchProcess:
            return
        peak[0] = max(peak[0], total)
        time.sleep(0.2)


class OtherWork:
    """How many cores other work kept busy while a part ran: the machine's busy CPU time less
    this bench's own and its children's (the job's processes, the measuring parts), over the
    wall time. A part measured beside other work was slowed by it, its ratios with it."""

    @staticmethod
    def _cpu() -> tuple[float, float]:
        times = psutil.cpu_times()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = resource.getrusage(resource.RUSAGE_SELF)
        return busy, children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime

    def __enter__(self) -> "OtherWork":
        self._started, (self._busy, self._ours) = time.monotonic(), self._cpu()
        return self

    def __exit__(self, *_: Any) -> None:
        busy, ours = self._cpu()
        wall = time.monotonic() - self._started
        self.cores = max(0.0, (busy - self._busy) - (ours - self._ours)) / max(wall, 1e-9)


def run_job(job: Path, out: Path, seed: int) -> dict[str, Any]:
    """`seesaw run --keep-first-batch`: its summary, metrics, run dir, wall seconds and peak memory."""
    summary_path, log = out / "summary.json", out / "seesaw.log"
    started = time.monotonic()
    process = subprocess.Popen([SEESAW, "run", str(job), "--workdir", str(out / "runs"), "--seed", str(seed),
                                "--keep-first-batch", "--summary-json", str(summary_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=out)
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=watch, args=(psutil.Process(process.pid), stop, peak), daemon=True)
    sampler.start()
    run_dir = None
    with log.open("w") as saved:
        for line in process.stdout:
            saved.write(line)
            if line.startswith("job ") and " run dir " in line:
                run_dir = Path(line.rstrip().rsplit(" run dir ", 1)[1])
            if line.startswith(("iter ", "held-out", "FAILED", "initial weight sync")):
                print(f"  [seesaw run] {line.rstrip()}", flush=True)
    code = process.wait()
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"seesaw run failed with exit code {code}; its log: {log}")
    run_dir = run_dir if run_dir.is_absolute() else out / run_dir
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"summary": json.loads(summary_path.read_text()), "metrics": metrics, "run_dir": str(run_dir),
            "wall_seconds": time.monotonic() - started, "peak_rss_bytes": peak[0]}


def in_own_process(part: str, payload: dict[str, Any], out: Path) -> dict[str, Any]:
    """One measuring part (a vLLM engine, or a PyTorch trainer) in a fresh process, as the
    job's workers are: its threads and memory are its own."""
    request, answer = out / f"{part}.request.json", out / f"{part}.json"
    request.write_text(json.dumps(payload))
    log = out / f"{part}.log"
    with log.open("w") as saved:
        done = subprocess.run([sys.executable, __file__, "--part", part, "--part-input", str(request),
                               "--part-output", str(answer)], stdout=saved, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"{part} failed (exit code {done.returncode}); its log: {log}\n" + "\n".join(tail))
    return json.loads(answer.read_text())


# --- the parts, each in its own process ---------------------------------------------------
def vllm_evaluation(request: dict[str, Any]) -> dict[str, Any]:
    """The base model's held-out accuracy: greedy once, sampled `repeats` times (each pass
    draws fresh samples: the engine's generator runs on between passes)."""
    from transformers import AutoTokenizer

    from seesaw.checkpoint_engine.iteration_metrics import EVAL_SAMPLES
    from seesaw.checkpoint_engine.scoring import score_items
    from seesaw.model.prompt import PromptFormat, encode_prompt
    from seesaw.rollout.cpu_backend import VLLMCPURollout
    from seesaw.tasks import load_task

    spec, rollout = request["spec"], request["spec"]["rollout"]
    task = load_task(spec)
    tokenizer = AutoTokenizer.from_pretrained(request["model_dir"])
    prompts = [encode_prompt(tokenizer, p.prompt, PromptFormat.from_spec(spec)) for p in task.eval]
    engine = VLLMCPURollout(request["model_dir"], spec, seed=request["seed"], load_format="auto")

    def one_pass(samples: int, temperature: float) -> dict[str, float]:
        generated = engine.generate(prompts, samples, temperature, rollout["maxTokens"], rollout["topP"], rollout["topK"],
                                    rollout["stop"])
        scores = score_items(task, tokenizer, "eval", [[s.prompt_index, s.response_ids] for s in generated])
        return {"accuracy": statistics.fmean(scores), "mean_tokens": statistics.fmean(len(s.response_ids) for s in generated),
                "cut_fraction": statistics.fmean(not s.finished for s in generated)}

    greedy = one_pass(1, 0.0)
    sampled = [one_pass(EVAL_SAMPLES, rollout["temperature"]) for _ in range(request["repeats"])]
    return {"greedy": greedy, "sampled": sampled, "prompts": len(prompts), "samples_per_prompt": EVAL_SAMPLES}


def vllm_floor(request: dict[str, Any]) -> dict[str, Any]:
    """Seconds of a bare vLLM generate of iteration 1's prompts with the rollout's sampling
    settings, best of `repeats`, on an engine built as the rollout's (its own weights loaded)."""
    from vllm.inputs import TokensPrompt

    from seesaw.rollout.cpu_backend import VLLMCPURollout, sampling_params

    spec, rollout = request["spec"], request["spec"]["rollout"]
    engine = VLLMCPURollout(request["model_dir"], spec, seed=request["seed"], load_format="auto")
    params = sampling_params(rollout["samplesPerPrompt"], rollout["temperature"], rollout["maxTokens"], rollout["topP"],
                             rollout["topK"], rollout["stop"])
    prompts = [TokensPrompt(prompt_token_ids=p) for p in request["prompt_ids"]]
    engine.llm.generate(prompts[:1], params, use_tqdm=False)  # warm-up, as the job's first sync and evaluation are
    runs = []
    for _ in range(request["repeats"]):
        started = time.perf_counter()
        outputs = engine.llm.generate(prompts, params, use_tqdm=False)
        runs.append({"seconds": time.perf_counter() - started,
                     "tokens": sum(len(c.token_ids) for o in outputs for c in o.outputs)})
    best = min(runs, key=lambda run: run["seconds"])
    return {"seconds": best["seconds"], "tokens": best["tokens"], "runs": runs}


def torch_floors(request: dict[str, Any]) -> dict[str, Any]:
    """Best-of-`repeats` seconds of (a) a bare forward and backward over exactly iteration 1's
    trained tokens and (b) the trainer's own train step on that batch, with the threads and
    dtype the job's trainer had."""
    import torch

    from seesaw.interfaces import Sample, backend
    import seesaw.trainer  # noqa: F401  (registers the trainer backends)
    from seesaw.rl.training import train_iteration
    from seesaw.trainer.torch_backend import pad_batch

    spec = request["spec"]
    torch.set_num_threads(request["threads"])  # what the trainer server sets from the same environment
    samples = [Sample(**s) for s in request["samples"]]
    trainer = backend("trainer", "torch")(request["model_dir"], spec, device="cpu")
    model, micro_batch = trainer.model, spec["trainer"]["microBatchSize"]

    class BareForwardBackward:
        """The trainer's micro-batches (whole prompts, padded alike, in the loop's order):
        forward, every response token's log-prob, backward of their sum; nothing else."""

        def __init__(self) -> None:
            self.shapes: list[list[int]] = []

        def train_mini_batch(self, groups, prompt_weight, tau):
            per_micro = max(1, micro_batch // max(len(g) for g in groups))
            for start in range(0, len(groups), per_micro):
                chunk = [s for g in groups[start: start + per_micro] for s in g]
                ids = pad_batch([s.prompt_ids + s.response_ids for s in chunk], trainer.pad_id)
                self.shapes.append(list(ids.shape))
                logits = model(input_ids=ids).logits.float()
                logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
                mask = torch.zeros_like(logprobs)
                for i, s in enumerate(chunk):
                    mask[i, len(s.prompt_ids) - 1: len(s.prompt_ids) - 1 + len(s.response_ids)] = 1.0
                (logprobs * mask).sum().backward()
            return None

    def bare() -> tuple[float, list[list[int]]]:
        floor = BareForwardBackward()
        model.train()
        started = time.perf_counter()
        train_iteration(_IgnoreStats(floor), samples, spec["rl"], request["tau"], seed=0)
        seconds = time.perf_counter() - started
        model.zero_grad(set_to_none=True)
        model.eval()
        return seconds, floor.shapes

    bare_runs = [bare() for _ in range(request["repeats"])]
    shapes = bare_runs[0][1]
    real_tokens = sum(len(s.prompt_ids) + len(s.response_ids) for s in samples)
    step_runs = []
    for _ in range(request["repeats"]):
        trainer.steps = 0  # the run's iteration 1 shuffled its prompts with seed 0
        started = time.perf_counter()
        trainer.train_step(samples, tau=request["tau"])
        step_runs.append(time.perf_counter() - started)
    return {"forward_backward_seconds": min(s for s, _ in bare_runs), "forward_backward_runs": [s for s, _ in bare_runs],
            "train_step_seconds": min(step_runs), "train_step_runs": step_runs, "micro_batches": shapes,
            "padded_tokens": sum(b * w for b, w in shapes), "real_tokens": real_tokens, "threads": torch.get_num_threads()}


class _IgnoreStats:
    """train_iteration's loop around a floor that only computes: the statistics it expects, zero."""

    def __init__(self, floor: Any) -> None:
        self.floor = floor

    def train_mini_batch(self, groups, prompt_weight, tau):
        from seesaw.rl.training import MiniBatchStats

        self.floor.train_mini_batch(groups, prompt_weight, tau)
        return MiniBatchStats(loss=0.0, tokens=0, log_ratio=0.0, max_abs_logprob_diff=0.0, grad_norm=0.0)


PARTS = {"vllm-evaluation": vllm_evaluation, "vllm-floor": vllm_floor, "torch-floors": torch_floors}


# --- the result ---------------------------------------------------------------------------
def learning_verdict(base_sampled: list[float], after: float) -> dict[str, Any]:
    """The gain over the base model's mean, and whether it exceeds the base model's spread."""
    before = statistics.fmean(base_sampled)
    spread = max(base_sampled) - min(base_sampled)
    gain = after - before
    return {"before_mean": before, "before_min": min(base_sampled), "before_max": max(base_sampled), "spread": spread,
            "after": after, "gain": gain, "learned": gain > spread}


def phase_seconds(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    if not rows:
        return None
    seconds = {p: statistics.median(r[f"{p}_seconds"] for r in rows) for p in PHASES}
    seconds["scoring"] = statistics.median(r["scoring_seconds"] for r in rows)
    seconds["trainer_compute"] = statistics.median(r["trainer_compute_seconds"] for r in rows)
    seconds["iteration"] = statistics.median(r["iteration_seconds"] for r in rows)
    return seconds


def floor_ratios(seconds: dict[str, float], floors: dict[str, float]) -> dict[str, float]:
    return {"train": seconds["train"] / floors["train"], "rollout": seconds["rollout"] / floors["rollout"],
            "iteration": seconds["iteration"] / (floors["train"] + floors["rollout"])}


def summarise(settings: dict[str, Any], base: dict[str, Any], run: dict[str, Any], torch_part: dict[str, Any],
              vllm_part: dict[str, Any]) -> dict[str, Any]:
    summary, metrics = run["summary"], run["metrics"]
    base_sampled = [p["accuracy"] for p in base["sampled"]] + [summary["accuracy_before"]]
    floors = {"train": torch_part["forward_backward_seconds"], "rollout": vllm_part["seconds"],
              "train_step": torch_part["train_step_seconds"]}
    first, later = phase_seconds(metrics[:1]), phase_seconds(metrics[1:])
    return {
        "settings": settings,
        "accuracy": dict(learning_verdict(base_sampled, summary["accuracy_after"]),
                         base_repeats=base_sampled, greedy_before=base["greedy"]["accuracy"],
                         greedy_before_in_job=summary["greedy_accuracy_before"], greedy_after=summary["greedy_accuracy_after"]),
        "mean_response_tokens": statistics.fmean(m["mean_response_length"] for m in metrics),
        "cut_fraction": statistics.fmean(m["cut_fraction"] for m in metrics),
        "held_out_tokens": {"before": summary["mean_tokens_before"], "after": summary["mean_tokens_after"]},
        "held_out_cut_fraction_before": statistics.fmean(p["cut_fraction"] for p in base["sampled"]),
        "seconds": {"iteration_1": first, "later_median": later},
        "floors": floors,
        "floor_tokens": {"rollout_floor_generated": vllm_part["tokens"],
                         "rollout_iteration_1_generated": round(metrics[0]["rollout_tokens_per_second"]
                                                                * metrics[0]["rollout_seconds"]),
                         "train_padded": torch_part["padded_tokens"], "train_real": torch_part["real_tokens"],
                         "train_micro_batches": torch_part["micro_batches"]},
        "ratios": {"iteration_1": floor_ratios(first, floors), "later_median": floor_ratios(later, floors) if later else None},
        "probe_share_of_sync": statistics.fmean(m["probe_share_of_sync"] for m in metrics),
        "trainer_threads": torch_part["threads"],
        "peak_rss_gib": run["peak_rss_bytes"] / 2 ** 30,
        "job_wall_seconds": run["wall_seconds"],
        "run_dir": run["run_dir"],
    }


def table(result: dict[str, Any]) -> str:
    acc, sec, floors, ratios = result["accuracy"], result["seconds"], result["floors"], result["ratios"]
    lines = [
        f"held-out accuracy before (base, sampled, {len(acc['base_repeats'])} evaluations): mean {acc['before_mean']:.3f}, "
        f"min {acc['before_min']:.3f}, max {acc['before_max']:.3f}, spread {acc['spread']:.3f}; greedy {acc['greedy_before']:.3f}",
        f"held-out accuracy after RL (sampled): {acc['after']:.3f}; gain {acc['gain']:+.3f} "
        f"{'exceeds' if acc['learned'] else 'does not exceed'} the spread {acc['spread']:.3f}: "
        f"{'learned' if acc['learned'] else 'no gain beyond the base model noise'}; greedy {acc['greedy_after']:.3f} "
        f"(before, in the job: {acc['greedy_before_in_job']:.3f})",
        f"mean response tokens (training rollouts): {result['mean_response_tokens']:.1f}; "
        f"cut at maxTokens: {result['cut_fraction']:.2f}; held-out mean tokens before / after: "
        f"{result['held_out_tokens']['before']:.1f} / {result['held_out_tokens']['after']:.1f}",
        f"peak memory (all the job's processes): {result['peak_rss_gib']:.1f} GiB; job wall {result['job_wall_seconds']:.0f} s",
        "",
        f"{'seconds':24s} {'rollout':>8s} {'train':>8s} {'sync':>8s} {'iteration':>10s}",
    ]
    for label, key in (("iteration 1", "iteration_1"), ("median, iterations 2+", "later_median")):
        if sec[key]:
            s = sec[key]
            lines.append(f"{label:24s} {s['rollout']:8.2f} {s['train']:8.2f} {s['sync']:8.2f} {s['iteration']:10.2f}")
    lines.append(f"{'floors (best of repeats)':24s} {floors['rollout']:8.2f} {floors['train']:8.2f} {'':8s} "
                 f"{floors['rollout'] + floors['train']:10.2f}")
    lines.append(f"{'trainer step, replayed':24s} {'':8s} {floors['train_step']:8.2f}")
    lines.append("")
    lines.append(f"{'ratio to the floors':24s} {'rollout':>8s} {'train':>8s} {'':8s} {'iteration':>10s}")
    for label, key in (("iteration 1", "iteration_1"), ("median, iterations 2+", "later_median")):
        if ratios[key]:
            r = ratios[key]
            lines.append(f"{label:24s} {r['rollout']:7.2f}x {r['train']:7.2f}x {'':8s} {r['iteration']:9.2f}x")
    tokens = result["floor_tokens"]
    lines.append(f"train floor: {len(tokens['train_micro_batches'])} micro-batches {tokens['train_micro_batches']}, "
                 f"{tokens['train_padded']} padded tokens for {tokens['train_real']} real; "
                 f"{result['trainer_threads']} threads; the probe's share of the sync {result['probe_share_of_sync']:.2f}")
    other = result.get("other_work_cores")
    if other:
        lines.append(f"other work on this machine kept {other['job']:.2f} of its {other['cores']} cores busy during the "
                     f"job, {other['floors']:.2f} during the floors"
                     + (": the times are shared, the ratios rough" if max(other["job"], other["floors"]) > 0.25 else ""))
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, accuracy) = plt.subplots(1, 2, figsize=(11, 4))
    bars = {"floors": {"rollout": result["floors"]["rollout"], "train": result["floors"]["train"], "sync": 0.0}}
    for label, key in (("iteration 1", "iteration_1"), ("iterations 2+ (median)", "later_median")):
        if result["seconds"][key]:
            bars[label] = {p: result["seconds"][key][p] for p in PHASES}
    bottom = [0.0] * len(bars)
    for phase in PHASES:
        values = [b[phase] for b in bars.values()]
        speed.bar(list(bars), values, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, values)]
    speed.set_ylabel("seconds")
    speed.set_title("an iteration against its floors")
    speed.legend()
    acc = result["accuracy"]
    accuracy.scatter([0] * len(acc["base_repeats"]), acc["base_repeats"], label="base model, sampled (each evaluation)")
    accuracy.axhspan(acc["before_min"], acc["before_max"], color="grey", alpha=0.2, label="base spread")
    accuracy.scatter([1], [acc["after"]], color="C3", label="after RL, sampled")
    accuracy.scatter([0, 1], [acc["greedy_before"], acc["greedy_after"]], marker="x", color="k", label="greedy")
    accuracy.set_xticks([0, 1], ["base", f"after {result['settings']['iterations']} iterations"])
    accuracy.set_xlim(-0.5, 1.5)
    accuracy.set_ylabel("held-out accuracy")
    accuracy.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--job", type=Path, default=JOB, help="the RLJob the bench derives its job from")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seed", type=int, default=0)
    for name, value in SETTINGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)  # a measuring part's own process
    parser.add_argument("--part-input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--part-output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        args.part_output.write_text(json.dumps(PARTS[args.part](json.loads(args.part_input.read_text()))))
        return
    settings = {name: getattr(args, name) for name in SETTINGS}
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    job, spec = write_job(args.job, settings, out)
    print(f"bench-real: {args.job.name} with " + ", ".join(f"{k} {v}" for k, v in settings.items())
          + f"; seed {args.seed}; job {job}", flush=True)

    from seesaw.model.sources import prepare_model
    from seesaw.tasks import load_task

    model_dir = str(prepare_model(spec, load_task(spec), log=lambda line: print(line, flush=True)))
    started = time.monotonic()
    print(f"1/4 the base model's held-out accuracy, {settings['eval_repeats']} sampled evaluations ...", flush=True)
    base = in_own_process("vllm-evaluation", {"spec": spec, "model_dir": model_dir, "seed": args.seed,
                                              "repeats": settings["eval_repeats"]}, out)
    print("  sampled: " + ", ".join(f"{p['accuracy']:.3f}" for p in base["sampled"])
          + f"; greedy {base['greedy']['accuracy']:.3f}", flush=True)
    print(f"2/4 seesaw run, {settings['iterations']} iterations ...", flush=True)
    with OtherWork() as job_load:
        run = run_job(job, out, args.seed)
    batch = json.loads((Path(run["run_dir"]) / "first-batch.json").read_text())
    prompt_ids = list({s["prompt_index"]: s["prompt_ids"] for s in batch["samples"]}.values())
    print("3/4 the floors on iteration 1's batch ...", flush=True)
    # the trainer server's own rule (containers/megatron/server.py): its pod's share, else every core
    threads = int(os.environ.get(pod_contract.CPU_THREADS, 0)) or max(1, os.cpu_count() or 1)
    with OtherWork() as floors_load:
        torch_part = in_own_process("torch-floors", {"spec": spec, "model_dir": model_dir, "samples": batch["samples"],
                                                     "tau": batch["tau"], "threads": threads,
                                                     "repeats": settings["floor_repeats"]}, out)
        vllm_part = in_own_process("vllm-floor", {"spec": spec, "model_dir": model_dir, "seed": args.seed,
                                                  "prompt_ids": prompt_ids, "repeats": settings["floor_repeats"]}, out)
    result = summarise(settings, base, run, torch_part, vllm_part)
    result["other_work_cores"] = {"job": job_load.cores, "floors": floors_load.cores, "cores": os.cpu_count() or 1}
    result["bench_wall_seconds"] = time.monotonic() - started
    print(f"4/4 the result ({result['bench_wall_seconds']:.0f} s in all)\n")
    print(table(result))
    (out / "real_model.json").write_text(json.dumps(dict(result, base=base, torch=torch_part, vllm=vllm_part), indent=1))
    plot(result, out / "real_model.png")
    print(f"\nwrote {out / 'real_model.json'} and {out / 'real_model.png'}")


if __name__ == "__main__":
    main()
