"""`seesaw long2short`: short policies from a long-CoT one by Kimi k1.5's four methods, compared.

From the long policy (a model directory, or the one the long job's own run exports), each
method is an RLJob run on this machine as `seesaw run` runs one, so its rollouts go through
the same vLLM engines, weight sync and training loop as RL:
- shortest-rejection: rl.objective shortest-rejection (k samples, fine-tune on the shortest correct);
- dpo: rl.objective dpo (shortest correct as chosen; wrong and much longer ones as rejected);
- rl: long2short RL, the length penalty on from the start and a smaller rollout.maxTokens;
- merge: the long and a short model's weights averaged, measured by an evaluation-only job
  (rl.iterations 0). The short model is --short-model, else the shortest-rejection result.
Each job's held-out accuracy and mean response tokens go into one table and one PNG.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file

from seesaw.model.export import export_hf_model
from seesaw.rl.long2short import long2short_rl_manifest, merge_models
from seesaw.spec import SpecError, validate_manifest

METHODS = ("shortest-rejection", "dpo", "rl", "merge")
from seesaw.object_meta import MAX_NAME  # RLJob names are DNS labels of at most this many characters
# The learning rates, unless given, as shares of the long job's (docs/RL.md has the runs).
# DPO pushes rejected responses down without bound: at the RL rate the demo policy
# collapsed (held-out 0.71 -> 0.01), at 0.3 of it too (0.81 -> 0.19); at a tenth it gained.
# DPO recipes use rates an order below SFT's. long2short RL starts from a converged policy
# with a new reward: at the long job's rate it lost accuracy in each of 3 seeds (0.81 ->
# 0.73 on average), at 0.4 of it gained (-> 0.88) and shortened a little less.
LEARNING_RATE_SHARE = {"dpo": 0.1, "rl": 0.4}


@dataclass(frozen=True)
class Settings:
    """How each method runs (the `seesaw long2short` options)."""

    iterations: int = 10  # of long2short RL
    # shortest-rejection and dpo, as the report runs them: one round of k samples for each of
    # `prompts` prompts from the long policy, then `epochs` passes over what was selected
    # (further rounds sample again from the then-current policy, the new DPO reference)
    rounds: int = 1
    prompts: int = 256
    epochs: int = 2
    learning_rate: float | None = None  # None: LEARNING_RATE_SHARE of the long job's
    merge_weight: float = 0.5  # the long model's share of the average
    length_penalty_weight: float = 0.5  # long2short RL
    max_tokens_fraction: float = 0.75  # long2short RL's rollout.maxTokens, of the long job's

    def __post_init__(self) -> None:
        for name, value, ok, expected in (
                ("--iterations", self.iterations, self.iterations >= 1, ">= 1"),
                ("--rounds", self.rounds, self.rounds >= 1, ">= 1"),
                ("--prompts", self.prompts, self.prompts >= 1, ">= 1"),
                ("--epochs", self.epochs, self.epochs >= 1, ">= 1"),
                ("--learning-rate", self.learning_rate, self.learning_rate is None or self.learning_rate > 0, "> 0"),
                ("--merge-weight", self.merge_weight, 0.0 <= self.merge_weight <= 1.0, "in [0, 1]"),
                ("--length-penalty", self.length_penalty_weight, self.length_penalty_weight >= 0, ">= 0"),
                ("--max-tokens-fraction", self.max_tokens_fraction, 0.0 < self.max_tokens_fraction <= 1.0, "in (0, 1]")):
            if not ok:
                raise SpecError(name, f"expected {expected}, got {value}")


class StageFailed(RuntimeError):
    """One method's job did not succeed: the chain stops there."""


@dataclass
class Point:
    """One policy's place on the tokens-vs-accuracy plane (held-out prompts)."""

    policy: str
    accuracy: float  # sampled at the rollout temperature
    greedy_accuracy: float
    mean_tokens: float  # sampled
    greedy_mean_tokens: float
    iterations: int
    seconds: float
    model: str


