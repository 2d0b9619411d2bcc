"""spec.rl.truncated: what a response cut at maxTokens contributes."""
import pytest

from seesaw.interfaces import Sample
from seesaw.rl.truncation import apply

SAMPLES = [Sample(0, [1], [5, 6], [-1.0, -1.0], finished=True), Sample(0, [1], [5, 6, 7, 8], [-1.0] * 4, finished=False),
           Sample(1, [1], [7], [-1.0], finished=False)]
SCORES = [1.0, 1.0, 0.0]


def test_score_keeps_the_verdict_zero_takes_it_away_mask_leaves_the_response_out():
    assert apply("score", SAMPLES, SCORES) == ([0, 1, 2], [1.0, 1.0, 0.0])
    assert apply("zero", SAMPLES, SCORES) == ([0, 1, 2], [1.0, 0.0, 0.0])
    assert apply("mask", SAMPLES, SCORES) == ([0], [1.0])


def test_an_unknown_policy_names_the_field():
    with pytest.raises(ValueError, match=r"spec.rl.truncated: expected one of \['score', 'zero', 'mask'\], got 'drop'"):
        apply("drop", SAMPLES, SCORES)
