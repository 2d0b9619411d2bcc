"""Run reports a person reads: the summary JSON and a PNG of reward, accuracy and phase timeline."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display where jobs run
import matplotlib.pyplot as plt  # noqa: E402

PHASE_COLOURS = {"starting": "#bbbbbb", "sync": "#d62728", "eval": "#9467bd", "rollout": "#1f77b4",
                 "train": "#2ca02c", "checkpoint": "#ff7f0e"}


def write_summary(summary: Any, path: Path) -> dict[str, Any]:
    data = asdict(summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
    return data


def plot_run(history: list[dict[str, Any]], timeline: list[Any], accuracy_before: float | None,
             accuracy_after: float | None, path: Path) -> Path:
    """Reward and accuracy per iteration (top) and when each phase ran (bottom)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), gridspec_kw={"height_ratios": [3, 1.3]})
    iterations = [h["iteration"] for h in history]
    top.plot(iterations, [h["mean_reward"] for h in history], marker=".", label="mean reward (rollout)")
    top.plot(iterations, [h["accuracy"] for h in history], marker=".", alpha=0.6, label="accuracy (rollout samples)")
    evals = [(h["iteration"], h["eval_accuracy"]) for h in history if h.get("eval_accuracy") is not None]
    if accuracy_before is not None:
        evals = [(0, accuracy_before)] + evals
    if accuracy_after is not None and iterations:
        evals = evals + [(iterations[-1], accuracy_after)]
    if evals:
        xs, ys = zip(*evals)
        top.plot(xs, ys, marker="o", linestyle="--", color="black", label="held-out accuracy (greedy)")
    top.set_xlabel("iteration")
    top.set_ylim(0, 1)
    top.grid(alpha=0.3)
    top.legend(loc="lower right")
    top.set_title("Seesaw RL run")
    if timeline:
        origin = timeline[0].started
        for record in timeline:
            bottom.barh(0, record.ended - record.started, left=record.started - origin,
                        color=PHASE_COLOURS.get(record.phase.value, "#777777"), edgecolor="none")
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in PHASE_COLOURS.values()]
        bottom.legend(handles, PHASE_COLOURS.keys(), ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.45), fontsize=8)
    bottom.set_yticks([])
    bottom.set_xlabel("seconds since start (phase timeline)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
