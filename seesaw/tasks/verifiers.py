"""A task's score from the verifier registry (seesaw.rl.rewards), the only place a reward type is looked up."""
from __future__ import annotations

from typing import Any, Callable

from seesaw.rl import rewards
from seesaw.rl.rewards.sandbox import SandboxUnavailable
from seesaw.spec import SpecError
from seesaw.tasks.base import Problem, Task


def reference_of(reward_type: str) -> str:
    try:
        return rewards.verifier_reference(reward_type)
    except rewards.UnknownVerifier as err:
        raise SpecError("spec.reward.type", str(err).removeprefix("spec.reward.type: ")) from None


def verifier_scorer(reward_spec: dict[str, Any]) -> Callable[[str, Problem], float]:
    """A task's reward through the verifier registry (seesaw.rl.rewards): the problem's answer
    or its tests, whichever the verifier of spec.reward.type compares responses with. Refused
    here, when the job starts, where the verifier cannot run (the code sandbox unavailable)."""
    by_tests = reference_of(reward_spec["type"]) == "tests"
    try:
        verifier = rewards.verifier_for(reward_spec)
    except SandboxUnavailable as err:
        raise SpecError("spec.reward.type", f"{reward_spec['type']}: {err}; refusing to run responses unsandboxed") from None

    def score(response: str, problem: Problem) -> float:
        reference = [{"stdin": stdin, "stdout": stdout} for stdin, stdout in problem.tests] if by_tests else problem.answer
        return verifier.score(response, reference)

    return score


def with_reward(task: Task, reward_spec: dict[str, Any], source: str) -> Task:
    """A builtin task keeps its exact-answer score under the default math reward; any other
    registered verifier that compares answers scores it instead."""
    reward = reward_spec["type"]
    if reward == "math":
        return task
    if reference_of(reward) == "tests":
        raise SpecError("spec.reward.type", f"{reward} scores a program against tests; {source} has none (use a "
                        "JSONL, parquet or dataset source whose rows carry tests)")
    task.score = verifier_scorer(reward_spec)
    return task
