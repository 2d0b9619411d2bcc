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


def test_hand_worked_uneven_group():
    # lengths 100, 150, 300, 500: spread 400, lambda = 0.5, 0.375, 0.0, -0.5
    assert length_rewards([100, 150, 300, 500], [True, False, True, True]) == pytest.approx([0.5, 0.0, 0.0, -0.5])


def test_linear_warm_up_ramps_from_zero_to_the_full_weight():
    weights = [length_penalty_weight(0.4, 4, i, schedule="linear") for i in (1, 2, 3, 5, 9)]
    assert weights == pytest.approx([0.0, 0.1, 0.2, 0.4, 0.4])
    assert length_penalty_weight(0.4, 0, 1, schedule="linear") == 0.4


def test_no_warm_up_means_on_from_the_first_iteration():
    assert length_penalty_weight(0.3, 0, 1) == 0.3


def test_bad_schedule_and_weight_name_the_argument():
    with pytest.raises(ValueError, match="schedule: expected one of"):
        length_penalty_weight(0.1, 2, 3, schedule="cosine")
    with pytest.raises(ValueError, match="weight: expected >= 0"):
        length_penalty_weight(-0.1, 2, 3)


def test_interleaved_groups_are_grouped_by_prompt_id():
    bonus = add_length_rewards([7, 3, 7, 3, 7], [10, 1, 30, 3, 20], [True, True, False, True, True], weight=1.0)
    # prompt 7: lengths 10, 30, 20 -> 0.5, min(0, -0.5), 0.0 ; prompt 3: lengths 1, 3 -> 0.5, -0.5
    assert bonus == pytest.approx([0.5, 0.5, -0.5, -0.5, 0.0])


def test_batch_with_mismatched_columns_is_refused():
    with pytest.raises(ValueError, match="prompt_ids"):
        add_length_rewards([0, 0], [1], [True, True], weight=0.1)
