"""One iteration's training, shared by every trainer backend.

The loop lives here once: `epochsPerIteration` passes over the iteration's prompts, one
optimiser step per mini-batch of `miniBatchPrompts` whole prompts, each data-parallel rank
taking its share of every mini-batch, and the statistics every backend reports. A backend
only runs forward, backward and the optimiser step on the prompts it is given
(`train_mini_batch`), with the Kimi k1.5 loss (seesaw.rl.loss) weighted as this loop says.
So a spec field cannot be honoured by one backend and ignored by another.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

from seesaw.interfaces import Sample, TrainStats


@dataclass
class MiniBatchStats:
    loss: float  # this rank's weighted share of the mini-batch's loss
    tokens: int
    log_ratio: float  # weighted mean log(pi_theta / pi_i) over this rank's tokens
    max_abs_logprob_diff: float  # |log pi_theta - log pi_i| before the step, over trained tokens
    grad_norm: float


class MiniBatchTrainer(Protocol):
    def train_mini_batch(self, groups: list[list[Sample]], prompt_weight: float, tau: float) -> MiniBatchStats:
        """Forward and backward over `groups` (whole prompts, possibly none on this rank),
        each prompt's mean loss scaled by `prompt_weight`; all-reduce the gradients over the
        data-parallel ranks; clip; one optimiser step."""
        ...


def group_by_prompt(samples: list[Sample]) -> list[list[Sample]]:
    groups: dict[int, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.prompt_index, []).append(sample)
    return list(groups.values())


def split_sizes(count: int, parts: int) -> list[int]:
    """Sizes of `parts` nearly equal consecutive slices of `count` items (the first ones larger)."""
    return [count // parts + (1 if i < count % parts else 0) for i in range(parts)]


def steps_per_epoch(total_prompts: int, mini_batch_prompts: int) -> int:
    return max(1, math.ceil(total_prompts / (mini_batch_prompts or total_prompts or 1)))


def data_parallel_shares(samples: list[Sample], dp_size: int) -> list[list[Sample]]:
    """Each rank's samples: whole prompts, dealt round-robin so the shares differ by at most one prompt."""
    groups = group_by_prompt(samples)
    return [[s for g in groups[rank::dp_size] for s in g] for rank in range(dp_size)]


def ranks_groups(total: int, ranks: set[int] | list[int], dp_size: int) -> list[int]:
    """The positions, among an iteration's `total` prompts, of those data-parallel `ranks`
    train on (dealt round-robin, as data_parallel_shares deals them)."""
    wanted = set(ranks)
    return [g for g in range(total) if g % dp_size in wanted]


@dataclass
class BatchShare:
    """The part of an iteration's batch that one pod's trainer ranks train on: the prompts
    (each a group of samples) dealt to the data-parallel ranks it holds, by their position in
    the whole batch, and how many prompts the whole batch has, so that every rank knows the
    size of every share (the number of optimiser steps and each prompt's weight depend on it)."""

    groups: dict[int, list[Sample]]  # position among the batch's prompts -> the prompt's samples
    total: int

    @classmethod
    def whole(cls, samples: list[Sample]) -> "BatchShare":
        groups = group_by_prompt(samples)
        return cls(dict(enumerate(groups)), len(groups))

    @classmethod
    def of(cls, samples: list[Sample], positions: list[int], total: int) -> "BatchShare":
        """Samples received with each one's prompt position (seesaw.wire's groups)."""
        groups: dict[int, list[Sample]] = {}
        for sample, position in zip(samples, positions):
            groups.setdefault(position, []).append(sample)
        return cls(groups, total)

    def for_rank(self, dp_rank: int, dp_size: int) -> list[list[Sample]]:
        """The prompts of one data-parallel rank; every one must have been received."""
        mine = range(dp_rank, self.total, dp_size)
        missing = [g for g in mine if g not in self.groups]
        if missing:
            raise ValueError(f"data-parallel rank {dp_rank} of {dp_size} trains on prompts {missing[:5]} of the "
                             f"batch's {self.total}, which this pod was not sent (it got {len(self.groups)})")
        return [self.groups[g] for g in mine]

    def counts(self, dp_size: int) -> list[int]:
        """Prompts of each data-parallel rank's share."""
        return [len(range(rank, self.total, dp_size)) for rank in range(dp_size)]


def train_iteration(trainer: MiniBatchTrainer, batch: BatchShare | list[Sample], rl: dict[str, Any], tau: float,
                    seed: int, dp_rank: int = 0, dp_size: int = 1) -> TrainStats:
    """Train one iteration on this rank's share of the batch (`batch`: the whole batch, or
    the pod's part of it holding this rank's share).

    Every rank knows every share's size, so all ranks take the same number of optimiser
    steps and weigh each prompt by 1 / (prompts in the whole mini-batch). pi_i (the samples'
    log-probs) stays the reference for every step of the iteration. The statistics are this
    rank's share (the backend sums them over the ranks).
    """
    started = time.perf_counter()
    share = batch if isinstance(batch, BatchShare) else BatchShare.whole(batch)
    groups = share.for_rank(dp_rank, dp_size)
    counts = share.counts(dp_size)
    total = share.total
    if total == 0:  # partial rollouts: no group finished this iteration
        return TrainStats(loss=0.0, tokens=0, seconds=0.0, extra={"optimizer_steps": 0, "max_abs_logprob_diff": 0.0})
    steps = steps_per_epoch(total, rl["miniBatchPrompts"])
    sizes = [split_sizes(count, steps) for count in counts]  # [rank][step] prompts
    shuffler = random.Random(seed)
    losses, tokens, log_ratio, max_diff, grad_norms = [], 0, 0.0, 0.0, []
    for epoch in range(rl["epochsPerIteration"]):
        order = list(range(len(groups)))
        shuffler.shuffle(order)
        start = 0
        for step in range(steps):
            mine = [groups[i] for i in order[start: start + sizes[dp_rank][step]]]
            start += sizes[dp_rank][step]
            in_step = sum(rank_sizes[step] for rank_sizes in sizes)
            stats = trainer.train_mini_batch(mine, 1.0 / in_step if in_step else 0.0, tau)
            if epoch == 0 and step == 0:
                # before the first step pi_theta is pi_i: the rollout engine's log-probs must match ours
                max_diff = stats.max_abs_logprob_diff
            losses.append(stats.loss)
            tokens += stats.tokens
            log_ratio = stats.log_ratio
            grad_norms.append(stats.grad_norm)
    return TrainStats(loss=sum(losses) / len(losses), tokens=tokens, seconds=time.perf_counter() - started,
                      extra={"grad_norm": max(grad_norms), "mean_log_ratio": log_ratio,
                             "max_abs_logprob_diff": max_diff, "optimizer_steps": len(losses)})
