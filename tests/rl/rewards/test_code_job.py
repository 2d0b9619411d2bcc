"""Code rewards in the job: examples/tiny-code.yaml's task, scored where the checkpoint engine
scores (score_items), under the spec's sandbox limits, and refused where there is no sandbox."""
import copy
import json
import random
import runpy
import time
from pathlib import Path

import pytest

from seesaw.checkpoint_engine.scoring import score_items
from seesaw.local.paths import resolve_paths
from seesaw.model.generate import build_tokenizer
from seesaw.rl.rewards import sandbox
from seesaw.spec import SpecError, load_manifest
from seesaw.tasks import load_task

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "tiny-code.yaml"


class Characters:
    """A tokenizer for programs outside the task's alphabet: one id per character."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(map(chr, ids))


@pytest.fixture
def spec():
    spec = load_manifest(str(EXAMPLE))["spec"]
    resolve_paths(spec, EXAMPLE.parent)  # as `seesaw run` reads it: its prompts lie beside it
    return spec


def with_sandbox(spec, **sandbox_spec):
    spec = copy.deepcopy(spec)
    spec["reward"]["sandbox"] = sandbox_spec
    return spec


def find(task, prompt):
    """(split, index) of a prompt of the task."""
    for split, problems in (("train", task.train), ("eval", task.eval)):
        for index, problem in enumerate(problems):
            if problem.prompt == prompt:
                return split, index
    raise KeyError(prompt)


def test_the_example_scores_a_right_and_a_wrong_program_where_the_job_does(spec):
    task = load_task(spec)
    tokenizer = build_tokenizer(task.alphabet)
    for prompt in ("sum:", "add 3 to each:", "item 4:", "count above 7:"):
        split, index = find(task, prompt)
        problem = getattr(task, split)[index]
        right, wrong = tokenizer.encode(problem.answer), tokenizer.encode(task.wrong_answer(problem))
        assert score_items(task, tokenizer, split, [[index, right], [index, wrong]]) == [1.0, 0.0], prompt


def test_a_code_row_s_solution_is_the_demonstration_and_its_mistake_the_noise(spec):
    task = load_task(spec)
    rows = {row["prompt"]: row for row in map(json.loads, (ROOT / spec["prompts"]["source"]).read_text().splitlines())}
    for problem in task.train:
        row = rows[problem.prompt]
        assert problem.answer == row["solution"] == task.demonstrate(problem, random.Random(0))
        assert task.wrong_answer(problem) == row["wrong_solution"]
    # the generated tokenizer spells both
    assert set("".join(row["solution"] + row["wrong_solution"] for row in rows.values())) <= set(task.alphabet)


def test_rows_without_a_mistake_offer_no_sft_noise(tmp_path, spec):
    path = tmp_path / "code.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"print {i}:", "tests": [{"stdout": str(i)}],
                                          "solution": f"print({i})"}) for i in range(4)))
    task = load_task(dict(spec, prompts=dict(spec["prompts"], source=str(path)), rl=dict(spec["rl"], evaluation={"prompts": 1})))
    assert task.wrong_answer is None and {p.answer for p in task.train + task.eval} == {f"print({i})" for i in range(4)}


def test_the_spec_s_sandbox_limits_take_effect_in_the_job_path(spec):
    problem_index = 0
    task = load_task(with_sandbox(spec, timeoutSeconds=5, memoryMiB=256))
    answer = task.train[problem_index].answer
    slow = f"import time\ntime.sleep(1.2)\n{answer}"
    hungry = f"x = bytearray(96 * 1024 * 1024)\n{answer}"
    item = lambda source: [problem_index, [ord(c) for c in source]]  # noqa: E731
    # within generous limits both programs are right
    assert score_items(task, Characters(), "train", [item(slow), item(hungry)]) == [1.0, 1.0]
    tight = load_task(with_sandbox(spec, timeoutSeconds=0.5, memoryMiB=64))
    started = time.monotonic()
    assert score_items(tight, Characters(), "train", [item(slow), item(hungry), item(answer)]) == [0.0, 0.0, 1.0]
    assert time.monotonic() - started < 2.4  # the slow one was cut at 0.5 s per test, not 1.2 s


@pytest.fixture
def no_bwrap(monkeypatch, tmp_path):
    sandbox.isolation.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    yield
    sandbox.isolation.cache_clear()


def test_a_code_job_refuses_to_start_where_the_sandbox_cannot_run(spec, no_bwrap):
    with pytest.raises(SpecError, match=r"spec.reward.type: code: the code sandbox cannot run on this host: "
                                        r"bwrap \(bubblewrap\) is not installed.*seccompProfile Unconfined.*"
                                        r"refusing to run responses unsandboxed"):
        load_task(spec)


def test_the_example_data_is_what_its_generator_writes():
    rows = runpy.run_path(str(ROOT / "tools" / "make_tiny_code.py"))["rows"]
    written = [json.loads(line) for line in (ROOT / "examples" / "data" / "tiny-code.jsonl").read_text().splitlines()]
    assert written == rows()
