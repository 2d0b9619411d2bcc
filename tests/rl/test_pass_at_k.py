"""pass@k: the unbiased estimator, against counting every k-subset by hand."""
from itertools import combinations

import pytest

from seesaw.rl.pass_at_k import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize("n, correct, k", [(4, 0, 1), (4, 1, 1), (4, 1, 2), (5, 2, 3), (8, 3, 4), (6, 6, 2)])
def test_equals_the_share_of_k_subsets_with_a_correct_sample(n, correct, k):
    samples = [1] * correct + [0] * (n - correct)
    subsets = list(combinations(range(n), k))
    assert pass_at_k(n, correct, k) == pytest.approx(sum(any(samples[i] for i in s) for s in subsets) / len(subsets))


def test_pass_at_1_is_the_accuracy_and_k_beyond_n_is_refused():
    scores = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0]]
    assert mean_pass_at_k(scores, 1) == pytest.approx((0.25 + 0.75) / 2)
    assert mean_pass_at_k(scores, 4) == 1.0
    with pytest.raises(ValueError, match="k: expected 1 <= k <= n"):
        mean_pass_at_k(scores, 5)
