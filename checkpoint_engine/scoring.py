"""Rewards are scored in the checkpoint engine of the pod whose engine generated the samples.

A verifier can be costly (code runs in a sandbox for every sample), so the gang spreads it
as it spreads generation: pod 0 scores its own engine's samples, every follower scores its
own pod's through its checkpoint engine (`/gang/score`). A sample is named by the task
split and the problem's index in it, and carries its response tokens.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np

from seesaw.spec import SpecError
from seesaw.tasks import Task


def score_items(task: Task, tokenizer: Any, split: str, items: list[list[Any]]) -> list[float]:
    """items: [problem index in task.<split>, response token ids]; the verifier's score of each."""
    problems = {"train": task.train, "eval": task.eval}[split]
    return [task.score(tokenizer.decode(np.asarray(response_ids), skip_special_tokens=True), problems[index])
            for index, response_ids in items]


def check_verifier(task: Task) -> None:
    """Before the verifier scores any sample on this pod, it must score a right answer right:
    one that cannot run here (its worker past a memory limit, a package missing) scores every
    sample 0, and a job trained on all-zero rewards learns nothing and says nothing."""
    problem = next((p for p in task.eval + task.train if p.answer), None)
    if problem is None:  # code rows without a reference program: no answer known to be right
        return
    right = task.demonstrate(problem, random.Random(0))
    if task.score(right, problem) != 1.0:
        raise SpecError("spec.reward.type", f"the verifier scores a right answer wrong on this pod ({right[:80]!r} to "
                                            f"{problem.prompt[:80]!r} of spec.prompts.source): every sample would score 0")
