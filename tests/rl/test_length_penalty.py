"""Kimi k1.5 length reward against hand-worked values."""
import pytest

from seesaw.rl.length_penalty import add_length_rewards, length_penalty_weight, length_rewards


def test_hand_worked_group():
    # lengths 10, 20, 30: lambda = 0.5, 0.0, -0.5
    assert length_rewards([10, 20, 30], [True, True, True]) == pytest.approx([0.5, 0.0, -0.5])
    # a wrong answer never gains from being short: min(0, lambda)
    assert length_rewards([10, 20, 30], [False, True, False]) == pytest.approx([0.0, 0.0, -0.5])


def test_equal_lengths_give_no_length_reward():
    assert length_rewards([7, 7, 7], [True, False, True]) == [0.0, 0.0, 0.0]


def test_warm_up_switches_it_on_after_the_given_iterations():
    assert [length_penalty_weight(0.2, 3, i) for i in (1, 3, 4, 10)] == [0.0, 0.0, 0.2, 0.2]


def test_batch_is_grouped_by_prompt_and_weighted():
    bonus = add_length_rewards([0, 1, 0, 1], [2, 5, 4, 5], [True, True, True, False], weight=0.1)
    # prompt 0: lengths 2, 4 -> 0.5, -0.5 ; prompt 1: equal lengths -> 0
    assert bonus == pytest.approx([0.05, 0.0, -0.05, 0.0])
    assert add_length_rewards([0, 0], [1, 9], [True, True], weight=0.0) == [0.0, 0.0]


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="same length"):
        length_rewards([1, 2], [True])
