"""Kimi k1.5 length reward: among the k responses to a prompt, shorter correct ones earn more.

    lambda_j = 0.5 - (len_j - min_len) / (max_len - min_len)      (0 when all lengths are equal)
    len_reward_j = lambda_j if response j is correct, else min(0, lambda_j)

The reward added to r_j is weight * len_reward_j. It slows early training, so it is warmed
up. Iterations count from 1. Two schedules:
  "step" (the default, the report's choice and what spec.rl.lengthPenalty gets): weight 0
         for iterations 1..warmup_iterations, the full weight from warmup_iterations + 1 on;
  "linear": weight * min(1, (iteration - 1) / warmup_iterations), a ramp from 0 at
         iteration 1 to the full weight at iteration warmup_iterations + 1.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

SCHEDULES = ("step", "linear")


def length_rewards(lengths: Sequence[int], correct: Sequence[bool]) -> list[float]:
    """The length reward of each of one prompt's k responses."""
    if len(lengths) != len(correct):
        raise ValueError(f"lengths ({len(lengths)}) and correct ({len(correct)}) must have the same length")
    if not lengths:
        return []
    shortest, longest = min(lengths), max(lengths)
    if longest == shortest:
        return [0.0] * len(lengths)
    rewards = []
    for length, ok in zip(lengths, correct):
        lam = 0.5 - (length - shortest) / (longest - shortest)
        rewards.append(lam if ok else min(0.0, lam))
    return rewards


def length_penalty_weight(weight: float, warmup_iterations: int, iteration: int, schedule: str = "step") -> float:
    """The weight in force at `iteration` (1-based) under `schedule` (see the module docstring)."""
    if weight < 0:
        raise ValueError(f"weight: expected >= 0, got {weight}")
    if warmup_iterations < 0:
        raise ValueError(f"warmup_iterations: expected >= 0, got {warmup_iterations}")
    if schedule == "step":
        return weight if iteration > warmup_iterations else 0.0
    if schedule == "linear":
        if warmup_iterations == 0:
            return weight
        return weight * min(1.0, max(0.0, (iteration - 1) / warmup_iterations))
    raise ValueError(f"schedule: expected one of {list(SCHEDULES)}, got {schedule!r}")


def add_length_rewards(prompt_ids: Sequence[int], lengths: Sequence[int], correct: Sequence[bool],
                       weight: float) -> list[float]:
    """weight * length reward for a flat batch whose samples are grouped by prompt id.

    The groups need not be contiguous: samples are grouped by equal prompt id wherever they sit.
    """
    if not len(prompt_ids) == len(lengths) == len(correct):
        raise ValueError(f"prompt_ids ({len(prompt_ids)}), lengths ({len(lengths)}) and correct ({len(correct)}) "
                         "must have the same length")
    groups: dict[int, list[int]] = defaultdict(list)
    for index, prompt in enumerate(prompt_ids):
        groups[prompt].append(index)
    bonus = [0.0] * len(prompt_ids)
    if weight == 0.0:
        return bonus
    for members in groups.values():
        for index, value in zip(members, length_rewards([lengths[i] for i in members], [correct[i] for i in members])):
            bonus[index] = weight * value
    return bonus
