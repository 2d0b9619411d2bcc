"""Math answers: extraction, normalisation, exact and symbolic equivalence, the timeout."""
import time

import pytest

from seesaw.rl.rewards.math import (MathVerifier, SympyWorker, answers_equivalent, extract_answer, normalize_answer,
                                    rational_value)


class NoSympy:
    def equal(self, a, b, timeout):
        raise AssertionError(f"sympy was asked about {a!r} and {b!r}")


@pytest.fixture(scope="module")
def worker():
    w = SympyWorker()
    yield w
    w.close()


@pytest.mark.parametrize("response, answer", [
    (r"so the total is \boxed{\frac{3}{4}} and we are done", r"\frac{3}{4}"),
    (r"first \boxed{1}, corrected: \boxed{x^{2}+1}", "x^{2}+1"),
    ("Thus the answer is 42.", "42"),
    ("Final answer: $0.5$", "0.5"),
    ("We get 3 apples, then 7 more, 10 in all", "10"),
    ("a total of 1,250,000 people", "1,250,000"),
    ("no digits here", None),
])
def test_extracts_the_final_answer(response, answer):
    assert extract_answer(response) == answer


def test_normalisation_turns_latex_into_plain_expressions():
    assert normalize_answer(r"$\dfrac{1}{2}$") == "((1)/(2))"
    assert normalize_answer(r"\frac12") == "((1)/(2))"
    assert normalize_answer(r"x = 2\sqrt{3}") == "2sqrt(3)"
    assert normalize_answer(r"45^\circ") == "45"
    assert normalize_answer(r"\text{(B)}") == "(B)"
    assert normalize_answer("1,000") == "1000"


def test_rationals_are_exact_and_refuse_anything_else():
    assert rational_value("((3)/(4))") == rational_value("0.75")
    assert rational_value("2**10") == 1024
    assert rational_value("2**1000") is None  # exponent beyond the exact range
    assert rational_value("1/0") is None
    assert rational_value("__import__('os')") is None
    assert rational_value("x+1") is None


@pytest.mark.parametrize("answer, reference", [
    ("0.5", r"\frac{1}{2}"), ("1/2", r"\dfrac12"), ("-0.25", "-1/4"), ("1,000", "1000"), ("3.0", "3"),
    ("(1, 2)", r"\left(1,2\right)"),
])
def test_equal_without_sympy(answer, reference):
    assert answers_equivalent(answer, reference, worker=NoSympy())


@pytest.mark.parametrize("answer, reference", [("0.33", "1/3"), ("2", "3"), ("(1, 2)", "(2, 1)"), ("", "0")])
def test_unequal(answer, reference):
    assert not answers_equivalent(answer, reference)


def test_symbolic_equivalence(worker):
    assert answers_equivalent(r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", worker=worker)
    assert answers_equivalent(r"2\sqrt{2}", r"\sqrt{8}", worker=worker)
    assert answers_equivalent("(x+1)(x-1)", "x^2-1", worker=worker)
    assert not answers_equivalent("x^2+1", "x^2-1", worker=worker)
    assert answers_equivalent(r"\pi/2", r"\frac{\pi}{2}", worker=worker)


def test_code_never_reaches_sympys_parser(worker):
    assert not answers_equivalent("__import__('os').system('true')", "0", worker=worker)
    assert not answers_equivalent("open(1)", "1", worker=worker)


def test_a_pathological_expression_times_out_and_the_worker_recovers(worker):
    started = time.perf_counter()
    assert not answers_equivalent("9^9^9^9", "1", timeout_seconds=1.0, worker=worker)
    assert time.perf_counter() - started < 10
    assert answers_equivalent(r"\sqrt{4}x", "2x", worker=worker)


def test_verifier_scores_responses():
    verifier = MathVerifier()
    assert verifier.score(r"... so \boxed{0.75}", "3/4") == 1.0
    assert verifier.score("I think it is 5", "6") == 0.0
    with pytest.raises(TypeError, match="reference: expected the reference answer as a string"):
        verifier.score("1", 1)
    with pytest.raises(ValueError, match="timeout_seconds"):
        MathVerifier(timeout_seconds=0)
