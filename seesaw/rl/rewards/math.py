"""Math reward: extract a response's final answer and compare it with the reference symbolically.

Answers are taken from \\boxed{...}, from "the answer is X", or else the last number. Two
answers match when their strings are equal after normalisation or when sympy proves their
difference is zero (fractions, decimals, simple expressions); sympy runs in a subprocess with
a time limit so a pathological expression cannot hang a rollout.
"""
from __future__ import annotations

import re
from concurrent.futures import ProcessPoolExecutor, TimeoutError as FutureTimeout

_BOXED = re.compile(r"\\boxed\{")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*\$?([^\n$]+?)\$?\s*(?:\.|$)", re.IGNORECASE | re.MULTILINE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_pool: ProcessPoolExecutor | None = None


def _boxed(text: str) -> str | None:
    """Content of the last \\boxed{...}, braces balanced."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    depth, start = 1, starts[-1]
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    return None


def extract_answer(response: str) -> str | None:
    boxed = _boxed(response)
    if boxed is not None:
        return boxed.strip()
    stated = _ANSWER_IS.findall(response)
    if stated:
        return stated[-1].strip()
    numbers = _NUMBER.findall(response)
    return numbers[-1] if numbers else None


def _normalise(answer: str) -> str:
    answer = answer.strip().strip("$").replace(" ", "").replace("\\left", "").replace("\\right", "")
    answer = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", answer)
    return answer.replace("\\cdot", "*").replace("^", "**").rstrip(".")


def _sympy_equal(a: str, b: str) -> bool:
    import sympy

    try:
        return bool(sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0)
    except (sympy.SympifyError, TypeError, ValueError, SyntaxError, AttributeError):
        return False


def answers_match(candidate: str, reference: str, timeout: float = 2.0) -> bool:
    a, b = _normalise(candidate), _normalise(reference)
    if a == b:
        return True
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(max_workers=1)
    future = _pool.submit(_sympy_equal, a, b)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        # the worker is stuck on this expression: drop it and start a fresh one next time
        _pool.shutdown(wait=False, cancel_futures=True)
        for process in getattr(_pool, "_processes", {}).values():
            process.kill()
        _pool = None
        return False


def math_reward(response: str, reference: str, timeout: float = 2.0) -> float:
    """1.0 when the response's final answer equals the reference, else 0.0."""
    answer = extract_answer(response)
    return 1.0 if answer is not None and answers_match(answer, reference, timeout) else 0.0
