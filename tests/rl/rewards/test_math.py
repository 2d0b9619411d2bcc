"""Math answers through math-verify, in its worker process: answers in the forms models and
datasets write them, wrong answers, code and pathological expressions."""
import subprocess
import sys
import time

import pytest

from seesaw.rl.rewards.math import MathVerifier, VerifierWorker


@pytest.fixture(scope="module")
def verifier():
    worker = VerifierWorker()
    yield MathVerifier(worker=worker)
    worker.close()


@pytest.mark.parametrize("response, reference", [
    ("The answer is 12 shells.", "12"),
    ("The answer is: 5 + 2 = 7", "7"),
    ("She has 3 + 4 = 7 apples.", "7"),
    ("#### 12", "12"),  # GSM8K's marker
    (r"so the total is \boxed{\frac{3}{4}} and we are done", "0.75"),
    ("Thus the answer is 42.", "42"),
    ("Final answer: $0.5$", r"\frac{1}{2}"),
    ("The answer is 1/2.", "0.5"),
    ("We get 3 apples, then 7 more, 10 in all", "10"),
    ("a total of 1,250,000 people", "1250000"),
    (r"$\frac{\sqrt{2}}{2}$", r"\frac{1}{\sqrt{2}}"),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),
    (r"The answer is $x = 2$.", "2"),
    (r"\boxed{(1, 2)}", r"\left(1,2\right)"),
    (r"the angle is $45^\circ$", "45"),
])
def test_right_answers_in_many_forms_score_1(verifier, response, reference):
    assert verifier.score(response, reference) == 1.0


@pytest.mark.parametrize("response, reference", [
    ("I think it is 5", "6"),
    ("The answer is 0.33", r"\frac{1}{3}"),
    (r"\boxed{(2, 1)}", "(1, 2)"),
    (r"\boxed{x^2+1}", "x^2-1"),
    ("no digits here", "0"),
    ("", "3"),
    ("5 + 2 = 7, no wait: 8", "7"),  # the last answer given counts
    # two boxed answers are one answer, the set of both (math-verify's reading)
    (r"first \boxed{1}, corrected: \boxed{x^{2}+1}", "x^2 + 1"),
    # an answer that is not last and not marked is not found: math-verify (and verl, TRL
    # with it) takes the last number here, 4
    ("7. That is the sum of 3 and 4.", "7"),
])
def test_wrong_or_missing_answers_score_0(verifier, response, reference):
    assert verifier.score(response, reference) == 0.0


def test_code_in_a_response_is_never_evaluated(verifier, tmp_path):
    marker = tmp_path / "ran"
    assert verifier.score(f"__import__('os').system('touch {marker}')", "0") == 0.0
    assert not marker.exists()


def test_a_pathological_expression_times_out_and_the_worker_recovers():
    worker = VerifierWorker()
    try:
        slow = MathVerifier(timeout_seconds=1.0, worker=worker)
        slow.score("9^9^9^9", "1")  # warm: the worker's start is not the comparison's time
        started = time.perf_counter()
        assert slow.score(r"\boxed{9^{9^{9^{9}}}}", "1") == 0.0
        assert time.perf_counter() - started < 10
        assert slow.score(r"\boxed{\sqrt{4}}", "2") == 1.0
    finally:
        worker.close()


def test_a_new_workers_first_comparison_is_judged_within_a_short_timeout():
    """Its start loads the parsers (0.5 s and more), so a comparison's timeout is its own."""
    worker = VerifierWorker()
    try:
        assert worker.verify("So 5 - 1 = 4. The answer is 4.", "4", timeout=0.25) is True
    finally:
        worker.close()


def test_the_worker_judges_under_a_parent_whose_main_module_holds_a_large_address_space(tmp_path):
    """The checkpoint engine's main module brings torch and vLLM: a worker that imported it
    again (a multiprocessing child does) would be past its memory limit before comparing."""
    parent = tmp_path / "engine.py"
    parent.write_text("import mmap\n"
                      "RESERVED = mmap.mmap(-1, 2 << 30)  # address space, as torch and vLLM take it\n"
                      "from seesaw.rl.rewards.math import VerifierWorker\n"
                      "if __name__ == '__main__':\n"
                      "    worker = VerifierWorker()\n"
                      "    print(worker.verify('So 5 - 1 = 4. The answer is 4.', '4', timeout=30))\n"
                      "    worker.close()\n")
    result = subprocess.run([sys.executable, str(parent)], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stdout + result.stderr[-2000:]


def test_verifier_checks_its_arguments():
    verifier = MathVerifier()
    with pytest.raises(TypeError, match="reference: expected the reference answer as a string"):
        verifier.score("1", 1)
    with pytest.raises(ValueError, match="timeout_seconds"):
        MathVerifier(timeout_seconds=0)
