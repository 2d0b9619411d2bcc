"""builtin:add-scratchpad: column-by-column working of varied length, scored on the answer alone."""
import random

import pytest

from seesaw.spec import SpecError
from seesaw.tasks.base import Problem
from seesaw.tasks.scratchpad import addition_scratchpad_task, checks, scratchpad_answer, working


def test_the_working_carries_column_by_column():
    assert working("352+479=", restate=False, notes=False) == "2+9=11,5+7+1=13,3+4+1=8"
    assert working("352+479=", restate=True, notes=True) == "352+479|2+9=11 w1c1,5+7+1=13 w3c1,3+4+1=8 w8"


def test_only_the_answer_after_the_last_mark_counts():
    problem = Problem("352+479=", "831")
    assert scratchpad_answer("2+9=11,5+7+1=13,3+4+1=8>831", problem) == 1.0
    assert scratchpad_answer(">831", problem) == 1.0
    assert scratchpad_answer("8>831>832", problem) == 0.0
    assert scratchpad_answer("831", problem) == 0.0  # no answer mark
    # checks after the answer line are not read, right or wrong
    assert scratchpad_answer("2+9=11>831\ncheck 479+352=831", problem) == 1.0
    assert scratchpad_answer("2+9=11>832\ncheck 479+352=831", problem) == 0.0


def test_the_checks_verify_the_answer_after_it():
    assert checks("352+479=", "831", 0) == ""
    assert checks("352+479=", "831", 2) == "\ncheck 479+352=831\ncheck 831-479=352"


def test_varied_demonstrations_differ_in_length_and_are_all_right():
    task = addition_scratchpad_task(3, 64, "varied", train_count=500)
    rng = random.Random(0)
    problem = task.train[0]
    demos = {task.demonstrate(problem, rng) for _ in range(80)}
    assert len(demos) == 12  # restated or not x notes or not x 0, 1 or 2 checks
    assert all(task.score(d, problem) == 1.0 for d in demos)
    lengths = sorted(len(d) for d in demos)
    assert lengths[-1] > 2.5 * lengths[0]
    assert {d.count("\ncheck ") for d in demos} == {0, 1, 2}
    concise = addition_scratchpad_task(3, 64, "concise", train_count=500)
    assert {concise.demonstrate(problem, rng) for _ in range(10)} == {min(demos, key=len)}
    none = addition_scratchpad_task(3, 64, "none", train_count=500)
    assert none.demonstrate(problem, rng) == ">" + problem.answer


def test_held_out_prompts_are_not_trained_on_and_bad_settings_are_named():
    task = addition_scratchpad_task(3, 64, train_count=500)
    assert len(task.eval) == 64 and not {p.prompt for p in task.eval} & {p.prompt for p in task.train}
    with pytest.raises(SpecError, match="spec.prompts.scratchpad"):
        addition_scratchpad_task(3, 64, "terse")
    with pytest.raises(SpecError, match="spec.rl.evaluation.prompts"):
        addition_scratchpad_task(2, 5000)
