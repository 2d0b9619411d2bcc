"""What an iteration and a run measured: the records metrics.jsonl, summary.json and the trackers
read, assembled from what each phase reports (the conductor only hands the results over)."""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

EVAL_SAMPLES = 4  # held-out samples per prompt at the rollout temperature (at least pass@k's k)


@dataclass
class IterationMetrics:
    iteration: int
    rollout_seconds: float
    train_seconds: float
    sync_seconds: float
    mean_reward: float
    accuracy: float
    mean_response_length: float
    rollout_tokens_per_second: float
    loss: float
    sync_bytes: int
    rollout_trainer_logprob_diff: float
    # after this iteration's sync: the engine's log-probs on the probe batch vs the trainer's
    probe_max_abs_logprob_diff: float
    probe_share_of_sync: float
    # the most any trainer rank's weight sender held during the sync beyond the trainer's own
    # memory: its staging buffers and the tensor in hand (docs/ARCHITECTURE.md, "Starting on a shared GPU")
    staging_peak_bytes: int = 0
    # the data-parallel replicas' parameter checksum (every rank checked it equals rank 0's)
    params_checksum: str = ""
    # per engine, this iteration: prompts it rolled out and the seconds it took; weight version,
    # checksum and probe difference after the sync
    engines: list[dict[str, Any]] = field(default_factory=list)
    eval_accuracy: float | None = None
    eval_greedy_accuracy: float | None = None
    # where the iteration's time went: its wall time (held-out evaluation aside), the verifier's
    # share of the rollout phase, and the trainer's own compute (log-prob recomputation and
    # optimiser steps) inside the train phase; the rest of the wall is phase-switch overhead
    iteration_seconds: float = 0.0
    scoring_seconds: float = 0.0
    trainer_compute_seconds: float = 0.0
    # the samples spec.rl.objective trained on (all of them for mirror descent; the
    # selected ones for the long2short objectives) and mean held-out response tokens
    trained_samples: int = 0
    eval_mean_tokens: float | None = None
    # responses cut at rollout.maxTokens (not stopped by the model)
    cut_fraction: float = 0.0
    # the slowest rollout engine's seconds over the median engine's (1.0 with fewer than three);
    # each engine's own are its "seconds" in `engines`
    straggler_ratio: float = 1.0


def describe_layout(layout: dict[str, Any] | None) -> str:
    """'megatron on cpu, TP=2 PP=1 DP=1' from a trainer's reported layout."""
    if not layout:
        return ""
    sizes = " ".join(f"{key.upper()}={layout[key]}" for key in ("tp", "pp", "dp", "ep") if key in layout
                     and (key != "ep" or layout[key] > 1))
    return f"{layout['backend']} on {layout['device']}, {sizes}"


@dataclass
class RunSummary:
    accuracy_before: float  # held-out, sampled at the rollout temperature (the policy itself)
    accuracy_after: float
    greedy_accuracy_before: float
    greedy_accuracy_after: float
    eval_prompts: int
    eval_samples_per_prompt: int
    iterations: int
    wall_seconds: float
    sync: dict[str, float]
    pods: int = 1
    trainer_ranks: int = 1  # the job's torch.distributed trainer group (pods x ranks per pod)
    # the trainer backend, its device and its parallel sizes (tp, pp, dp, ep), as pod 0's trainer reports them
    trainer: dict[str, Any] = field(default_factory=dict)
    # per rollout engine: its pod, the prompts it served; weight version, checksum and probe difference after the last sync
    engines: list[dict[str, Any]] = field(default_factory=list)
    exported_model: str = ""  # the trained policy as a Hugging Face model directory
    # mean response tokens on the held-out prompts, sampled (as accuracy_*) and greedy
    mean_tokens_before: float = float("nan")
    mean_tokens_after: float = float("nan")
    greedy_mean_tokens_before: float = float("nan")
    greedy_mean_tokens_after: float = float("nan")
    history: list[dict[str, Any]] = field(default_factory=list)
    # held-out pass@k before and after RL ({k, before, after}), when spec.rl.evaluation.passAtK asks
    pass_at_k: dict[str, float] = field(default_factory=dict)


