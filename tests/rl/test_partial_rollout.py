"""Partial rollouts: budget cuts, per-segment policy versions, repetition stops, the buffer and its JSON state."""
import json

import pytest

from seesaw.rl.partial_rollout import (STOP_EOS, STOP_MAX_TOKENS, STOP_REPETITION, PartialResponse,
                                       PartialRolloutBuffer, RepetitionDetector, extend, repetition_penalised,
                                       segment_budget)


def response(group_id=0, group_size=1, prompt_index=0):
    return PartialResponse(prompt_index=prompt_index, prompt_ids=[101, 102], group_id=group_id, group_size=group_size)


def test_a_response_cut_at_the_budget_is_continued_and_only_the_newest_segment_is_on_policy():
    r = response()
    extend(r, [1, 2, 3], [-0.1, -0.2, -0.3], policy_version=5, stopped=False, token_budget=3, max_tokens=10)
    assert not r.finished
    assert r.context_ids() == [101, 102, 1, 2, 3]
    assert segment_budget(r, token_budget=3, max_tokens=10) == 3
    extend(r, [4, 5], [-0.4, -0.5], policy_version=6, stopped=True, token_budget=3, max_tokens=10)
    assert r.stop_reason == STOP_EOS
    assert r.response_ids == [1, 2, 3, 4, 5]
    assert r.token_policy_versions() == [5, 5, 5, 6, 6]
    assert r.onpolicy_mask(6) == [False, False, False, True, True]
    sample = r.to_sample(reward=1.0)
    assert (sample.response_ids, sample.logprobs, sample.finished) == ([1, 2, 3, 4, 5], [-0.1, -0.2, -0.3, -0.4, -0.5], True)


def test_the_overall_limit_ends_a_response_even_mid_budget():
    r = response()
    extend(r, [1, 2, 3, 4], [0.0] * 4, 0, stopped=False, token_budget=4, max_tokens=6)
    assert segment_budget(r, 4, 6) == 2
    extend(r, [5, 6], [0.0] * 2, 1, stopped=False, token_budget=4, max_tokens=6)
    assert r.stop_reason == STOP_MAX_TOKENS


def test_segments_that_break_the_budget_contract_are_refused():
    with pytest.raises(ValueError, match="token_ids: expected at most 3 tokens"):
        extend(response(), [1, 2, 3, 4], [0.0] * 4, 0, stopped=False, token_budget=3, max_tokens=10)
    with pytest.raises(ValueError, match="neither stopped nor used"):
        extend(response(), [1], [0.0], 0, stopped=False, token_budget=3, max_tokens=10)
    with pytest.raises(ValueError, match="same length"):
        extend(response(), [1], [], 0, stopped=True, token_budget=3, max_tokens=10)
    done = extend(response(), [1], [0.0], 0, stopped=True, token_budget=3, max_tokens=10)
    with pytest.raises(ValueError, match="already ended"):
        extend(done, [2], [0.0], 1, stopped=True, token_budget=3, max_tokens=10)


def test_repetition_detector_finds_a_looping_tail_and_ignores_ordinary_text():
    detect = RepetitionDetector(max_period=4, min_repeats=3, min_tokens=6)
    assert detect.repeated_tail([9, 8, 1, 2, 3, 1, 2, 3, 1, 2, 3]) == 9  # period 3, three copies
    assert not detect([9, 8, 1, 2, 3, 1, 2, 3])  # only two copies
    assert not detect([7, 7, 7, 7, 7])  # period 1 but shorter than min_tokens
    assert detect([1, 7, 7, 7, 7, 7, 7])
    assert not detect(list(range(40)))
    with pytest.raises(ValueError, match="min_repeats"):
        RepetitionDetector(min_repeats=1)


def test_a_loop_spanning_segments_ends_the_response_and_is_penalised():
    detect = RepetitionDetector(max_period=2, min_repeats=4, min_tokens=8)
    r = response()
    extend(r, [5, 1, 2, 1], [0.0] * 4, 0, stopped=False, token_budget=4, max_tokens=100, detector=detect)
    assert not r.finished
    extend(r, [2, 1, 2, 1], [0.0] * 4, 1, stopped=False, token_budget=4, max_tokens=100, detector=detect)
    assert not r.finished  # 7 periodic tokens < min_tokens
    extend(r, [2, 1, 2, 1], [0.0] * 4, 2, stopped=False, token_budget=4, max_tokens=100, detector=detect)
    assert r.stop_reason == STOP_REPETITION
    assert repetition_penalised(1.0, r, penalty=0.5) == -0.5
    assert repetition_penalised(1.0, response(), penalty=0.5) == 1.0


def test_buffer_continues_oldest_first_and_releases_only_whole_groups():
    buffer = PartialRolloutBuffer()
    a, b, c = response(group_id=1, group_size=2), response(group_id=1, group_size=2), response(group_id=2, group_size=1)
    extend(a, [1], [0.0], 0, stopped=True, token_budget=2, max_tokens=10)
    extend(b, [1, 2], [0.0, 0.0], 0, stopped=False, token_budget=2, max_tokens=10)
    extend(c, [3, 4], [0.0, 0.0], 0, stopped=False, token_budget=2, max_tokens=10)
    buffer.add([a, b, c])
    assert len(buffer) == 2 and buffer.pop_complete_groups() == []
    first = buffer.take_unfinished(1)
    assert first == [b] and len(buffer) == 1
    extend(b, [5], [0.0], 1, stopped=True, token_budget=2, max_tokens=10)
    buffer.add(first)
    assert buffer.pop_complete_groups() == [[a, b]]
    assert buffer.pop_complete_groups() == []


def test_buffer_state_round_trips_through_json():
    buffer = PartialRolloutBuffer()
    done, open_ = response(group_id=3, group_size=2), response(group_id=3, group_size=2)
    extend(done, [1], [-1.5], 4, stopped=True, token_budget=2, max_tokens=10)
    extend(open_, [2, 3], [-0.5, -0.25], 4, stopped=False, token_budget=2, max_tokens=10)
    buffer.add([done, open_])
    restored = PartialRolloutBuffer.from_state(json.loads(json.dumps(buffer.state())))
    assert restored.unfinished == [open_]
    assert list(restored.waiting.items()) == [(3, [done])]
    with pytest.raises(ValueError, match="stop_reason"):
        PartialResponse.from_json({**done.to_json(), "stop_reason": "bored"})


def test_buffer_refuses_a_group_with_too_many_finished_members():
    buffer = PartialRolloutBuffer()
    one, two = response(group_id=1, group_size=1), response(group_id=1, group_size=1)
    for r in (one, two):
        extend(r, [1], [0.0], 0, stopped=True, token_budget=1, max_tokens=1)
    buffer.add([one])
    with pytest.raises(ValueError, match="more than group_size=1"):
        buffer.add([two])
