"""spec.rl.objective: which samples an iteration trains on, and the loss the backends call."""
import math

import pytest
import torch
import torch.nn.functional as F

from seesaw.interfaces import Sample
from seesaw.rl.loss import kimi_policy_loss
from seesaw.rl.objectives import dpo_group_loss, objective_loss, sft_loss, training_samples


def sample(prompt: int, length: int) -> Sample:
    return Sample(prompt, [1], list(range(3, 3 + length)), [-0.5] * length)


def test_shortest_rejection_keeps_each_prompts_shortest_correct_sample():
    samples = [sample(0, 9), sample(0, 4), sample(0, 2), sample(1, 5), sample(1, 6)]
    correct = [1.0, 1.0, 0.0, 0.0, 0.0]  # prompt 0: the 2-token one is wrong; prompt 1: none right
    chosen = training_samples(samples, correct, {"type": "shortest-rejection"})
    assert [(s.prompt_index, len(s.response_ids), s.reward) for s in chosen] == [(0, 4, 1.0)]


def test_dpo_groups_the_chosen_sample_first_then_the_wrong_and_much_longer_ones():
    samples = [sample(0, 9), sample(0, 4), sample(0, 5), sample(0, 3), sample(1, 5), sample(2, 4)]
    correct = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    picked = training_samples(samples, correct, {"type": "dpo", "dpo": {"beta": 0.1, "lengthRatio": 1.5}})
    # prompt 0: chosen the 4-token one; rejected the 9-token (>= 1.5x) and the wrong one, not the 5-token
    # prompt 1: one correct sample and nothing to reject; prompt 2: nothing correct -> no pairs
    assert [(s.prompt_index, len(s.response_ids), s.reward) for s in picked] == [(0, 4, 1.0), (0, 9, 0.0), (0, 3, 0.0)]


def test_mirror_descent_trains_on_every_sample():
    samples = [sample(0, 2), sample(0, 3)]
    assert training_samples(samples, [0.0, 1.0], {"type": "mirror-descent"}) is samples
    assert objective_loss({"type": "mirror-descent"}) is kimi_policy_loss
    with pytest.raises(ValueError, match="spec.rl.objective.type"):
        training_samples(samples, [0.0, 1.0], {"type": "ppo"})


def test_sft_loss_weighs_prompts_equally_and_ignores_padding():
    logprobs = torch.tensor([[-1.0, -3.0, 0.0], [-2.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    stats = sft_loss(logprobs, logprobs.detach(), mask, torch.ones(2), torch.tensor([0, 1]), tau=0.1)
    assert stats.loss.item() == pytest.approx((2.0 + 2.0) / 2)  # prompt 0: mean of 1 and 3; prompt 1: 2
    stats.loss.backward()
    assert logprobs.grad[0, 2] == 0.0 and logprobs.grad[0, 0] == pytest.approx(-0.25)


def test_dpo_group_loss_matches_the_pairwise_formula():
    # group 0: chosen (row 0) against rows 1 and 2; group 1: chosen (row 3) against row 4
    logprobs = torch.tensor([[-1.0], [-2.0], [-0.5], [-1.0], [-1.0]])
    old = torch.tensor([[-1.5], [-1.0], [-1.0], [-1.0], [-2.0]])
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    groups = torch.tensor([7, 7, 7, 9, 9])
    beta = 0.5
    stats = dpo_group_loss(beta)(logprobs, old, torch.ones(5, 1), rewards, groups, tau=0.1)
    ratio = (logprobs - old)[:, 0]

    def pair(c: int, r: int) -> float:
        return -F.logsigmoid(beta * (ratio[c] - ratio[r])).item()

    expected = ((pair(0, 1) + pair(0, 2)) / 2 + pair(3, 4)) / 2
    assert stats.loss.item() == pytest.approx(expected)
    # at the reference (pi_theta == pi_i) every margin is 0: the loss is log 2
    at_reference = dpo_group_loss(beta)(old, old, torch.ones(5, 1), rewards, groups, tau=0.1)
    assert at_reference.loss.item() == pytest.approx(math.log(2))


def test_dpo_group_loss_refuses_a_group_without_exactly_one_chosen_sample():
    x = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="exactly one chosen"):
        dpo_group_loss(0.1)(x, x, torch.ones(2, 1), torch.tensor([1.0, 1.0]), torch.tensor([0, 0]), tau=0.1)
