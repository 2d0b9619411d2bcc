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


def plot_run(history: list[dict[str, Any]], timeline: list[Any], before: dict[str, float] | None,
             after: dict[str, float] | None, path: Path) -> Path:
    """Reward and accuracy per iteration (top) and when each phase ran (bottom).

    before/after: held-out accuracies {"sampled": ..., "greedy": ...} around the RL run.
    """
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), gridspec_kw={"height_ratios": [3, 1.3]})
    iterations = [h["iteration"] for h in history]
    top.plot(iterations, [h["mean_reward"] for h in history], marker=".", label="mean reward (rollout samples)")
    for key, label, style in (("sampled", "held-out accuracy (sampled)", "o--"), ("greedy", "held-out accuracy (greedy)", "s:")):
        field = "eval_accuracy" if key == "sampled" else "eval_greedy_accuracy"
        points = [(h["iteration"], h[field]) for h in history if h.get(field) is not None]
        if before:
            points = [(iterations[0] - 1 if iterations else 0, before[key])] + points
        if after and iterations:
            points.append((iterations[-1], after[key]))
        if points:
            xs, ys = zip(*points)
            top.plot(xs, ys, style, color="black", alpha=0.8 if key == "sampled" else 0.5, label=label)
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
