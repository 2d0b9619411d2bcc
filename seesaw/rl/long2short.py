"""long2short: short-CoT policies from a long-CoT one (Kimi k1.5, section 2.4).

- model merging: a weighted average of a long-CoT and a short-CoT model's weights;
- shortest rejection sampling: of n samples per prompt, keep the shortest correct one for SFT;
- DPO pairs: positive = the shortest correct response; negatives = the incorrect ones and
  correct ones at least 1.5x longer than the positive; plus the DPO loss on sequence log-probs;
- long2short RL: the same job with the length penalty on and a smaller rollout length.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F


def merge_models(long_cot: Mapping[str, torch.Tensor], short_cot: Mapping[str, torch.Tensor],
                 long_weight: float = 0.5) -> dict[str, torch.Tensor]:
    """Parameter-wise average: long_weight * long + (1 - long_weight) * short."""
    if not 0.0 <= long_weight <= 1.0:
        raise ValueError(f"long_weight: expected a value in [0, 1], got {long_weight}")
    if set(long_cot) != set(short_cot):
        missing = sorted(set(long_cot) ^ set(short_cot))
        raise ValueError(f"the two models differ in parameter names, e.g. {missing[:3]}")
    merged = {}
    for name, tensor in long_cot.items():
        other = short_cot[name]
        if tensor.shape != other.shape:
            raise ValueError(f"{name}: shapes differ, {tuple(tensor.shape)} vs {tuple(other.shape)}")
        merged[name] = (long_weight * tensor.float() + (1.0 - long_weight) * other.float()).to(tensor.dtype)
    return merged


@dataclass(frozen=True)
class Candidate:
    """One sampled response to a prompt, scored."""

    text: str
    length: int
    correct: bool


def shortest_correct(candidates: Sequence[Candidate]) -> Candidate | None:
    """Shortest rejection sampling: the SFT target for one prompt, or None if none is correct."""
    correct = [c for c in candidates if c.correct]
    return min(correct, key=lambda c: c.length) if correct else None


def dpo_pairs(candidates: Sequence[Candidate], length_ratio: float = 1.5) -> list[tuple[Candidate, Candidate]]:
    """(chosen, rejected) pairs for one prompt."""
    positive = shortest_correct(candidates)
    if positive is None:
        return []
    negatives = [c for c in candidates if not c.correct or (c is not positive and c.length >= length_ratio * positive.length)]
    return [(positive, negative) for negative in negatives]


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), averaged over pairs (sequence log-probs)."""
    margin = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * margin).mean()


def long2short_rl_manifest(manifest: dict[str, Any], length_penalty_weight: float = 0.5,
                           max_tokens_fraction: float = 0.5) -> dict[str, Any]:
    """The RLJob for the long2short RL phase: length penalty on from the start, shorter rollouts."""
    out = copy.deepcopy(manifest)
    spec = out["spec"]
    spec["rl"]["lengthPenalty"] = {"weight": length_penalty_weight, "warmupIterations": 0}
    spec["rollout"]["maxTokens"] = max(1, int(spec["rollout"]["maxTokens"] * max_tokens_fraction))
    out["metadata"] = {**out.get("metadata", {}), "name": f"{out['metadata']['name']}-long2short"}
    return out
