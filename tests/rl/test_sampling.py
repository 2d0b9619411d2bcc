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


def test_without_a_generator_the_draw_depends_on_seed_and_iteration_only():
    first, again = UniformSampler(50, seed=7), UniformSampler(50, seed=7)
    assert first.sample(5, iteration=3) == again.sample(5, iteration=3)
    assert first.sample(5, iteration=3) != first.sample(5, iteration=4)
    assert UniformSampler(50, seed=8).sample(5, iteration=3) != first.sample(5, iteration=3)


def test_count_is_capped_at_the_prompt_set_and_negative_counts_are_refused():
    assert sorted(UniformSampler(4).sample(10)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="count: expected >= 0"):
        UniformSampler(4).sample(-1)


def test_repeated_prompt_entries_are_averaged_before_the_moving_average():
    sampler = PrioritizedSampler(3, momentum=0.5)
    # prompt 1's k=4 samples: mean 0.5 -> s_1 = 0.5 * 0 + 0.5 * 0.5
    sampler.update([1, 1, 1, 1], [1.0, 0.0, 1.0, 0.0])
    assert sampler.success == [0.0, 0.25, 0.0]
    assert sampler.weights() == pytest.approx([1.0, 0.75, 1.0])
    with pytest.raises(ValueError, match=r"indices: expected prompt indices in \[0, 3\), got 5"):
        sampler.update([5], [1.0])


def test_weights_have_a_floor_so_solved_prompts_stay_drawable():
    sampler = PrioritizedSampler(2, momentum=0.0, floor=0.1)
    sampler.update([0, 1], [1.0, 0.2])
    assert sampler.weights() == pytest.approx([0.1, 0.8])
    with pytest.raises(ValueError, match="floor"):
        PrioritizedSampler(2, floor=0.0)


def test_every_sampler_state_survives_json_and_resumes_the_same_draws():
    import json
    for sampler in (UniformSampler(20, seed=3), PrioritizedSampler(20, seed=3),
                    CurriculumSampler(list(range(20)), iterations=5, seed=3)):
        sampler.update([0, 1], [1.0, 0.0])
        restored = type(sampler).__new__(type(sampler))
        restored.__dict__.update(sampler.__dict__)
        restored.seed = 999
        restored.load_state(json.loads(json.dumps(sampler.state())))
        assert restored.sample(6, iteration=4) == sampler.sample(6, iteration=4)


def test_state_of_another_strategy_is_refused():
    with pytest.raises(ValueError, match="strategy 'uniform'"):
        PrioritizedSampler(3).load_state(UniformSampler(3).state())


def test_curriculum_from_pass_rates_starts_with_the_most_solved():
    sampler = CurriculumSampler.from_pass_rates([0.1, 0.9, 0.5, 1.0], iterations=4, start_fraction=0.5)
    assert sorted(sampler.sample(4, iteration=0)) == [1, 3]
    assert sampler.open_count(2) == 3  # 0.5 + 0.5 * 2/4 = 0.75 of 4
    assert sorted(sampler.sample(4, iteration=4)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"pass_rates\[1\]"):
        CurriculumSampler.from_pass_rates([0.1, 1.5], iterations=4)


def test_curation_drops_guessed_and_unverifiable_prompts():
    from seesaw.rl.sampling import curate_prompts

    def exact(answer, reference):
        return 1.0 if answer == reference else 0.0

    answers = [["1"] * 7 + ["4"],  # right on the 8th try: guessed
               ["1"] * 8 + ["9"],  # right only on the 9th: beyond N = 8, kept
               ["0"] * 8,
               ["3"] * 8]
    curation = curate_prompts(["4", "9", "2", None], answers, exact)
    assert (curation.kept, curation.guessed, curation.unverifiable) == ([1, 2], [0], [3])
    with pytest.raises(ValueError, match=r"no_cot_answers\[0\]: expected at least 8 answers, got 2"):
        curate_prompts(["4"], [["1", "2"]], exact)
