"""Code reward: extraction, stdin/stdout and assert tests, fraction and all-pass modes."""
import pytest

from seesaw.rl.rewards.code import CodeVerifier, TestCase, extract_code
from seesaw.rl.rewards.sandbox import SandboxLimits

LIMITS = SandboxLimits(timeout_seconds=3.0, memory_mib=256)
ADD = "def add(a, b):\n    return a + b\n"


def response(code, language="python"):
    return f"Let me think.\n```{language}\n{code}```\nDone."


def test_extracts_the_last_python_block():
    text = "```python\nold()\n```\ntext\n```python\nnew()\n```\n```\nnot python\n```"
    assert extract_code(text) == "new()\n"
    assert extract_code("```\nplain()\n```") == "plain()\n"
    assert extract_code("print(1)") == "print(1)"


def test_stdin_stdout_tests_compare_output_up_to_trailing_whitespace():
    verifier = CodeVerifier(LIMITS, mode="fraction")
    program = response("a, b = map(int, input().split())\nprint(a * b, '  ')\n")
    tests = [{"input": "2 3\n", "output": "6\n\n"}, {"input": "4 5", "output": "20"}, {"input": "1 1", "output": "2"}]
    assert verifier.score(program, tests) == pytest.approx(2 / 3)


def test_assert_tests_and_the_all_pass_mode():
    tests = ["assert add(1, 2) == 3", {"assert": "assert add(-1, 1) == 0"}, "assert add(2, 2) == 5"]
    assert CodeVerifier(LIMITS, mode="fraction").score(response(ADD), tests) == pytest.approx(2 / 3)
    assert CodeVerifier(LIMITS, mode="all").score(response(ADD), tests) == 0.0
    assert CodeVerifier(LIMITS, mode="all").score(response(ADD), tests[:2]) == 1.0


def test_all_mode_stops_at_the_first_failure():
    assert CodeVerifier(LIMITS, mode="all").passed(ADD, ["assert add(1, 1) == 3", "assert add(1, 1) == 2"]) == [False, False]


def test_exiting_early_does_not_pass_an_assert_test():
    cheat = "import os\nos._exit(0)\n"
    assert CodeVerifier(LIMITS).score(response(cheat), ["assert False"]) == 0.0
    assert CodeVerifier(LIMITS).score(response("raise SystemExit(0)\n"), ["assert False"]) == 0.0


def test_a_hanging_solution_scores_zero():
    assert CodeVerifier(SandboxLimits(timeout_seconds=0.5)).score(response("while True: pass\n"), ["assert True"]) == 0.0


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match="mode: expected one of"):
        CodeVerifier(mode="most")
    with pytest.raises(ValueError, match="reference: expected a non-empty list"):
        CodeVerifier(LIMITS).score("x", [])
    with pytest.raises(ValueError, match="tests: expected"):
        TestCase.from_json({"input": "1"})
    with pytest.raises(ValueError, match="exactly one of"):
        TestCase(expected_stdout="1", assertion="assert True")
