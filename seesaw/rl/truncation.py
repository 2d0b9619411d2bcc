"""What a response cut at rollout.maxTokens contributes (spec.rl.truncated).

A cut response never finished its reasoning: whatever the verifier finds in it was not
the model's final answer. `score` keeps the verifier's verdict (a cut response that
already wrote the right answer earns it); `zero` scores every cut response 0, a penalty
for running out of room (the length penalty then treats it as wrong); `mask` leaves cut
responses out of the loss, their group's baseline taken over the responses that finished.
Under partial rollouts (rl.partialRollout) a response is cut only at the whole budget.
"""
from __future__ import annotations

from seesaw.interfaces import Sample

POLICIES = ("score", "zero", "mask")


def apply(policy: str, samples: list[Sample], scores: list[float]) -> tuple[list[int], list[float]]:
    """The indices of the samples to train on under `policy`, and their scores."""
    if policy not in POLICIES:
        raise ValueError(f"spec.rl.truncated: expected one of {list(POLICIES)}, got {policy!r}")
    if policy == "mask":
        kept = [i for i, sample in enumerate(samples) if sample.finished]
        return kept, [scores[i] for i in kept]
    if policy == "zero":
        return list(range(len(samples))), [score if s.finished else 0.0 for s, score in zip(samples, scores)]
    return list(range(len(samples))), list(scores)
