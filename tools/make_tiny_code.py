"""Writes examples/data/tiny-code.jsonl: one-line programs over a line of integers, for examples/tiny-code.yaml.

Each row names an operation ("max", "add 3 to each", "count above 4", ...) in one of two
phrasings, carries two stdin/stdout tests, a reference `solution` of 25-45 characters that
the tiny generated model can learn to write, and a `wrong_solution` with the operation
swapped (max for min, + for *, item -C for item C) for the SFT warm-up's deliberate
mistakes. Deterministic: run it again to get the same file.
    .venv/bin/python tools/make_tiny_code.py [--out examples/data/tiny-code.jsonl]
"""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

OUT = Path(__file__).resolve().parent.parent / "examples" / "data" / "tiny-code.jsonl"
NUMBERS = "map(int,input().split())"
EACH = "for x in input().split()"


@dataclass(frozen=True)
class Operation:
    phrasings: tuple[str, ...]
    solution: str
    # a plausible mistake: the SFT warm-up shows it in spec.model.generate.sftNoise of its demonstrations
    wrong_solution: str
    # what the solution prints for a list of integers
    expected: Callable[[list[int]], str]


def _numbers(xs: list[int]) -> str:
    return " ".join(map(str, xs))


PLAIN = [
    Operation(("sum", "total"), f"print(sum({NUMBERS}))", f"print(max({NUMBERS}))", lambda xs: str(sum(xs))),
    Operation(("max", "largest"), f"print(max({NUMBERS}))", f"print(min({NUMBERS}))", lambda xs: str(max(xs))),
    Operation(("min", "smallest"), f"print(min({NUMBERS}))", f"print(max({NUMBERS}))", lambda xs: str(min(xs))),
    Operation(("sort", "sorted"), f"print(*sorted({NUMBERS}))", "print(*input().split()[::-1])",
              lambda xs: _numbers(sorted(xs))),
    Operation(("reverse", "backwards"), "print(*input().split()[::-1])", f"print(*sorted({NUMBERS}))",
              lambda xs: _numbers(xs[::-1])),
    Operation(("count", "how many"), "print(len(input().split()))", f"print(sum({NUMBERS}))", lambda xs: str(len(xs))),
    Operation(("first", "the first"), "print(input().split()[0])", "print(input().split()[-1])", lambda xs: str(xs[0])),
    Operation(("last", "the last"), "print(input().split()[-1])", "print(input().split()[0])", lambda xs: str(xs[-1])),
]


def with_constant(c: int) -> list[Operation]:
    # the mistakes keep the constant: the operation is what goes wrong
    return [
        Operation((f"add {c} to each", f"each plus {c}"), f"print(*[int(x)+{c} {EACH}])", f"print(*[int(x)*{c} {EACH}])",
                  lambda xs: _numbers([x + c for x in xs])),
        Operation((f"multiply each by {c}", f"each times {c}"), f"print(*[int(x)*{c} {EACH}])",
                  f"print(*[int(x)+{c} {EACH}])", lambda xs: _numbers([x * c for x in xs])),
        Operation((f"sum plus {c}", f"total plus {c}"), f"print(sum({NUMBERS})+{c})", f"print(max({NUMBERS})+{c})",
                  lambda xs: str(sum(xs) + c)),
        Operation((f"count above {c}", f"how many above {c}"), f"print(sum(int(x)>{c} {EACH}))",
                  f"print(sum(int(x)<{c} {EACH}))", lambda xs: str(sum(x > c for x in xs))),
        Operation((f"item {c}", f"number {c}"), f"print(input().split()[{c}])", f"print(input().split()[-{c}])",
                  lambda xs: str(xs[c])),
    ]


def rows(seed: int = 0, tests: int = 2) -> list[dict]:
    rng = random.Random(seed)
    operations = PLAIN + [op for c in range(10) for op in with_constant(c)]
    out = []
    for operation in operations:
        for phrasing in operation.phrasings:
            # ten numbers (so `item 9` exists) from 0 to 20: the constants and beyond
            inputs = [[rng.randint(0, 20) for _ in range(10)] for _ in range(tests)]
            out.append({"prompt": f"{phrasing}:",
                        "tests": [{"stdin": _numbers(xs) + "\n", "stdout": operation.expected(xs)} for xs in inputs],
                        "solution": operation.solution, "wrong_solution": operation.wrong_solution})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = rows()
    args.out.write_text("".join(json.dumps(row) + "\n" for row in data))
    print(f"{args.out}: {len(data)} rows")


if __name__ == "__main__":
    main()
