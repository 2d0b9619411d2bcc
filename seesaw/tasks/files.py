"""Prompt sets read from files and saved datasets (`spec.prompts.source: <path>`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from seesaw.spec import SpecError
from seesaw.tasks.base import Problem, Task, split_train_eval
from seesaw.tasks.records import mapped, read_rows
from seesaw.tasks.verifiers import reference_of, verifier_scorer


DEFAULT_FIELDS = {"prompt": "prompt", "answer": "answer", "answerExtract": "none"}


def file_task(path: Path, eval_count: int, reward_spec: dict[str, Any] | None = None, seed: int = 1234,
              fields: dict[str, Any] | None = None, split: str = "train") -> Task:
    """Prompts from a JSONL or parquet file or a saved Hugging Face dataset (seesaw.tasks.records):
    {prompt, answer} rows for math, {prompt, tests: [{stdin, stdout}]} for code, the prompt and
    answer under the columns `fields` names. A code row's optional `solution` (a reference
    program) is its answer: what the SFT warm-up demonstrates and the sync probe scores; its
    optional `wrong_solution` (a plausible mistake) is what the warm-up shows instead in
    spec.model.generate.sftNoise of its demonstrations, offered when every row has one."""
    reward_spec = reward_spec or {"type": "math", "sandbox": {}}
    fields = fields or DEFAULT_FIELDS
    reward = reward_spec["type"]
    score = verifier_scorer(reward_spec)
    by_tests = reference_of(reward) == "tests"
    problems = []
    mistakes: dict[tuple[str, str], str] = {}
    for where, raw in read_rows(path, split):
        row = mapped(raw, fields, where)
        difficulty = float(row["difficulty"]) if row.get("difficulty") is not None else None
        if by_tests:
            if not row.get("tests"):
                raise SpecError("spec.prompts.source", f"{where}: spec.reward.type is {reward}, expected 'tests': [{{stdin, stdout}}, ...]")
            tests = tuple((str(t.get("stdin", "")), str(t["stdout"])) for t in row["tests"])
            problems.append(Problem(str(row["prompt"]), str(row.get("solution") or ""), difficulty, tests))
            if row.get("wrong_solution"):
                mistakes[problems[-1].prompt, problems[-1].answer] = str(row["wrong_solution"])
        else:
            if "answer" not in row:
                raise SpecError("spec.prompts.fields.answer", f"{where}: spec.reward.type is {reward}, expected an answer "
                                f"in column {fields['answer']!r}")
            problems.append(Problem(str(row["prompt"]), str(row["answer"]), difficulty))
    train, held_out = split_train_eval(problems, eval_count, seed)
    # the tokenizer must also spell what the warm-up shows
    alphabet = "".join(sorted({c for p in problems for c in p.prompt + p.answer} | set("".join(mistakes.values()))))
    offered = len(mistakes) == len(problems)
    return Task(path.stem, train, held_out, score, alphabet,
                wrong_answer=(lambda problem: mistakes[problem.prompt, problem.answer]) if offered else None)
