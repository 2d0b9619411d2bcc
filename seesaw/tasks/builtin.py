"""The built-in prompt sets (`spec.prompts.source: builtin:<name>`), scored by exact answers."""
from __future__ import annotations

import itertools
from typing import Any

from seesaw.spec import SpecError
from seesaw.tasks.base import Problem, Task, exact_answer, split_train_eval
from seesaw.tasks.scratchpad import addition_scratchpad_task


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


def builtin_task(spec: dict[str, Any], source: str, eval_count: int) -> Task:
    prompts = spec["prompts"]
    if source == "builtin:arith":
        return arith_task(prompts["maxOperand"], eval_count, prompts["terms"])
    if source == "builtin:reverse":
        return reverse_task(prompts["digits"], eval_count)
    if source == "builtin:add-scratchpad":
        return addition_scratchpad_task(prompts["digits"], eval_count, prompts["scratchpad"])
    raise SpecError("spec.prompts.source", f"unknown builtin task {source!r}; "
                    "known: ['builtin:arith', 'builtin:reverse', 'builtin:add-scratchpad']")
