"""Test-case generation from a reference solution."""
import pytest

from seesaw.rl.rewards.code import CodeVerifier, TestCase
from seesaw.rl.rewards.sandbox import SandboxLimits
from seesaw.rl.rewards.testgen import CodeProblem, ReferenceGenerationError, ReferenceSolutionCases, cases_for

LIMITS = SandboxLimits(timeout_seconds=3.0, memory_mib=256)
SQUARE = "n = int(input())\nprint(n * n)\n"


def test_cases_come_from_running_the_reference_on_the_inputs():
    problem = CodeProblem("square n", reference_solution=SQUARE, inputs=["3\n", "-4\n"])
    cases = cases_for(problem, ReferenceSolutionCases(LIMITS))
    assert cases == [TestCase(stdin="3\n", expected_stdout="9\n"), TestCase(stdin="-4\n", expected_stdout="16\n")]
    verifier = CodeVerifier(LIMITS)
    assert verifier.score("print(int(input()) ** 2)", cases) == 1.0
    assert verifier.score("print(2 * int(input()))", cases) == 0.0


def test_a_problem_with_tests_keeps_them():
    own = [TestCase(assertion="assert True")]
    assert cases_for(CodeProblem("p", tests=own)) == own


def test_a_failing_reference_names_the_input():
    problem = CodeProblem("square n", reference_solution=SQUARE, inputs=["3\n", "not a number\n"])
    with pytest.raises(ReferenceGenerationError, match=r"inputs\[1\]: the reference solution exited with 1"):
        ReferenceSolutionCases(LIMITS).generate(problem)


def test_missing_pieces_are_named():
    with pytest.raises(ValueError, match="no tests and no generator"):
        cases_for(CodeProblem("p"))
    with pytest.raises(ValueError, match="reference_solution"):
        ReferenceSolutionCases(LIMITS).generate(CodeProblem("p", inputs=["1"]))
    with pytest.raises(ValueError, match="inputs"):
        ReferenceSolutionCases(LIMITS).generate(CodeProblem("p", reference_solution=SQUARE))
