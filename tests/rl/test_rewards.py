"""Verifiable rewards: math answer equivalence and code run in the sandbox."""
import time

import pytest

from seesaw.rl.rewards.code import NETWORK_ISOLATED, SandboxLimits, CodeTestCase, code_reward, extract_program
from seesaw.rl.rewards.math import answers_match, extract_answer, math_reward


@pytest.mark.parametrize("response, answer", [
    ("so the total is \\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
    ("First 2, then 5. The answer is 42.", "42"),
    ("we get 1, 2 and finally 17", "17"),
])
def test_final_answer_extraction(response, answer):
    assert extract_answer(response) == answer


@pytest.mark.parametrize("candidate, reference, equal", [
    ("\\frac{3}{4}", "0.75", True),
    ("6/8", "3/4", True),
    ("2*x + x", "3*x", True),
    ("1/3", "0.33", False),
    ("17", "71", False),
    ("hello", "5", False),
])
def test_symbolic_equivalence(candidate, reference, equal):
    assert answers_match(candidate, reference) is equal


def test_math_reward_is_one_only_for_the_right_final_answer():
    assert math_reward("Thinking... \\boxed{\\dfrac{1}{2}}", "0.5") == 1.0
    assert math_reward("The answer is 3", "4") == 0.0
    assert math_reward("no digits at all", "4") == 0.0


ADD = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"


def test_code_passes_its_tests_and_a_wrong_program_does_not():
    cases = [CodeTestCase("1 2\n", "3"), CodeTestCase("10 -4\n", "6")]
    assert code_reward(ADD, cases) == 1.0
    assert code_reward(ADD.replace("a + b", "a - b"), cases) == 0.0
    assert code_reward(ADD.replace("a + b", "a + b if a < 5 else 0"), cases, all_or_nothing=False) == 0.5


def test_an_endless_program_is_stopped_at_the_time_limit():
    started = time.monotonic()
    assert code_reward("while True:\n    pass\n", [CodeTestCase("", "")], SandboxLimits(timeout_seconds=1)) == 0.0
    assert time.monotonic() - started < 5


def test_memory_and_fork_limits_hold():
    hog = "x = bytearray(2 * 1024 ** 3)\nprint('allocated')"
    assert code_reward(hog, [CodeTestCase("", "allocated")], SandboxLimits(memory_mib=256)) == 0.0
    bomb = "import os\nfor _ in range(200):\n    os.fork()\nprint('forked')"
    assert code_reward(bomb, [CodeTestCase("", "forked")], SandboxLimits(max_processes=16, timeout_seconds=3)) == 0.0


@pytest.mark.skipif(not NETWORK_ISOLATED, reason="this kernel refuses a new network namespace")
def test_no_network_inside_the_sandbox():
    import socket

    with socket.socket() as server:  # a listener the program could reach without isolation
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        probe = (f"import socket\ns = socket.socket()\ns.settimeout(1)\ntry:\n    s.connect(('127.0.0.1', {port}))\n"
                 "    print('reached')\nexcept OSError:\n    print('isolated')")
        assert code_reward(probe, [CodeTestCase("", "isolated")]) == 1.0
        assert code_reward(probe, [CodeTestCase("", "reached")]) == 0.0


def test_program_extraction_prefers_the_last_fenced_block():
    assert extract_program("```python\nprint(1)\n```\nbetter:\n```python\nprint(2)\n```") == "print(2)\n"
