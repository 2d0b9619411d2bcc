"""Code reward: run a response's Python against test cases in the sandbox.

A test case is a stdin/stdout pair (the program's output must match, up to trailing
whitespace) or an assertion run after the program's code. An assertion passes only when the
program reaches a secret marker printed after it, so an early `exit(0)` passes nothing.
Reward: the fraction of tests passed, or 1 only when all pass ("all", the default: rewards in
the Kimi k1.5 recipe are 0/1). Each test is its own sandboxed process.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Sequence

from seesaw.rl.rewards.registry import register_verifier
from seesaw.rl.rewards.sandbox import SandboxLimits, SandboxResult, require_isolation, run_python

MODES = ("all", "fraction")


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    stdin: str = ""
    expected_stdout: str | None = None
    assertion: str | None = None

    def __post_init__(self) -> None:
        if (self.expected_stdout is None) == (self.assertion is None):
            raise ValueError("test case: expected exactly one of expected_stdout (stdin/stdout test) "
                             "or assertion (assert-style test)")

    @classmethod
    def from_json(cls, data: Any) -> "TestCase":
        """From {"input", "output"} or {"stdin", "stdout"}, {"assert": "..."}, or a bare assert string."""
        if isinstance(data, TestCase):
            return data
        if isinstance(data, str):
            return cls(assertion=data)
        if isinstance(data, dict):
            if "assert" in data:
                return cls(stdin=str(data.get("input", data.get("stdin", ""))), assertion=str(data["assert"]))
            output = data.get("output", data.get("stdout"))
            if output is not None:
                return cls(stdin=str(data.get("input", data.get("stdin", ""))), expected_stdout=str(output))
        raise ValueError(f"tests: expected {{input, output}}, {{stdin, stdout}}, {{assert}} or an assert string, got {data!r}")


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


def extract_program(response: str) -> str:
    return extract_code(response)


def extract_code(response: str) -> str:
    """The last ```python fenced block, else the last fenced block, else the whole response."""
    blocks = _FENCE.findall(response)
    python = [body for language, body in blocks if language.lower() in ("python", "python3", "py")]
    if python:
        return python[-1]
    if blocks:
        return blocks[-1][1]
    return response


# the name the task loader uses: CodeTestCase(stdin, expected_stdout)
CodeTestCase = TestCase


def _normalize_output(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def run_test(code: str, test: TestCase, limits: SandboxLimits) -> tuple[bool, SandboxResult]:
    if test.assertion is None:
        result = run_python(code, test.stdin, limits)
        return result.ok and _normalize_output(result.stdout) == _normalize_output(test.expected_stdout or ""), result
    marker = secrets.token_hex(16)
    source = f"{code}\n\n{test.assertion}\nprint({marker!r})\n"
    result = run_python(source, test.stdin, limits)
    last = _normalize_output(result.stdout)[-1:]
    return result.ok and last == [marker], result


@dataclass
class CodeVerifier:
    limits: SandboxLimits = field(default_factory=SandboxLimits)
    mode: str = "all"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {list(MODES)}, got {self.mode!r}")

    def passed(self, code: str, tests: Sequence[Any]) -> list[bool]:
        """Per test, whether it passed; in "all" mode the tests after the first failure are not run (False)."""
        cases = [TestCase.from_json(t) for t in tests]
        results: list[bool] = []
        for case in cases:
            ok, _ = run_test(code, case, self.limits)
            results.append(ok)
            if not ok and self.mode == "all":
                results += [False] * (len(cases) - len(results))
                break
        return results

    def score(self, response: str, reference: Any) -> float:
        if not isinstance(reference, (list, tuple)) or not reference:
            raise ValueError(f"reference: expected a non-empty list of test cases, got {reference!r}")
        passed = self.passed(extract_code(response), reference)
        if self.mode == "all":
            return 1.0 if all(passed) else 0.0
        return sum(passed) / len(passed)


def code_reward(response: str, cases: Sequence[Any], limits: SandboxLimits = SandboxLimits(),
                all_or_nothing: bool = True) -> float:
    """1.0 if every case passes (or the fraction passed, with all_or_nothing=False)."""
    if not cases:
        raise ValueError("cases: a code problem needs at least one test case")
    return CodeVerifier(limits, "all" if all_or_nothing else "fraction").score(response, list(cases))


@register_verifier("code", reference="tests")
def code_verifier(reward_spec: dict[str, Any], **options: Any) -> CodeVerifier:
    """Refused (SandboxUnavailable) where the sandbox cannot isolate the code: responses never run unsandboxed."""
    require_isolation()
    options.setdefault("limits", SandboxLimits.from_spec(reward_spec.get("sandbox", {})))
    return CodeVerifier(**options)
