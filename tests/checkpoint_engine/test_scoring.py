"""The verifier's check before a pod scores anything: a right answer must score 1."""
import dataclasses

import pytest

from seesaw.checkpoint_engine.scoring import check_verifier
from seesaw.spec import SpecError
from seesaw.tasks.builtin import reverse_task


def test_a_verifier_that_scores_a_right_answer_0_stops_the_pod_before_it_scores_samples():
    task = reverse_task(digits=4, eval_count=8)
    check_verifier(task)  # the task's own right answers score 1
    broken = dataclasses.replace(task, score=lambda response, problem: 0.0)  # e.g. its worker past a memory limit
    with pytest.raises(SpecError, match=r"spec.reward.type: the verifier scores a right answer wrong on this pod"):
        check_verifier(broken)
