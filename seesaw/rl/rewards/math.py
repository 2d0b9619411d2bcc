"""Math reward: extract a response's final answer and decide whether it equals the reference.

Extraction, in order: the last \\boxed{...} (or \\fbox{...}); the last "answer is X" /
"answer: X"; the last number. Equivalence, in order: equal after LaTeX normalisation;
equal as exact rationals (fractions, decimals, + - * / and small integer powers, evaluated
without eval); equal element-wise for comma-separated tuples; equal symbolically under
sympy (simplify(a - b) == 0, or numerically within 1e-9 for constants). sympy runs in a
separate process with a timeout and a memory limit, so an expression like 9^9^9^9 cannot
hang or exhaust the caller; only a whitelisted alphabet and names ever reach its parser
(sympy's parse_expr evaluates Python).
"""
from __future__ import annotations

import ast
import multiprocessing
import operator
import re
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from seesaw.rl.rewards.registry import register_verifier

DEFAULT_TIMEOUT_SECONDS = 5.0
STARTUP_SECONDS = 60.0


# --- extraction -----------------------------------------------------------------------------
def _braced(text: str, open_at: int) -> tuple[str, int] | None:
    """The contents of the brace group opening at text[open_at] == '{', and the index after it."""
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1:i], i + 1
    return None


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")


def extract_answer(response: str) -> str | None:
    """The final answer a response gives, or None when it gives none."""
    boxed = None
    for match in _BOXED.finditer(response):
        found = _braced(response, match.end() - 1)
        if found is not None:
            boxed = found[0]
    if boxed is not None:
        return boxed.strip()
    stated = _ANSWER_IS.findall(response)
    if stated:
        answer = stated[-1].strip()
        answer = re.split(r"(?<=[^\d\s])\.\s|\.$", answer)[0]  # end at the sentence, not inside 0.5
        return answer.strip().strip("$").strip() or None
    numbers = _NUMBER.findall(response)
    return numbers[-1].replace(" ", "") if numbers else None


# --- normalisation --------------------------------------------------------------------------
def _replace_command(text: str, command: str, render) -> str:
    """Replace `\\command{a}{b}...` (arity from `render`'s signature) from the inside out."""
    arity = render.__code__.co_argcount
    pattern = re.compile(re.escape(command) + r"(?![a-zA-Z])\s*")
    while True:
        match = None
        for match in pattern.finditer(text):
            pass
        if match is None:
            return text
        position, args = match.end(), []
        for _ in range(arity):
            while position < len(text) and text[position] == " ":
                position += 1
            if position < len(text) and text[position] == "{":
                found = _braced(text, position)
                if found is None:
                    return text
                args.append(found[0])
                position = found[1]
            elif position < len(text):
                # \frac12: single-character arguments
                args.append(text[position])
                position += 1
            else:
                return text
        text = text[:match.start()] + render(*args) + text[position:]


_DROP = [r"\left", r"\right", r"\!", r"\,", r"\;", r"\:", r"\ ", "~", r"\displaystyle", r"^\circ", r"^{\circ}",
         "°", r"\%", "%", "$", r"\(", r"\)", r"\[", r"\]"]
_SYMBOLS = {r"\cdot": "*", r"\times": "*", r"\div": "/", r"\pi": "pi", r"\infty": "oo", r"\ln": "log", r"\log": "log",
            r"\sin": "sin", r"\cos": "cos", r"\tan": "tan", r"\exp": "exp", r"\le": "<=", r"\ge": ">=", "−": "-"}


def normalize_answer(answer: str) -> str:
    """A canonical plain-text form of a (possibly LaTeX) answer."""
    text = answer.strip()
    for token in _DROP:
        text = text.replace(token, "")
    for command in (r"\text", r"\textbf", r"\mathrm", r"\mathbf", r"\operatorname"):
        text = _replace_command(text, command, lambda body: body)
    text = text.replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac")
    text = _replace_command(text, r"\frac", lambda num, den: f"(({num})/({den}))")
    text = re.sub(r"\\sqrt\s*\[([^\]]*)\]\s*\{([^{}]*)\}", r"((\2)**(1/(\1)))", text)
    text = _replace_command(text, r"\sqrt", lambda body: f"sqrt({body})")
    for latex, plain in _SYMBOLS.items():
        text = re.sub(re.escape(latex) + r"(?![a-zA-Z])", plain, text)
    text = text.replace("{", "(").replace("}", ")").replace("^", "**")
    text = re.sub(r"^[a-zA-Z]\s*=\s*(?=[^=])", "", text.strip())  # "x = 5" -> "5"
    text = text.strip().rstrip(".").strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")
    return re.sub(r"\s+", "", text)


# --- exact rational arithmetic --------------------------------------------------------------
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
MAX_EXPONENT = 64
MAX_BITS = 4096


