"""Partial rollouts: budgeted segments, the on-policy boundary, groups, repetition."""
import pytest

from seesaw.rl.partial_rollout import PartialRolloutBuffer, repeats_at_tail


def test_a_long_response_is_built_over_several_segments():
    buffer = PartialRolloutBuffer(token_budget=2, max_tokens=5)
    group = buffer.add_group(problem_index=7, prompt_ids=[1, 2], k=1)
    response = group.members[0]
    buffer.extend(response, [10, 11], [-0.1, -0.2], stopped=False)
    assert not response.finished and buffer.pop_finished() == []
    buffer.extend(response, [12, 13], [-0.3, -0.4], stopped=False)
    assert response.on_policy_from == 2 and not response.finished
    buffer.extend(response, [14, 15], [-0.5, -0.6], stopped=False)  # cut at max_tokens
    assert response.response_ids == [10, 11, 12, 13, 14] and response.on_policy_from == 4
    assert response.logprobs == [-0.1, -0.2, -0.3, -0.4, -0.5] and response.finished
    assert [g.problem_index for g in buffer.pop_finished()] == [7] and buffer.groups == []


def test_a_group_waits_for_its_slowest_member():
    buffer = PartialRolloutBuffer(token_budget=4, max_tokens=16)
    group = buffer.add_group(0, [1], k=2)
    buffer.extend(group.members[0], [5, 2], [-1.0, -1.0], stopped=True)
    buffer.extend(group.members[1], [5, 6, 7, 8], [-1.0] * 4, stopped=False)
    assert buffer.pop_finished() == [] and list(buffer.unfinished()) == [group.members[1]]
    buffer.extend(group.members[1], [2], [-1.0], stopped=True)
    assert buffer.pop_finished() == [group]


def test_repetition_ends_a_response_early():
    assert repeats_at_tail([3, 4, 5, 9, 9, 9, 9])
    assert repeats_at_tail([1, 7, 8, 7, 8, 7, 8, 7, 8])
    assert not repeats_at_tail([1, 2, 3, 4, 5, 6, 7, 8])
    buffer = PartialRolloutBuffer(token_budget=8, max_tokens=100)
    response = buffer.add_group(0, [1], k=1).members[0]
    buffer.extend(response, [4, 4, 4, 4], [-0.1] * 4, stopped=False)
    assert response.finished and response.repeated


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError, match="token_budget"):
        PartialRolloutBuffer(token_budget=0, max_tokens=10)


def test_a_member_that_finished_under_an_older_policy_has_no_on_policy_tokens():
    buffer = PartialRolloutBuffer(token_budget=4, max_tokens=16)
    buffer.begin_iteration()
    group = buffer.add_group(0, [1], k=2)
    buffer.extend(group.members[0], [5, 2], [-1.0, -1.0], stopped=True)  # done in iteration 1
    buffer.extend(group.members[1], [5, 6, 7, 8], [-1.0] * 4, stopped=False)
    assert buffer.pop_finished() == []
    buffer.begin_iteration()  # the policy was trained in between
    buffer.extend(group.members[1], [2], [-1.0], stopped=True)
    assert buffer.pop_finished() == [group]
    assert group.members[1].on_policy_from == 4, "the newest segment is this iteration's"
    assert group.members[0].on_policy_from == 2, "all of it came from the older policy: left out of the loss"
