"""Writes examples/data/word-problems.jsonl: one- and two-digit arithmetic word problems, for
examples/smollm2-math.yaml (a real instruct model, scored by the math reward).

Each row is a short story with one addition or subtraction ("Mia has 7 shells and finds 5
more. How many shells does Mia have now?"), an instruction to end with the number, and the
answer. Subtractions never go below zero. Deterministic: run it again to get the same file.
    .venv/bin/python tools/make_word_problems.py [--out examples/data/word-problems.jsonl]
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "examples" / "data" / "word-problems.jsonl"
NAMES = ["Mia", "Sam", "Ava", "Leo", "Zoe", "Max", "Ivy", "Ben", "Ada", "Tom", "Eva", "Kai"]
THINGS = ["apples", "shells", "marbles", "stickers", "books", "coins", "pencils", "cookies", "stamps", "cards"]
GAIN = ["finds {b} more", "buys {b} more", "gets {b} more from a friend", "is given {b} more"]
LOSS = ["gives away {b}", "loses {b}", "eats {b}", "sells {b}"]
INSTRUCTION = " Answer with the final number."


def problem(rng: random.Random, digits: int) -> dict:
    top = 10 ** digits - 1
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b = rng.randint(1, top), rng.randint(1, top)
    if rng.random() < 0.5:
        story, answer = rng.choice(GAIN).format(b=b), a + b
    else:
        a, b = max(a, b), min(a, b)
        story, answer = rng.choice(LOSS).format(b=b), a - b
    prompt = f"{name} has {a} {thing} and {story}. How many {thing} does {name} have now?{INSTRUCTION}"
    return {"prompt": prompt, "answer": str(answer), "difficulty": float(digits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rng = random.Random(0)
    rows = [problem(rng, 1) for _ in range(200)] + [problem(rng, 2) for _ in range(200)]
    unique = list({row["prompt"]: row for row in rows}.values())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in unique))
    print(f"{len(unique)} problems -> {args.out}")


if __name__ == "__main__":
    main()