def rational_value(text: str) -> Fraction | None:
    """The exact value of an arithmetic expression of numbers, or None if it is anything else."""
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return None

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return Fraction(repr(node.value)) if isinstance(node.value, float) else Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = value(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            result = _OPS[type(node.op)](value(node.left), value(node.right))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            base, exponent = value(node.left), value(node.right)
            if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
                raise ValueError("exponent outside exact range")
            result = base ** int(exponent)
        else:
            raise ValueError("not plain arithmetic")
        if result.numerator.bit_length() > MAX_BITS or result.denominator.bit_length() > MAX_BITS:
            raise ValueError("too large")
        return result

    try:
        return value(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


# --- symbolic comparison, out of process ----------------------------------------------------
_SYMPY_NAMES = {"sqrt", "pi", "E", "I", "oo", "log", "sin", "cos", "tan", "exp"}
_SYMPY_ALPHABET = re.compile(r"[0-9a-zA-Z+\-*/().]+")


def _safe_for_sympy(text: str) -> bool:
    if not _SYMPY_ALPHABET.fullmatch(text) or "__" in text:
        return False
    return all(len(name) == 1 or name in _SYMPY_NAMES for name in re.findall(r"[a-zA-Z]+", text))


def _sympy_equal(a: str, b: str) -> bool:
    import sympy
    from sympy.parsing.sympy_parser import (convert_xor, implicit_multiplication_application, parse_expr,
                                            standard_transformations)

    transformations = standard_transformations + (implicit_multiplication_application, convert_xor)
    names = {name: getattr(sympy, name) for name in _SYMPY_NAMES}
    names["e"] = sympy.E
    left, right = (parse_expr(x, local_dict=dict(names), transformations=transformations) for x in (a, b))
    difference = sympy.simplify(left - right)
    if difference == 0:
        return True
    if not difference.free_symbols:
        return abs(complex(sympy.N(difference))) < 1e-9
    return False


def _sympy_worker(connection: Any, memory_bytes: int) -> None:
    import resource

    import sympy  # noqa: F401  (import before the memory limit: the limit is for the expressions)

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    connection.send(("ready", None))
    while True:
        request = connection.recv()
        if request is None:
            return
        try:
            connection.send(("ok", _sympy_equal(*request)))
        except BaseException as error:  # a MemoryError or a parser error must not end the worker
            connection.send(("error", f"{type(error).__name__}: {error}"))


class SympyWorker:
    """One long-lived process that compares expressions; killed and replaced when a comparison
    runs past its timeout. Thread-safe: calls are serialised."""

    def __init__(self, memory_mib: int = 1024) -> None:
        self.memory_bytes = memory_mib * 1024 * 1024
        self._lock = threading.Lock()
        self._process: Any = None
        self._connection: Any = None

    def _start(self) -> None:
        # spawn, not fork: the caller may hold threads (torch, HTTP servers)
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_sympy_worker, args=(child, self.memory_bytes), daemon=True)
        self._process.start()
        child.close()
        # wait out the start and sympy's import here, so a comparison's timeout is its own
        if not self._connection.poll(STARTUP_SECONDS) or self._connection.recv()[0] != "ready":
            self._stop()
            raise RuntimeError(f"the sympy worker did not start within {STARTUP_SECONDS} s")

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        self._process = self._connection = None

    def equal(self, a: str, b: str, timeout: float) -> bool | None:
        """True/False, or None when the comparison failed or ran out of time."""
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self._start()
            self._connection.send((a, b))
            if not self._connection.poll(timeout):
                self._stop()
                return None
            try:
                status, result = self._connection.recv()
            except EOFError:
                self._stop()
                return None
            return result if status == "ok" else None

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                try:
                    self._connection.send(None)
                except OSError:
                    pass
            self._stop()


_SHARED_WORKER = SympyWorker()


# --- equivalence ----------------------------------------------------------------------------
def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _strip_brackets(text: str) -> str:
    if len(text) >= 2 and text[0] in "([" and text[-1] in ")]" and len(_split_top_level(text[1:-1])) > 1:
        return text[1:-1]
    return text


def answers_equivalent(answer: str | None, reference: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                       worker: SympyWorker | None = None) -> bool:
    """Whether `answer` denotes the same value as `reference` (see the module docstring)."""
    if answer is None:
        return False
    a, b = normalize_answer(answer), normalize_answer(reference)
    if not a:
        return False
    if a == b:
        return True
    a_parts, b_parts = _split_top_level(_strip_brackets(a)), _split_top_level(_strip_brackets(b))
    if len(a_parts) > 1 or len(b_parts) > 1:
        return len(a_parts) == len(b_parts) and all(
            _single_equivalent(x, y, timeout_seconds, worker) for x, y in zip(a_parts, b_parts))
    return _single_equivalent(a, b, timeout_seconds, worker)


def _single_equivalent(a: str, b: str, timeout_seconds: float, worker: SympyWorker | None) -> bool:
    if a == b:
        return True
    exact_a, exact_b = rational_value(a), rational_value(b)
    if exact_a is not None and exact_b is not None:
        return exact_a == exact_b
    if not (_safe_for_sympy(a) and _safe_for_sympy(b)):
        return False
    return (worker or _SHARED_WORKER).equal(a, b, timeout_seconds) is True


@dataclass
class MathVerifier:
    """Reward 1 when the response's final answer is equivalent to the reference answer, else 0."""

    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    worker: SympyWorker | None = None

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds: expected > 0, got {self.timeout_seconds}")

    def score(self, response: str, reference: Any) -> float:
        if not isinstance(reference, str):
            raise TypeError(f"reference: expected the reference answer as a string, got {type(reference).__name__}")
        return 1.0 if answers_equivalent(extract_answer(response), reference, self.timeout_seconds, self.worker) else 0.0


@register_verifier("math")
def math_verifier(reward_spec: dict[str, Any], **options: Any) -> MathVerifier:
    return MathVerifier(**options)


def answers_match(candidate: str | None, reference: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> bool:
    """`answers_equivalent` under the name the task loader uses."""
    return answers_equivalent(candidate, reference, timeout)


def math_reward(response: str, reference: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> float:
    """1.0 when the response's final answer equals the reference, else 0.0."""
    return MathVerifier(timeout_seconds=timeout).score(response, reference)
