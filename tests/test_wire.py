"""Samples on the wire (seesaw.wire) and a pod's share of a batch (seesaw.rl.training.BatchShare)."""
from __future__ import annotations

import numpy as np
import pytest

from seesaw import wire
from seesaw.interfaces import Sample
from seesaw.rl.training import BatchShare, MiniBatchStats, ranks_groups, train_iteration

RL = {"miniBatchPrompts": 2, "epochsPerIteration": 2}


def batch(prompts: int = 5, k: int = 3) -> list[Sample]:
    return [Sample(p, [1, p + 2], [p * 10 + i, 7, 8][: 1 + i], [-0.5 * i] * (1 + i), reward=float(i), finished=i != 1,
                   train_from=i % 2) for p in range(prompts) for i in range(k)]


def test_a_batch_round_trips_with_its_metadata_and_groups():
    samples = batch()
    payload = wire.encode_samples(samples, {"tau": 0.1, "prompts": 5}, [s.prompt_index for s in samples])
    as_arrays, meta, groups = wire.decode_samples(payload)
    as_lists, _, _ = wire.decode_samples(payload, as_lists=True)
    assert meta == {"tau": 0.1, "prompts": 5} and groups == [s.prompt_index for s in samples]
    assert as_lists == samples
    assert isinstance(as_arrays[0].response_ids, np.ndarray)
    assert [wire.sample_record(s) for s in as_arrays] == [wire.sample_record(s) for s in samples]
    # a decoded sample goes on the wire again unchanged (the conductor forwards views)
    assert wire.decode_samples(wire.encode_samples(as_arrays), as_lists=True)[0] == samples


def test_engines_buffers_join_as_one_with_their_prompt_indices_moved_on():
    first, second = batch(prompts=2), batch(prompts=3)  # a pod's two engines' answers to prompts 0-1 and 2-4
    joined = wire.concatenate([wire.encode_samples(first), wire.encode_samples(second)], [0, 2], {"seconds": [0.5, 1.5]})
    samples, meta, _ = wire.decode_samples(joined, as_lists=True)
    moved = [Sample(s.prompt_index + 2, s.prompt_ids, s.response_ids, s.logprobs, reward=s.reward, finished=s.finished,
                    train_from=s.train_from) for s in second]
    assert samples == first + moved and meta == {"seconds": [0.5, 1.5]}
    assert wire.decode_samples(wire.concatenate([], [], {"seconds": []})) == ([], {"seconds": []}, None)
    grouped = wire.encode_samples(first, groups=[0] * len(first))
    with pytest.raises(ValueError, match="buffers with different columns cannot be joined"):
        wire.concatenate([grouped, wire.encode_samples(second)], [0, 2])


def test_an_empty_batch_and_samples_without_logprobs():
    assert wire.decode_samples(wire.encode_samples([])) == ([], {}, None)
    scored = [Sample(4, [], [5, 6, 7], []), Sample(9, [], [1], [])]
    assert wire.decode_samples(wire.encode_samples(scored), as_lists=True)[0] == scored


class Recorder:
    """A MiniBatchTrainer that records what each step trained on and its prompts' weight."""

    def __init__(self) -> None:
        self.steps: list[tuple[list[int], float]] = []

    def train_mini_batch(self, groups, prompt_weight, tau):
        self.steps.append(([g[0].prompt_index for g in groups], prompt_weight))
        return MiniBatchStats(loss=1.0, tokens=1, log_ratio=0.0, max_abs_logprob_diff=0.0, grad_norm=0.0)


def test_a_rank_trains_on_its_pods_share_as_on_the_whole_batch():
    samples, dp_size = batch(prompts=7), 4
    pod_ranks = [2, 3]  # the second pod of two, two ranks each
    whole = BatchShare.whole(samples)
    positions = ranks_groups(whole.total, pod_ranks, dp_size)
    assert positions == [2, 3, 6]
    sent = [s for g in positions for s in whole.groups[g]]
    pod_share = BatchShare.of(sent, [g for g in positions for _ in whole.groups[g]], whole.total)
    for rank in pod_ranks:
        from_whole, from_share = Recorder(), Recorder()
        train_iteration(from_whole, samples, RL, 0.1, seed=3, dp_rank=rank, dp_size=dp_size)
        train_iteration(from_share, pod_share, RL, 0.1, seed=3, dp_rank=rank, dp_size=dp_size)
        assert from_share.steps == from_whole.steps and from_share.steps


def test_a_rank_whose_prompts_were_not_sent_is_told_which():
    share = BatchShare.of(batch(prompts=2), [0, 0, 0, 1, 1, 1], total=4)
    with pytest.raises(ValueError, match=r"data-parallel rank 0 of 2 trains on prompts \[2\] of the batch's 4, which this pod was not sent"):
        train_iteration(Recorder(), share, RL, 0.1, seed=0, dp_rank=0, dp_size=2)
