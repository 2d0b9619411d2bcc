"""Test cases for code problems that come without any: the generator hook and a reference-solution one."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from seesaw.rl.rewards.code import TestCase
from seesaw.rl.rewards.sandbox import SandboxLimits, run_python


@dataclass
class CodeProblem:
    prompt: str
    tests: list[TestCase] = field(default_factory=list)
    reference_solution: str | None = None
    # inputs to derive stdin/stdout tests from, when `tests` is empty
    inputs: list[str] = field(default_factory=list)


class TestCaseGenerator(Protocol):
    __test__ = False  # not a pytest class

    def generate(self, problem: CodeProblem) -> list[TestCase]: ...


class ReferenceGenerationError(RuntimeError):
    pass


@dataclass
class ReferenceSolutionCases:
    """stdin/stdout tests whose expected output is what the reference solution prints for each
    of the problem's inputs. A reference that fails or times out on an input is an error."""

    limits: SandboxLimits = field(default_factory=SandboxLimits)

    def generate(self, problem: CodeProblem) -> list[TestCase]:
        if not problem.reference_solution:
            raise ValueError("reference_solution: expected the reference program's source, got none")
        if not problem.inputs:
            raise ValueError("inputs: expected at least one input to run the reference solution on")
        cases = []
        for index, stdin in enumerate(problem.inputs):
            result = run_python(problem.reference_solution, stdin, self.limits)
            if not result.ok:
                why = "timed out" if result.timed_out else f"exited with {result.returncode}: {result.stderr[-500:]}"
                raise ReferenceGenerationError(f"inputs[{index}]: the reference solution {why}")
            cases.append(TestCase(stdin=stdin, expected_stdout=result.stdout))
        return cases


def cases_for(problem: CodeProblem, generator: TestCaseGenerator | None = None) -> list[TestCase]:
    """The problem's own tests, or the generator's when it has none."""
    if problem.tests:
        return list(problem.tests)
    if generator is None:
        raise ValueError(f"tests: problem {problem.prompt[:60]!r} has no tests and no generator was given")
    return generator.generate(problem)


def cases_for_all(problems: Sequence[CodeProblem], generator: TestCaseGenerator) -> list[list[TestCase]]:
    return [cases_for(problem, generator) for problem in problems]
