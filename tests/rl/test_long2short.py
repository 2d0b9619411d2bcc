"""long2short pieces: merging, shortest rejection sampling, DPO pairs and loss, the RL variant."""
import math

import pytest
import torch

from pod_helpers import tiny_manifest
from seesaw.rl.long2short import Candidate, dpo_loss, dpo_pairs, long2short_rl_manifest, merge_models, shortest_correct


def test_merge_is_a_weighted_average_and_names_a_mismatch():
    long, short = {"w": torch.tensor([2.0, 4.0])}, {"w": torch.tensor([0.0, 0.0])}
    assert merge_models(long, short, 0.25)["w"].tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match=r"w: shapes differ, \(2,\) vs \(3,\)"):
        merge_models(long, {"w": torch.zeros(3)})
    with pytest.raises(ValueError, match="parameter names"):
        merge_models(long, {"v": torch.zeros(2)})


def test_shortest_correct_and_dpo_pairs():
    a, b, c, d = Candidate("a", 10, True), Candidate("b", 14, True), Candidate("c", 15, True), Candidate("d", 3, False)
    assert shortest_correct([b, a, d]) is a
    assert shortest_correct([d]) is None
    # b is correct but less than 1.5x longer than a: not a negative; c (1.5x) and d (wrong) are
    assert dpo_pairs([a, b, c, d]) == [(a, c), (a, d)]
    assert dpo_pairs([d]) == []


def test_dpo_loss_hand_worked():
    # margin = (−1 − −2) − (−3 − −2) = 2 ; beta 0.5 -> −log σ(1)
    loss = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1))))


def test_long2short_rl_variant_turns_the_length_penalty_on():
    manifest = tiny_manifest()
    variant = long2short_rl_manifest(manifest, length_penalty_weight=0.3)
    assert variant["spec"]["rl"]["lengthPenalty"] == {"weight": 0.3, "warmupIterations": 0}
    assert variant["spec"]["rollout"]["maxTokens"] == manifest["spec"]["rollout"]["maxTokens"] // 2
    assert variant["metadata"]["name"] == "tiny-reverse-long2short"
    assert manifest["spec"]["rl"]["lengthPenalty"]["weight"] == 0.0  # the original is untouched
