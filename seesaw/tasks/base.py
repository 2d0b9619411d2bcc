"""A task: prompts with reference answers, split into train and held-out eval sets."""
from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from seesaw.spec import SpecError
from seesaw.tasks.records import mapped, read_rows


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


def arith_task(max_operand: int, eval_count: int, terms: int = 2, seed: int = 1234) -> Task:
    """Addition of `terms` numbers, 'a+b+c=' -> the sum in digits: verifiable, and learnable by a tiny model."""
    operands = itertools.product(range(max_operand + 1), repeat=terms)
    problems = [Problem("+".join(map(str, combo)) + "=", str(sum(combo))) for combo in operands]
    if eval_count >= len(problems) // 2:
        raise SpecError("spec.rl.evaluation.prompts",
                        f"expected fewer than {len(problems) // 2} held-out prompts for maxOperand {max_operand} "
                        f"and {terms} terms ({len(problems)} problems), got {eval_count}")
    train, held_out = split_train_eval(problems, eval_count, seed)
    return Task("arith", train, held_out, exact_answer, alphabet="0123456789+=")


def reverse_task(digits: int, eval_count: int, seed: int = 1234) -> Task:
    """Reverse a digit string, '0427=' -> '7240': a tiny model learns it in a few hundred SFT
    steps, so a short warm-up leaves a policy that is right sometimes, which RL then sharpens."""
    problems = [Problem(f"{n:0{digits}d}=", f"{n:0{digits}d}"[::-1]) for n in range(10 ** digits)]
    if eval_count >= len(problems) // 2:
        raise SpecError("spec.rl.evaluation.prompts", f"expected fewer than {len(problems) // 2} held-out prompts for {digits} digits, got {eval_count}")
    train, held_out = split_train_eval(problems, eval_count, seed)
    # the tempting mistake: the digits copied in their original order
    return Task("reverse", train, held_out, exact_answer, alphabet="0123456789=",
                wrong_answer=lambda problem: problem.prompt.rstrip("="))


def math_answer(response: str, problem: Problem) -> float:
    from seesaw.rl.rewards.math import math_reward

    return math_reward(response, problem.answer)


def code_tests(sandbox: dict[str, Any]) -> Callable[[str, Problem], float]:
    """The code reward under spec.reward.sandbox's limits. Refused here, when the job starts,
    where the sandbox cannot isolate the code: responses never run unsandboxed."""
    from seesaw.rl.rewards.code import CodeTestCase, code_reward
    from seesaw.rl.rewards.sandbox import SandboxLimits, SandboxUnavailable, require_isolation

    limits = SandboxLimits.from_spec(sandbox)
    try:
        require_isolation()
    except SandboxUnavailable as err:
        raise SpecError("spec.reward.type", f"code: {err}; refusing to run responses unsandboxed") from None

    def score(response: str, problem: Problem) -> float:
        return code_reward(response, [CodeTestCase(stdin, stdout) for stdin, stdout in problem.tests], limits)

    return score


DEFAULT_FIELDS = {"prompt": "prompt", "answer": "answer", "answerExtract": "none"}


def file_task(path: Path, eval_count: int, reward_spec: dict[str, Any] | None = None, seed: int = 1234,
              fields: dict[str, Any] | None = None, split: str = "train") -> Task:
    """Prompts from a JSONL or parquet file or a saved Hugging Face dataset (seesaw.tasks.records):
    {prompt, answer} rows for math, {prompt, tests: [{stdin, stdout}]} for code, the prompt and
    answer under the columns `fields` names. A code row's optional `solution` (a reference
    program) is its answer: what the SFT warm-up demonstrates and the sync probe scores; its
    optional `wrong_solution` (a plausible mistake) is what the warm-up shows instead in
    spec.model.generate.sftNoise of its demonstrations, offered when every row has one."""
    reward_spec = reward_spec or {"type": "math", "sandbox": {}}
    fields = fields or DEFAULT_FIELDS
    reward = reward_spec["type"]
    problems = []
    mistakes: dict[tuple[str, str], str] = {}
    for where, raw in read_rows(path, split):
        row = mapped(raw, fields, where)
        difficulty = float(row["difficulty"]) if row.get("difficulty") is not None else None
        if reward == "code":
            if not row.get("tests"):
                raise SpecError("spec.prompts.source", f"{where}: spec.reward.type is code, expected 'tests': [{{stdin, stdout}}, ...]")
            tests = tuple((str(t.get("stdin", "")), str(t["stdout"])) for t in row["tests"])
            problems.append(Problem(str(row["prompt"]), str(row.get("solution") or ""), difficulty, tests))
            if row.get("wrong_solution"):
                mistakes[problems[-1].prompt, problems[-1].answer] = str(row["wrong_solution"])
        else:
            if "answer" not in row:
                raise SpecError("spec.prompts.fields.answer", f"{where}: spec.reward.type is math, expected an answer "
                                f"in column {fields['answer']!r}")
            problems.append(Problem(str(row["prompt"]), str(row["answer"]), difficulty))
    train, held_out = split_train_eval(problems, eval_count, seed)
    # the tokenizer must also spell what the warm-up shows
    alphabet = "".join(sorted({c for p in problems for c in p.prompt + p.answer} | set("".join(mistakes.values()))))
    score = code_tests(reward_spec["sandbox"]) if reward == "code" else math_answer
    offered = len(mistakes) == len(problems)
    return Task(path.stem, train, held_out, score, alphabet,
                wrong_answer=(lambda problem: mistakes[problem.prompt, problem.answer]) if offered else None)


def load_task(spec: dict[str, Any]) -> Task:
    source = spec["prompts"]["source"]
    eval_count = spec["rl"]["evaluation"]["prompts"]
    if source.startswith("builtin:") and spec["reward"]["type"] == "code":
        raise SpecError("spec.reward.type", f"code needs a JSONL prompt source with tests; {source} is scored by exact answers")
    if source == "builtin:arith":
        return arith_task(spec["prompts"]["maxOperand"], eval_count, spec["prompts"]["terms"])
    if source == "builtin:reverse":
        return reverse_task(spec["prompts"]["digits"], eval_count)
    if source == "builtin:add-scratchpad":
        from seesaw.tasks.scratchpad import addition_scratchpad_task

        return addition_scratchpad_task(spec["prompts"]["digits"], eval_count, spec["prompts"]["scratchpad"])
    if source.startswith("builtin:"):
        raise SpecError("spec.prompts.source", f"unknown builtin task {source!r}; "
                        "known: ['builtin:arith', 'builtin:reverse', 'builtin:add-scratchpad']")
    path = Path(source)
    if not path.exists():
        raise SpecError("spec.prompts.source", f"expected builtin:<task>, a .jsonl or .parquet file or a saved "
                        f"Hugging Face dataset folder; {source!r} does not exist")
    prompts = spec["prompts"]
    return file_task(path, eval_count, spec["reward"], fields=prompts["fields"], split=prompts["split"])