class IterationRecorder:
    """Collects one iteration's phase results, in the order the phases report them."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration
        self.started = time.perf_counter()
        self.fields: dict[str, Any] = {"iteration": iteration}

    def rolled_out(self, stats: dict[str, Any]) -> None:
        self.fields.update(
            rollout_seconds=stats["seconds"], mean_reward=stats["mean_reward"], accuracy=stats["accuracy"],
            mean_response_length=stats["mean_length"], cut_fraction=stats["cut_fraction"],
            rollout_tokens_per_second=stats["tokens"] / max(stats["seconds"], 1e-9),
            scoring_seconds=stats["scoring_seconds"], straggler_ratio=stats["straggler_ratio"])

    def trained(self, stats: dict[str, Any], phase_seconds: float, samples: int) -> None:
        self.fields.update(
            train_seconds=phase_seconds, loss=stats["loss"], trainer_compute_seconds=stats["seconds"], trained_samples=samples,
            rollout_trainer_logprob_diff=stats["extra"].get("max_abs_logprob_diff", float("nan")),
            params_checksum=str(stats["extra"].get("params_checksum", "")))

    def synced(self, sync: dict[str, Any], phase_seconds: float) -> None:
        self.fields.update(
            sync_seconds=phase_seconds, sync_bytes=sync["bytes"], staging_peak_bytes=sync["staging_peak_bytes"],
            probe_max_abs_logprob_diff=sync["probe_max_abs_logprob_diff"],
            probe_share_of_sync=sync["probe_seconds"] / max(phase_seconds, 1e-9))

    def served(self, engines: list[dict[str, Any]]) -> None:
        """Per engine: what it served in this rollout, its weight version, checksum and probe difference."""
        self.fields["engines"] = engines

    def finished(self) -> IterationMetrics:
        """The iteration's record: its wall time runs to here (a held-out evaluation after it aside)."""
        return IterationMetrics(**self.fields, iteration_seconds=time.perf_counter() - self.started)


def evaluated(metrics: IterationMetrics, result: dict[str, float]) -> None:
    metrics.eval_accuracy, metrics.eval_greedy_accuracy = result["sampled"], result["greedy"]
    metrics.eval_mean_tokens = result["sampled_tokens"]


def run_summary(spec: dict[str, Any], before: dict[str, float], after: dict[str, float], history: list[IterationMetrics],
                last_sync: dict[str, Any], **run: Any) -> RunSummary:
    """The run's summary.json; `run` holds what only the conductor knows (pods, ranks, engines, ...)."""
    rl = spec["rl"]
    sync_history = [m.sync_seconds for m in history]
    return RunSummary(
        accuracy_before=before["sampled"], accuracy_after=after["sampled"],
        greedy_accuracy_before=before["greedy"], greedy_accuracy_after=after["greedy"],
        eval_samples_per_prompt=max(EVAL_SAMPLES, rl["evaluation"]["passAtK"]), iterations=rl["iterations"],
        sync={"bytes": int(last_sync["bytes"]), "seconds": float(last_sync["seconds"]),
              "mean_phase_seconds": statistics.fmean(sync_history) if sync_history else 0.0,
              "max_abs_logprob_diff": last_sync["probe_max_abs_logprob_diff"]},
        # a checkpoint from before response lengths were measured has no length for "before"
        mean_tokens_before=before.get("sampled_tokens", float("nan")), mean_tokens_after=after.get("sampled_tokens", float("nan")),
        greedy_mean_tokens_before=before.get("greedy_tokens", float("nan")), greedy_mean_tokens_after=after.get("greedy_tokens", float("nan")),
        history=[asdict(m) for m in history],
        pass_at_k={"k": rl["evaluation"]["passAtK"], "before": before["pass_at_k"], "after": after["pass_at_k"]}
        if "pass_at_k" in before and "pass_at_k" in after else {},
        **run,
    )


def iteration_line(metrics: IterationMetrics, total: int) -> str:
    eval_part = f" | eval {metrics.eval_accuracy:.3f}" if metrics.eval_accuracy is not None else ""
    return (f"iter {metrics.iteration:>3}/{total} | rollout {metrics.rollout_seconds:5.2f}s train {metrics.train_seconds:5.2f}s "
            f"sync {metrics.sync_seconds:5.3f}s | reward {metrics.mean_reward:.3f} acc {metrics.accuracy:.3f} "
            f"len {metrics.mean_response_length:4.1f} | {metrics.rollout_tokens_per_second:6.0f} tok/s | "
            f"loss {metrics.loss:.4f}{eval_part}")


def before_line(before: dict[str, float], temperature: float, prompts: int) -> str:
    return (f"held-out accuracy before RL: {before['sampled']:.3f} sampled (T={temperature}), "
            f"{before['greedy']:.3f} greedy, on {prompts} prompts"
            + (f"; mean response {before['sampled_tokens']:.1f} tokens" if "sampled_tokens" in before else ""))


def after_line(before: dict[str, float], after: dict[str, float], pass_k: int, probe_sequences: int, diff: float) -> str:
    return (f"held-out accuracy after RL: {after['sampled']:.3f} sampled (before {before['sampled']:.3f}), "
            f"{after['greedy']:.3f} greedy (before {before['greedy']:.3f}); "
            + (f"mean response {after['sampled_tokens']:.1f} tokens; " if "sampled_tokens" in after else "")
            + (f"pass@{pass_k} {after['pass_at_k']:.3f} (before {before['pass_at_k']:.3f}); "
               if "pass_at_k" in after and "pass_at_k" in before else "")
            + f"vLLM vs trainer max |dlogp| on {probe_sequences} probe sequences after the last sync: {diff:.2e}")
