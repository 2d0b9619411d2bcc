"""The Kimi k1.5 policy loss: online mirror descent with relative-entropy regularisation.

For the k samples j of one prompt, drawn from the reference policy pi_i (the policy that
generated them), with rewards r_j and the mean-reward estimate r_bar of tau*log Z:

    L = (1/k) * sum_j ( r_j - r_bar - tau * log(pi_theta(y_j|x) / pi_i(y_j|x)) )^2

Its gradient is (up to the factor -2*tau) the report's
    (1/k) sum_j [ grad log pi_theta(y_j|x) * (r_j - r_bar) - (tau/2) grad (log pi_theta/pi_i)^2 ],
so minimising L is the mirror-descent step. log pi of a response is the sum of its token
log-probs. No value network: the baseline is the group's mean reward.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PolicyLossStats:
    loss: torch.Tensor
    mean_log_ratio: float
    mean_abs_advantage: float


def group_mean_baseline(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """r_bar of each sample's prompt group (the report's estimate of tau * log Z)."""
    groups, inverse = torch.unique(group_ids, return_inverse=True)
    sums = torch.zeros(len(groups), dtype=rewards.dtype).index_add_(0, inverse, rewards)
    counts = torch.zeros(len(groups), dtype=rewards.dtype).index_add_(0, inverse, torch.ones_like(rewards))
    return (sums / counts)[inverse]


def kimi_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    tau: float,
) -> PolicyLossStats:
    """Mean over prompts of the per-prompt squared mirror-descent residual.

    logprobs, old_logprobs, mask: [num_samples, max_response_len] token log-probs under
    pi_theta (with grad) and pi_i (the sampling policy), and 1 for real response tokens.
    rewards, group_ids: [num_samples]; samples with the same group id share a prompt.
    """
    if tau <= 0:
        raise ValueError(f"tau: expected > 0, got {tau}")
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} "
            f"and mask {tuple(mask.shape)} must have the same shape"
        )
    mask = mask.to(logprobs.dtype)
    log_ratio = ((logprobs - old_logprobs.detach()) * mask).sum(dim=1)
    rewards = rewards.to(logprobs.dtype)
    advantage = rewards - group_mean_baseline(rewards, group_ids)
    residual_sq = (advantage - tau * log_ratio) ** 2
    # (1/k) within a prompt, then mean over prompts: each prompt weighs the same.
    per_group = group_mean_baseline(residual_sq, group_ids)
    groups, first = first_index_per_group(group_ids)
    loss = per_group[first].mean()
    return PolicyLossStats(
        loss=loss,
        mean_log_ratio=float(log_ratio.detach().mean()),
        mean_abs_advantage=float(advantage.abs().mean()),
    )


def first_index_per_group(group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    groups, inverse = torch.unique(group_ids, return_inverse=True)
    first = torch.full((len(groups),), len(group_ids), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(group_ids)), reduce="amin")
    return groups, first
