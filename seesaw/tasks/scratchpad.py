"""Multi-digit addition with a scratchpad whose length varies: the long2short task.

'352+479=' is answered with the columns worked right to left, then the answer after '>':

    concise   2+9=11,5+7+1=13,3+4+1=8>831
    verbose   352+479|2+9=11 w1c1,5+7+1=13 w3c1,3+4+1=8 w8>831
              check 479+352=831
              check 831-479=352

The working (column sums and carries) is what makes the answer reachable for a small
model, which must otherwise carry in its head. The rest is optional. The restated problem
and the "write w, carry c" notes (each in half of the SFT warm-up's demonstrations) repeat
what is there, yet help a small model find its digits and carries: RL keeps them. The
checks after the answer (none, one or two, a third of the demonstrations each) are the
overthinking of a long chain of thought: verification once the answer is found, which
changes nothing, so RL has no reason to drop it (the reward reads only the answer line,
the text after the last '>' to the end of its line). So the warm-up policy writes 27 to 85
characters for 3 digits: length that can be cut for free (the checks), only at a cost (the
notes, the restatement), and a shortest form (no scratchpad) that loses most accuracy.
"""
from __future__ import annotations

import random
from typing import Literal

from seesaw.spec import SpecError
from seesaw.tasks.base import Problem, Task, split_train_eval

Scratchpad = Literal["varied", "concise", "none"]
SCRATCHPADS: tuple[str, ...] = ("varied", "concise", "none")
ANSWER_MARK = ">"


def columns(a: str, b: str) -> list[tuple[int, int, int, int]]:
    """(digit of a, digit of b, carry in, column sum) from the least significant column."""
    out, carry = [], 0
    for x, y in zip(reversed(a), reversed(b)):
        total = int(x) + int(y) + carry
        out.append((int(x), int(y), carry, total))
        carry = total // 10
    return out


CHECK = "\ncheck "


def working(prompt: str, restate: bool, notes: bool) -> str:
    """The scratchpad for 'a+b=' (without the answer): one step per column."""
    a, b = prompt.rstrip("=").split("+")
    steps = []
    for x, y, carry, total in columns(a, b):
        step = f"{x}+{y}" + (f"+{carry}" if carry else "") + f"={total}"
        if notes:
            step += f" w{total % 10}" + ("c1" if total >= 10 else "")
        steps.append(step)
    return (f"{a}+{b}|" if restate else "") + ",".join(steps)


def checks(prompt: str, answer: str, count: int) -> str:
    """Up to two verifications written after the answer: the sum commuted, then a subtraction."""
    a, b = prompt.rstrip("=").split("+")
    return "".join(CHECK + form for form in (f"{b}+{a}={answer}", f"{answer}-{b}={a}")[:count])


def scratchpad_answer(response: str, problem: Problem) -> float:
    """1.0 when the text after the last answer mark (to the end of its line) is the sum."""
    if ANSWER_MARK not in response:
        return 0.0
    return 1.0 if response.rsplit(ANSWER_MARK, 1)[1].split("\n")[0].strip() == problem.answer else 0.0


def addition_scratchpad_task(digits: int, eval_count: int, scratchpad: Scratchpad = "varied",
                             train_count: int = 20_000, seed: int = 1234) -> Task:
    """Sums of two `digits`-digit numbers (zero-padded, so every column is written)."""
    if scratchpad not in SCRATCHPADS:
        raise SpecError("spec.prompts.scratchpad", f"expected one of {list(SCRATCHPADS)}, got {scratchpad!r}")
    space = 10 ** (2 * digits)
    rng = random.Random(seed)
    chosen = rng.sample(range(space), min(space, train_count + eval_count))
    problems = []
    for n in chosen:
        a, b = divmod(n, 10 ** digits)
        problems.append(Problem(f"{a:0{digits}d}+{b:0{digits}d}=", str(a + b)))
    if eval_count >= len(problems) // 2:
        raise SpecError("spec.rl.evaluation.prompts",
                        f"expected fewer than {len(problems) // 2} held-out prompts for {digits} digits, got {eval_count}")
    train, held_out = split_train_eval(problems, eval_count, seed)

    def demonstration(problem: Problem, draw: random.Random) -> str:
        if scratchpad == "none":
            return ANSWER_MARK + problem.answer
        verbose = scratchpad == "varied"
        pad = working(problem.prompt, restate=verbose and draw.random() < 0.5, notes=verbose and draw.random() < 0.5)
        rechecks = checks(problem.prompt, problem.answer, draw.randrange(3)) if verbose else ""
        return pad + ANSWER_MARK + problem.answer + rechecks

    alphabet = "".join(sorted(set("0123456789+-=,|> wc" + CHECK)))
    return Task(f"add{digits}-{scratchpad}", train, held_out, scratchpad_answer, alphabet, demonstration=demonstration)
