"""Experiment tracking: every iteration's scalars to TensorBoard, and to W&B or MLflow when
`spec.logging` asks for them.

Pod 0's checkpoint engine (the conductor) is the one writer: it sees every iteration's
metrics. TensorBoard event files go to `<run dir>/tensorboard` locally, and to
`<spec.checkpoint.path>/tensorboard` in a pod with a checkpoint volume, so they outlive the
pod; a gang restarted from iteration N purges the steps after N that the lost attempt wrote.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from seesaw.spec import SpecError

GB = 1e9


def _sync_gb_per_second(m: dict[str, Any]) -> float:
    return m["sync_bytes"] / GB / m["sync_seconds"] if m["sync_seconds"] > 0 else math.nan


def switch_overhead_share(m: dict[str, Any]) -> float:
    """The iteration's wall less generation, reward scoring and the trainer's own compute
    (log-prob recomputation, optimiser steps), as a share of the wall: what toggling the pod
    between rollout and training (sleep, wake-up, offload, onload, the sync) costs."""
    work = m["rollout_seconds"] + m["scoring_seconds"] + m["trainer_compute_seconds"]
    return (m["iteration_seconds"] - work) / m["iteration_seconds"] if m["iteration_seconds"] > 0 else math.nan


# tag -> its value from an iteration's metrics (the conductor's IterationMetrics)
SCALARS: dict[str, Callable[[dict[str, Any]], float]] = {
    "reward/mean": lambda m: m["mean_reward"],
    "accuracy/train": lambda m: m["accuracy"],
    "response/mean_tokens": lambda m: m["mean_response_length"],
    "loss/policy": lambda m: m["loss"],
    "logprob/rollout_vs_trainer_max_abs_diff": lambda m: m["rollout_trainer_logprob_diff"],
    "logprob/probe_after_sync_max_abs_diff": lambda m: m["probe_max_abs_logprob_diff"],
    "phase_seconds/rollout": lambda m: m["rollout_seconds"],
    "phase_seconds/train": lambda m: m["train_seconds"],
    "phase_seconds/sync": lambda m: m["sync_seconds"],
    "phase_seconds/iteration": lambda m: m["iteration_seconds"],
    "phase_seconds/switch_overhead_share": switch_overhead_share,
    "sync/gb_per_second": _sync_gb_per_second,
    "rollout/tokens_per_second": lambda m: m["rollout_tokens_per_second"],
    "response/cut_at_max_tokens": lambda m: m["cut_fraction"],
}
# held-out accuracy, at the evaluations (before RL, every rl.evaluation.everyIterations, after)
HELD_OUT = {"accuracy/heldout_sampled": "sampled", "accuracy/heldout_greedy": "greedy"}


def iteration_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """Every scalar of one iteration, by tag; NaN where it is undefined (no group finished
    under partial rollouts: no log-prob difference), as a gap in the plot."""
    return {tag: float(read(metrics)) for tag, read in SCALARS.items()}


class Tracker(Protocol):
    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def text(self, step: int, tag: str, markdown: str) -> None: ...

    def close(self) -> None: ...


class TensorBoardTracker:
    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.writer: Any = None

    def _writer(self, step: int) -> Any:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # the first step logged: 0 on a fresh start, the first iteration after the
            # checkpoint on a resumed one; TensorBoard drops what a lost attempt logged in
            # this directory from that step on
            self.writer = SummaryWriter(str(self.logdir), purge_step=step)
        return self.writer

    def log(self, step: int, scalars: dict[str, float]) -> None:
        writer = self._writer(step)
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)
        writer.flush()  # a crash loses nothing that was logged

    def text(self, step: int, tag: str, markdown: str) -> None:
        writer = self._writer(step)
        writer.add_text(tag, markdown, step)
        writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbTracker:
    def __init__(self, settings: dict[str, Any], run_name: str, config: dict[str, Any], directory: Path) -> None:
        import wandb

        self.run = wandb.init(project=settings["project"], entity=settings.get("entity") or None,
                              mode=settings["mode"], name=run_name, config=config, dir=str(directory))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def text(self, step: int, tag: str, markdown: str) -> None:
        import wandb

        self.run.log({tag: wandb.Html(f"<pre>{markdown}</pre>")}, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflowTracker:
    def __init__(self, settings: dict[str, Any], run_name: str, config: dict[str, Any]) -> None:
        import mlflow

        mlflow.set_tracking_uri(settings["trackingUri"])
        mlflow.set_experiment(settings.get("experiment") or run_name)
        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=run_name)
        mlflow.log_params({k: str(v)[:500] for k, v in _flatten(config).items()})

    def log(self, step: int, scalars: dict[str, float]) -> None:
        # MLflow metric names may not hold every character TensorBoard tags do
        self.mlflow.log_metrics({tag.replace("/", "."): value for tag, value in scalars.items()}, step=step)

    def text(self, step: int, tag: str, markdown: str) -> None:
        self.mlflow.log_text(markdown, f"{tag}/iteration-{step:06d}.md")

    def close(self) -> None:
        self.mlflow.end_run()


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            out.update(_flatten(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = item
    return out


# spec.logging.<tracker> -> the package it needs
PACKAGES = {"wandb": "wandb", "mlflow": "mlflow"}


@dataclass
class TrackingPlan:
    """What spec.logging asks for, read and checked before the run starts."""
    root: Path  # the run directory, or the checkpoint volume's path where there is one
    tensorboard: bool
    wandb: dict[str, Any] | None
    mlflow: dict[str, Any] | None

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / "tensorboard"


def plan(spec: dict[str, Any], run_dir: Path) -> TrackingPlan:
    """Read spec.logging; a tracker it names whose package is missing is a clear error now,
    not a crash after the first iteration."""
    logging = spec["logging"]
    root = Path(spec["checkpoint"]["path"]) if spec["checkpoint"].get("pvc") else run_dir
    # each setting read here, by name: what the trackers take effect from
    wandb = logging.get("wandb")
    if wandb is not None:
        wandb = {"project": wandb["project"], "entity": wandb.get("entity"), "mode": wandb["mode"]}
    mlflow = logging.get("mlflow")
    if mlflow is not None:
        mlflow = {"trackingUri": mlflow["trackingUri"], "experiment": mlflow.get("experiment")}
    for name, settings in (("wandb", wandb), ("mlflow", mlflow)):
        if settings is not None and importlib.util.find_spec(PACKAGES[name]) is None:
            raise SpecError(f"spec.logging.{name}", f"asks for {name}, but the `{PACKAGES[name]}` package is not "
                            "installed in the checkpoint-engine image: install it there, or remove "
                            f"spec.logging.{name}")
    return TrackingPlan(root, logging["tensorboard"]["enabled"], wandb, mlflow)


class Trackers:
    """The trackers of one run, as a progress observer of the conductor."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers

    @classmethod
    def start(cls, chosen: TrackingPlan, run_name: str, config: dict[str, Any]) -> "Trackers":
        trackers: list[Tracker] = []
        if chosen.tensorboard:
            trackers.append(TensorBoardTracker(chosen.tensorboard_dir))
        if chosen.wandb is not None:
            trackers.append(WandbTracker(chosen.wandb, run_name, config, chosen.root))
        if chosen.mlflow is not None:
            trackers.append(MLflowTracker(chosen.mlflow, run_name, config))
        return cls(trackers)

    def describe(self) -> str:
        """What the log says at the start: each tracker, and where TensorBoard writes."""
        names = [type(t).__name__.removesuffix("Tracker") + (f" ({t.logdir})" if isinstance(t, TensorBoardTracker) else "")
                 for t in self.trackers]
        return ", ".join(names) or "none (spec.logging)"

    def progress(self, iteration: int, phase: str, metrics: dict[str, Any]) -> None:
        if phase == "iteration":
            scalars = iteration_scalars(metrics)
        elif phase == "evaluated":
            scalars = {tag: float(metrics[key]) for tag, key in HELD_OUT.items()}
            if "pass_at_k" in metrics:  # spec.rl.evaluation.passAtK asked for it
                scalars["accuracy/heldout_pass_at_k"] = float(metrics["pass_at_k"])
        else:
            return
        for tracker in self.trackers:
            tracker.log(iteration, scalars)

    def samples(self, iteration: int, split: str, records: list[dict[str, Any]]) -> None:
        """A sample log's records (seesaw.checkpoint_engine.sample_log), as text at the iteration."""
        from seesaw.checkpoint_engine.sample_log import as_markdown

        for tracker in self.trackers:
            tracker.text(iteration, f"samples/{split}", as_markdown(records))

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()
