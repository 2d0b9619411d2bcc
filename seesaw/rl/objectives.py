"""What an iteration trains on, and with which loss (`spec.rl.objective`).

- mirror-descent: Kimi k1.5's RL: every sample, the policy loss of seesaw.rl.loss;
- shortest-rejection (long2short): of each prompt's k samples only the shortest correct
  one, trained on by supervised fine-tuning (mean token negative log-likelihood);
- dpo (long2short): per prompt the shortest correct sample as chosen against the wrong ones
  and the correct ones at least `lengthRatio` times longer, with the DPO loss.

All three run in the same iteration (rollout through the vLLM engines, scoring, the shared
training loop, weight sync), so the backends only swap the loss function. A prompt's
selected samples stay one group: the training loop keeps groups whole in a micro-batch,
which DPO needs (its chosen sample and rejected ones meet in one loss). The DPO reference
policy is the one that sampled the iteration (its log-probs ride along with every sample,
as pi_i does for mirror descent), which makes this iterative, on-policy DPO.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import torch
import torch.nn.functional as F

from seesaw.interfaces import Sample
from seesaw.rl.long2short import Candidate, dpo_pairs, shortest_correct
from seesaw.rl.loss import PolicyLossStats, first_index_per_group, group_mean_baseline, kimi_policy_loss

OBJECTIVES = ("mirror-descent", "shortest-rejection", "dpo")
CHOSEN, REJECTED = 1.0, 0.0  # a DPO group's roles, carried in Sample.reward

# (logprobs, old_logprobs, mask, rewards, group_ids, tau) -> stats, as kimi_policy_loss
LossFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float], PolicyLossStats]


def _by_prompt(samples: list[Sample], correct: list[float]) -> dict[int, list[tuple[Sample, Candidate]]]:
    groups: dict[int, list[tuple[Sample, Candidate]]] = {}
    for sample, score in zip(samples, correct):
        candidate = Candidate(text="", length=len(sample.response_ids), correct=score == 1.0)
        groups.setdefault(sample.prompt_index, []).append((sample, candidate))
    return groups


def training_samples(samples: list[Sample], correct: list[float], objective: dict[str, Any]) -> list[Sample]:
    """The samples the objective trains on, from the iteration's scored samples."""
    kind = objective["type"]
    if kind == "mirror-descent":
        return samples
    selected = []
    for group in _by_prompt(samples, correct).values():
        sample_of = {id(candidate): sample for sample, candidate in group}
        candidates = [candidate for _, candidate in group]
        if kind == "shortest-rejection":
            best = shortest_correct(candidates)
            if best is not None:
                selected.append(replace(sample_of[id(best)], reward=CHOSEN))
        elif kind == "dpo":
            pairs = dpo_pairs(candidates, objective["dpo"]["lengthRatio"])
            if pairs:
                selected.append(replace(sample_of[id(pairs[0][0])], reward=CHOSEN))
                selected += [replace(sample_of[id(rejected)], reward=REJECTED) for _, rejected in pairs]
        else:
            raise ValueError(f"spec.rl.objective.type: expected one of {list(OBJECTIVES)}, got {kind!r}")
    return selected


def sft_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor,
             group_ids: torch.Tensor, tau: float) -> PolicyLossStats:
    """Mean over prompts of the mean token negative log-likelihood of their selected responses."""
    mask = mask.to(logprobs.dtype)
    per_sample = -(logprobs * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    _, first = first_index_per_group(group_ids)
    loss = group_mean_baseline(per_sample, group_ids)[first].mean()
    log_ratio = ((logprobs - old_logprobs.detach()) * mask).sum(dim=1)
    return PolicyLossStats(loss=loss, mean_log_ratio=float(log_ratio.detach().mean()), mean_abs_advantage=0.0)


def dpo_group_loss(beta: float) -> LossFunction:
    """The DPO loss of each group's chosen sample against each of its rejected ones, averaged
    over a group's pairs, then over groups; sequence log-probs against the sampling policy's."""

    def loss_function(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor,
                      group_ids: torch.Tensor, tau: float) -> PolicyLossStats:
        mask = mask.to(logprobs.dtype)
        log_ratio = ((logprobs - old_logprobs.detach()) * mask).sum(dim=1)
        groups, inverse = torch.unique(group_ids, return_inverse=True)
        chosen = rewards == CHOSEN
        if int(torch.zeros(len(groups), dtype=torch.long, device=chosen.device).index_add_(
                0, inverse, chosen.long()).ne(1).sum()):
            raise ValueError("a DPO group must hold exactly one chosen sample (reward 1.0)")
        chosen_ratio = torch.zeros(len(groups), dtype=log_ratio.dtype, device=log_ratio.device).index_add_(
            0, inverse[chosen], log_ratio[chosen])
        margins = chosen_ratio[inverse[~chosen]] - log_ratio[~chosen]
        pair_losses = -F.logsigmoid(beta * margins)
        pair_groups = inverse[~chosen]
        sums = torch.zeros(len(groups), dtype=pair_losses.dtype, device=pair_losses.device).index_add_(0, pair_groups, pair_losses)
        counts = torch.zeros(len(groups), dtype=pair_losses.dtype, device=pair_losses.device).index_add_(
            0, pair_groups, torch.ones_like(pair_losses))
        has_pairs = counts > 0
        loss = (sums[has_pairs] / counts[has_pairs]).mean() if bool(has_pairs.any()) else logprobs.sum() * 0.0
        return PolicyLossStats(loss=loss, mean_log_ratio=float(log_ratio.detach().mean()),
                               mean_abs_advantage=float(margins.detach().abs().mean()) if len(margins) else 0.0)

    return loss_function


def objective_loss(objective: dict[str, Any]) -> LossFunction:
    """The loss function a trainer backend calls for spec.rl.objective."""
    kind = objective["type"]
    if kind == "mirror-descent":
        return kimi_policy_loss
    if kind == "shortest-rejection":
        return sft_loss
    if kind == "dpo":
        return dpo_group_loss(objective["dpo"]["beta"])
    raise ValueError(f"spec.rl.objective.type: expected one of {list(OBJECTIVES)}, got {kind!r}")
