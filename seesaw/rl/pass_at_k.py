"""pass@k from n samples per prompt: the unbiased estimator of Chen et al. (2021, Codex).

For a prompt with c correct of n samples, pass@k = 1 - C(n - c, k) / C(n, k): the chance
that at least one of k samples drawn from the n without replacement is correct. The mean
over prompts is the held-out pass@k; pass@1 is the mean accuracy.
"""
from __future__ import annotations

from math import comb


def pass_at_k(n: int, correct: int, k: int) -> float:
    if not 0 < k <= n:
        raise ValueError(f"k: expected 1 <= k <= n ({n}) samples, got {k}")
    if n - correct < k:
        return 1.0
    return 1.0 - comb(n - correct, k) / comb(n, k)


def mean_pass_at_k(per_prompt_scores: list[list[float]], k: int) -> float:
    """The mean over prompts of pass@k, each prompt's samples scored 1 (correct) or 0."""
    values = [pass_at_k(len(scores), sum(score == 1.0 for score in scores), k) for scores in per_prompt_scores]
    return sum(values) / len(values) if values else 0.0