def stage_name(long_name: str, method: str) -> str:
    suffix = f"-{method}"
    return long_name[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def stage_manifest(long_manifest: dict[str, Any], method: str, model_dir: str | Path,
                   settings: Settings = Settings()) -> dict[str, Any]:
    """The RLJob of one method, starting from the model in model_dir."""
    manifest = copy.deepcopy(long_manifest)
    spec = manifest["spec"]
    spec["model"] = {"path": str(model_dir), "dtype": spec["model"]["dtype"]}
    spec["rl"]["iterations"] = settings.iterations
    spec["rl"]["lengthPenalty"] = {"weight": 0.0, "warmupIterations": 0}
    optimizer = spec["trainer"]["optimizer"]  # the long manifest is resolved: defaults are in
    if settings.learning_rate is not None:
        optimizer["learningRate"] = settings.learning_rate
    else:
        optimizer["learningRate"] *= LEARNING_RATE_SHARE.get(method, 1.0)
    if method == "rl":
        manifest = long2short_rl_manifest(manifest, settings.length_penalty_weight, settings.max_tokens_fraction)
    elif method in ("shortest-rejection", "dpo"):
        spec["rl"]["objective"] = {**spec["rl"].get("objective", {}), "type": method}
        spec["rl"].update(iterations=settings.rounds, promptsPerIteration=settings.prompts,
                          epochsPerIteration=settings.epochs)
    elif method in ("merge", "evaluate"):
        spec["rl"]["iterations"] = 0
    else:
        raise SpecError("--methods", f"expected some of {list(METHODS)}, got {method!r}")
    manifest["metadata"] = {**long_manifest.get("metadata", {}),
                            "name": stage_name(long_manifest["metadata"]["name"], method)}
    return validate_manifest(manifest)


def _weights(model_dir: Path, field: str) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(path))
    if not tensors:
        raise SpecError(field, f"{model_dir} has no .safetensors weights to merge")
    return tensors


def merge_model_dirs(long_dir: Path, short_dir: Path, target: Path, long_weight: float) -> Path:
    """Write the weight average of two Hugging Face model directories of one architecture."""
    merged = merge_models(_weights(long_dir, "--long-model"), _weights(short_dir, "--short-model"), long_weight)
    return export_hf_model(merged.items(), long_dir, target)


def _run_stage(manifest: dict[str, Any], workdir: Path, summary_path: Path,
               run_job: Callable[[dict[str, Any], argparse.Namespace], int]) -> dict[str, Any]:
    args = argparse.Namespace(job=f"<long2short {manifest['metadata']['name']}>", workdir=str(workdir),
                              summary_json=str(summary_path), seed=None, iterations=None, resume_from=None)
    code = run_job(manifest, args)
    if code != 0 or not summary_path.is_file():
        raise StageFailed(f"the {manifest['metadata']['name']} job failed (exit {code}); its run directory under {workdir} says why")
    return json.loads(summary_path.read_text())


def _point(policy: str, summary: dict[str, Any], seconds: float, after: bool = True) -> Point:
    when = "after" if after else "before"
    return Point(policy, summary[f"accuracy_{when}"], summary[f"greedy_accuracy_{when}"],
                 summary[f"mean_tokens_{when}"], summary[f"greedy_mean_tokens_{when}"],
                 summary["iterations"] if after else 0, seconds, summary["exported_model"] if after else "")


def long2short(long_manifest: dict[str, Any], workdir: Path, out_dir: Path, methods: list[str],
               settings: Settings = Settings(), long_model: Path | None = None, short_model: Path | None = None,
               run_job: Callable[[dict[str, Any], argparse.Namespace], int] | None = None,
               log: Callable[[str], None] = print) -> list[Point]:
    """Run the long job (unless long_model is given), then each method's job (their run
    directories and the model cache in workdir; summaries and merged models in out_dir)."""
    if run_job is None:
        from seesaw.local.runner import run_job
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise SpecError("--methods", f"expected a comma-separated subset of {list(METHODS)}, got {methods}")
    for option, model in (("--long-model", long_model), ("--short-model", short_model)):
        if model is not None and not (model / "config.json").is_file():
            raise SpecError(option, f"{model} has no config.json (expected a Hugging Face model directory)")
    if "merge" in methods and short_model is None and "shortest-rejection" not in methods:
        raise SpecError("--short-model", "merge needs a short model: give --short-model, or run shortest-rejection too")
    # absolute: the jobs' containers run elsewhere and read model paths from their manifests
    out_dir = out_dir.resolve()
    long_model = long_model.resolve() if long_model else None
    short_model = short_model.resolve() if short_model else None
    out_dir.mkdir(parents=True, exist_ok=True)
    points: list[Point] = []
    # the long policy is measured by its own run, else before the first training method trains
    measure_long = long_model is not None and methods == ["merge"]
    steps = (0 if long_model else 1) + int(measure_long) + len(methods)
    step = 0

    def announce(what: str) -> None:
        nonlocal step
        step += 1
        log(f"[long2short {step}/{steps}] {what}")

    if long_model is None:
        announce(f"the long-CoT policy: {long_manifest['metadata']['name']} ({long_manifest['spec']['rl']['iterations']} RL iterations)")
        started = time.time()
        summary = _run_stage(long_manifest, workdir, out_dir / "long.summary.json", run_job)
        long_model = Path(summary["exported_model"])
        points.append(_point("long-CoT", summary, time.time() - started))
    if measure_long:
        announce(f"the long-CoT policy {long_model}, evaluated")
        manifest = stage_manifest(long_manifest, "evaluate", long_model, settings)
        points.append(_point("long-CoT", _run_stage(manifest, workdir, out_dir / "long.summary.json", run_job), 0.0))
    results: dict[str, Point] = {}
    for method in sorted(set(methods), key=METHODS.index):  # merge last: it may use the shortest-rejection result
        if method == "merge":
            partner = short_model or Path(results["shortest-rejection"].model)
            target = out_dir / "merged-model"
            weight = settings.merge_weight
            announce(f"merge: {weight:g} x long + {1 - weight:g} x {partner}, then evaluated")
            merge_model_dirs(long_model, partner, target, weight)
            model_dir = target
        else:
            what = (f"{settings.iterations} RL iterations" if method == "rl" else
                    f"{settings.rounds} round(s) of {settings.prompts} prompts, {settings.epochs} epochs")
            announce(f"{method}: {what} from {long_model}")
            model_dir = long_model
        manifest = stage_manifest(long_manifest, method, model_dir, settings)
        started = time.time()
        summary = _run_stage(manifest, workdir, out_dir / f"{method}.summary.json", run_job)
        if not points:  # every method starts from the long policy: its first job measured it
            points.append(_point("long-CoT", summary, 0.0, after=False))
        point = _point(method, summary, time.time() - started)
        if method == "merge":
            point.model = str(model_dir)
        results[method] = point
        points.append(point)
    return points


