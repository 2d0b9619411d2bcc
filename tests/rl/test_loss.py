"""The Kimi k1.5 policy loss against a hand-worked example and finite differences."""
import pytest
import torch

from seesaw.rl.loss import group_mean_baseline, kimi_policy_loss


def test_group_mean_baseline_is_mean_reward_of_each_prompt():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 0, 7, 7])
    assert group_mean_baseline(rewards, groups).tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1.0, 1.0])


def test_loss_matches_hand_worked_example():
    # One prompt, k = 2 samples, one token each. tau = 0.5.
    # r = (1, 0) -> r_bar = 0.5, advantages (0.5, -0.5).
    # log ratios: (0.2 - 0.0, -0.1 - 0.1) = (0.2, -0.2).
    # residuals: 0.5 - 0.5*0.2 = 0.4 ; -0.5 - 0.5*(-0.2) = -0.4 ; mean of squares = 0.16.
    logprobs = torch.tensor([[0.2], [-0.1]])
    old = torch.tensor([[0.0], [0.1]])
    stats = kimi_policy_loss(logprobs, old, torch.ones(2, 1), torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), tau=0.5)
    assert stats.loss.item() == pytest.approx(0.16)


def test_padding_tokens_do_not_count():
    logprobs = torch.tensor([[0.2, 5.0], [-0.1, -7.0]])
    old = torch.tensor([[0.0, 0.0], [0.1, 0.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    stats = kimi_policy_loss(logprobs, old, mask, torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), tau=0.5)
    assert stats.loss.item() == pytest.approx(0.16)


def test_each_prompt_weighs_the_same_whatever_its_sample_count():
    # Prompt A: 1 sample, residual 0. Prompt B: 3 samples, residuals from the example above.
    logprobs = torch.tensor([[0.0], [0.2], [-0.1], [0.0]])
    old = torch.tensor([[0.0], [0.0], [0.1], [0.0]])
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.5])
    groups = torch.tensor([0, 1, 1, 1])
    stats = kimi_policy_loss(logprobs, old, torch.ones(4, 1), rewards, groups, tau=0.5)
    # group B: r_bar = 0.5, residuals 0.4, -0.4, 0 -> mean sq 0.32/3 ; group A: 0.
    assert stats.loss.item() == pytest.approx((0.32 / 3) / 2)


def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    theta = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)  # logits per sample/token
    tokens = torch.randint(0, 5, (6, 3))
    old = torch.log_softmax(torch.randn(6, 3, 5, dtype=torch.float64), -1).gather(-1, tokens[..., None])[..., 0]
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.float64)
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])

    def loss_of(t):
        lp = torch.log_softmax(t, -1).gather(-1, tokens[..., None])[..., 0]
        return kimi_policy_loss(lp, old, mask, rewards, groups, tau=0.3).loss

    assert torch.autograd.gradcheck(loss_of, (theta,), eps=1e-6, atol=1e-6)


def test_gradient_at_the_reference_is_advantage_weighted_score():
    # At theta = theta_i the log ratio is 0, so dL/dlogpi_j = -2 tau (r_j - r_bar) / (k * prompts).
    logprobs = torch.tensor([[-1.0], [-2.0], [-0.5]], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0, 0.0])
    stats = kimi_policy_loss(logprobs, logprobs.detach().clone(), torch.ones(3, 1), rewards, torch.zeros(3), tau=0.2)
    stats.loss.backward()
    advantages = rewards - rewards.mean()
    assert logprobs.grad[:, 0].tolist() == pytest.approx((-2 * 0.2 * advantages / 3).tolist())


def test_rejects_non_positive_tau_and_mismatched_shapes():
    x = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="tau"):
        kimi_policy_loss(x, x, x, torch.zeros(2), torch.zeros(2), tau=0.0)
    with pytest.raises(ValueError, match="same shape"):
        kimi_policy_loss(x, torch.zeros(2, 2), x, torch.zeros(2), torch.zeros(2), tau=0.1)
