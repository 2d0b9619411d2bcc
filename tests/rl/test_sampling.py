"""Prompt samplers: deterministic, prioritised towards failures, curriculum from easy to hard."""
import random
from collections import Counter

import pytest

from seesaw.rl.sampling import CurriculumSampler, PrioritizedSampler, UniformSampler, make_sampler


def test_same_seed_same_prompts():
    sampler = PrioritizedSampler(100)
    assert sampler.sample(10, random.Random(3)) == sampler.sample(10, random.Random(3))
    assert len(set(sampler.sample(10, random.Random(3)))) == 10


def test_prioritised_sampling_prefers_failures_but_keeps_solved_prompts():
    sampler = PrioritizedSampler(4, momentum=0.0, floor=0.05)
    sampler.update([0, 1, 2, 3], [1.0, 1.0, 1.0, 0.0])  # only prompt 3 still fails
    rng = random.Random(0)
    counts = Counter(sampler.sample(1, rng)[0] for _ in range(2000))
    assert counts[3] > 1500
    assert sum(counts[i] for i in (0, 1, 2)) > 0


def test_success_rate_is_a_moving_average_and_state_round_trips():
    sampler = PrioritizedSampler(2, momentum=0.5)
    sampler.update([0], [1.0])
    sampler.update([0], [1.0])
    assert sampler.success == [0.75, 0.0]
    other = PrioritizedSampler(2)
    other.load_state(sampler.state())
    assert other.success == sampler.success
    with pytest.raises(ValueError, match="state has 2 prompts, the prompt set has 3"):
        PrioritizedSampler(3).load_state(sampler.state())


def test_curriculum_opens_from_easy_to_hard():
    difficulties = [5, 1, 4, 2, 3, 0, 9, 8, 7, 6]
    sampler = CurriculumSampler(difficulties, iterations=10, start_fraction=0.3)
    early = sampler.sample(10, random.Random(0), iteration=0)
    assert sorted(early) == sorted([5, 1, 3])  # the three easiest
    assert len(sampler.sample(10, random.Random(0), iteration=10)) == 10


def test_make_sampler_names_the_field_on_a_bad_strategy():
    assert isinstance(make_sampler("uniform", 3, 10), UniformSampler)
    with pytest.raises(ValueError, match="spec.rl.sampling.strategy"):
        make_sampler("greedy", 3, 10)
