"""Prompt sets: built-in tasks, and JSONL files scored by the math verifier or the code sandbox."""
import json

import pytest

from pod_helpers import tiny_manifest
from seesaw.spec import SpecError
from seesaw.tasks import load_task


def spec_for(source, reward="math", eval_prompts=1):
    spec = tiny_manifest()["spec"]
    spec["prompts"]["source"] = str(source)
    spec["reward"]["type"] = reward
    spec["rl"]["evaluation"]["prompts"] = eval_prompts
    return spec


def test_builtin_tasks_hold_out_disjoint_prompts():
    task = load_task(tiny_manifest()["spec"])
    assert len(task.eval) == 32 and not {p.prompt for p in task.eval} & {p.prompt for p in task.train}
    problem = task.eval[0]
    assert task.score(problem.answer, problem) == 1.0
    assert task.score(task.wrong_answer(problem), problem) == 0.0


def test_jsonl_math_task_uses_the_symbolic_verifier(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"What is {n}/4?", "answer": f"{n}/4"}) for n in range(1, 5)))
    task = load_task(spec_for(path))
    problem = task.train[0]
    assert task.score(f"so it is \\boxed{{{problem.answer}}}", problem) == 1.0
    assert task.score("the answer is 99", problem) == 0.0


def test_jsonl_code_task_runs_the_tests(tmp_path):
    path = tmp_path / "code.jsonl"
    rows = [{"prompt": "double it", "tests": [{"stdin": "2\n", "stdout": "4"}, {"stdin": "5\n", "stdout": "10"}]}] * 3
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = load_task(spec_for(path, "code"))
    problem = task.train[0]
    assert task.score("```python\nprint(int(input()) * 2)\n```", problem) == 1.0
    assert task.score("```python\nprint(int(input()) + 2)\n```", problem) == 0.0


def test_bad_prompt_files_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "x", "answer": "1"}) + "\n" + json.dumps({"question": "y"}))
    with pytest.raises(SpecError, match=r"bad.jsonl:2: no column 'prompt' \(columns: \['question'\]\)"):
        load_task(spec_for(path))
    with pytest.raises(SpecError, match="unknown builtin task"):
        load_task(spec_for("builtin:chess"))
    with pytest.raises(SpecError, match="does not exist"):
        load_task(spec_for(tmp_path / "missing.jsonl"))
