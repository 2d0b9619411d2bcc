"""A task: prompts with reference answers, split into train and held-out eval sets, and its score."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Problem:
    prompt: str
    answer: str
    # for curriculum sampling: a label, or None to fall back on the answer's length
    difficulty: float | None = None
    # code problems: (stdin, expected stdout) pairs the response's program must satisfy
    tests: tuple[tuple[str, str], ...] = ()


@dataclass
class Task:
    name: str
    train: list[Problem]
    eval: list[Problem]
    # reward of a response text for a problem: 1.0 correct, 0.0 not
    score: Callable[[str, Problem], float]
    # the characters a generated tokenizer must cover
    alphabet: str
    # a plausible wrong answer, for deliberately imperfect SFT demonstrations (None: not offered)
    wrong_answer: Callable[[Problem], str] | None = None
    # the SFT warm-up's demonstrated response (None: the reference answer itself); it may
    # vary from draw to draw, as a scratchpad's verbosity does
    demonstration: Callable[[Problem, random.Random], str] | None = None

    def demonstrate(self, problem: Problem, rng: random.Random) -> str:
        return self.demonstration(problem, rng) if self.demonstration else problem.answer


def exact_answer(response: str, problem: Problem) -> float:
    """Reward 1 when the first line of the response is exactly the reference answer."""
    return 1.0 if response.strip().split("\n")[0].strip() == problem.answer else 0.0


def split_train_eval(problems: list[Problem], eval_count: int, seed: int) -> tuple[list[Problem], list[Problem]]:
    shuffled = problems[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[eval_count:], shuffled[:eval_count]