def table(points: list[Point]) -> str:
    base = points[0]
    rows = [f"{'policy':<20} {'accuracy':>9} {'greedy':>7} {'tokens':>7} {'vs long':>8} {'greedy tok':>10} {'iters':>5} {'seconds':>8}"]
    for p in points:
        ratio = p.mean_tokens / base.mean_tokens if base.mean_tokens and not math.isnan(base.mean_tokens) else float("nan")
        rows.append(f"{p.policy:<20} {p.accuracy:>9.3f} {p.greedy_accuracy:>7.3f} {p.mean_tokens:>7.1f} {ratio:>7.2f}x "
                    f"{p.greedy_mean_tokens:>10.1f} {p.iterations:>5} {p.seconds:>8.0f}")
    return "\n".join(rows)


def by_policy(points: list[Point]) -> dict[str, list[Point]]:
    groups: dict[str, list[Point]] = {}
    for p in points:
        groups.setdefault(p.policy, []).append(p)
    return groups


def seeds_table(runs: list[list[Point]]) -> str:
    """Several runs' points (one run per seed): each policy's mean and range over the runs."""
    rows = [f"{'policy':<20} {'runs':>4} {'accuracy':>19} {'tokens':>19} {'vs long':>7}"]
    ratios: dict[str, list[float]] = {}  # each point's tokens against its own run's long policy
    for run in runs:
        for p in run:
            ratios.setdefault(p.policy, []).append(p.mean_tokens / run[0].mean_tokens)
    for policy, group in by_policy([p for run in runs for p in run]).items():
        accuracy, tokens = [p.accuracy for p in group], [p.mean_tokens for p in group]
        rows.append(f"{policy:<20} {len(group):>4} {_spread(accuracy, '.3f'):>19} {_spread(tokens, '.1f'):>19} "
                    f"{sum(ratios[policy]) / len(ratios[policy]):>6.2f}x")
    return "\n".join(rows)


def _spread(values: list[float], fmt: str) -> str:
    mean = sum(values) / len(values)
    return f"{mean:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def read_points(path: Path) -> list[Point]:
    return [Point(**row) for row in json.loads(path.read_text())]


def plot(points: list[Point], path: Path, title: str) -> Path:
    """Kimi k1.5's token-efficiency figure: mean response tokens against held-out accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for policy, group in by_policy(points).items():  # several points of a policy: several seeds
        marker = "*" if policy == "long-CoT" else "o"
        ax.scatter([p.mean_tokens for p in group], [p.accuracy for p in group], s=160 if marker == "*" else 70,
                   marker=marker, zorder=3, alpha=1.0 if len(group) == 1 else 0.7, label=policy)
    ax.legend(loc="lower left", fontsize=9)
    ax.set_xlabel("mean response tokens (held-out, sampled)")
    ax.set_ylabel("held-out accuracy (sampled)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    low = min(p.accuracy for p in points)
    ax.set_ylim(max(0.0, low - 0.1), min(1.0, max(p.accuracy for p in points) + 0.05))
    ax.set_xlim(0, max(p.mean_tokens for p in points) * 1.15)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(points: list[Point], out_dir: Path, name: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "long2short.json"
    tmp = data.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(p) for p in points], indent=2))
    tmp.replace(data)
    return data, plot(points, out_dir / "long2short.png", f"long2short: {name}")
