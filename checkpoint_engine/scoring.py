"""Rewards are scored in the checkpoint engine of the pod whose engine generated the samples.

A verifier can be costly (code runs in a sandbox for every sample), so the gang spreads it
as it spreads generation: pod 0 scores its own engine's samples, every follower scores its
own pod's through its checkpoint engine (`/gang/score`). A sample is named by the task
split and the problem's index in it, and carries its response tokens.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from seesaw.tasks import Task


def score_items(task: Task, tokenizer: Any, split: str, items: list[list[Any]]) -> list[float]:
    """items: [problem index in task.<split>, response token ids]; the verifier's score of each."""
    problems = {"train": task.train, "eval": task.eval}[split]
    return [task.score(tokenizer.decode(np.asarray(response_ids), skip_special_tokens=True), problems[index])
            for index, response_ids in items]
