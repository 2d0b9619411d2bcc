"""A verifier of the user's own, installed as a package with a `seesaw.verifiers` entry point,
scores a real task without any edit to Seesaw; the task asks the registry, never the type."""
import json
import sys
import textwrap

import pytest

from pod_helpers import tiny_manifest
from seesaw.rl.rewards import registry
from seesaw.spec import SpecError
from seesaw.tasks import load_task

PLUGIN = '''
import re

from seesaw.rl.rewards import register_verifier


class WholeWordVerifier:
    """1 when the reference appears in the response as a whole word."""

    def score(self, response, reference):
        return 1.0 if re.search(rf"(?<![0-9A-Za-z]){re.escape(reference)}(?![0-9A-Za-z])", response) else 0.0


class StdoutVerifier:
    """1 when the response is the first test's expected output: a tests verifier."""

    def score(self, response, reference):
        return 1.0 if response.strip() == reference[0]["stdout"] else 0.0


def register():
    register_verifier("whole-word")(lambda reward_spec, **options: WholeWordVerifier())
    register_verifier("echo-stdout", reference="tests")(lambda reward_spec, **options: StdoutVerifier())
'''


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """The plug-in as pip would leave it: a module and its dist-info with the entry point."""
    (tmp_path / "whole_word_rewards.py").write_text(PLUGIN)
    info = tmp_path / "whole_word_rewards-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: whole-word-rewards\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [seesaw.verifiers]
        whole-word = whole_word_rewards:register
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_VERIFIERS", dict(registry._VERIFIERS))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    yield tmp_path
    sys.modules.pop("whole_word_rewards", None)


def spec_for(source, reward):
    spec = tiny_manifest()["spec"]
    spec["prompts"]["source"] = str(source)
    spec["reward"]["type"] = reward
    spec["rl"]["evaluation"]["prompts"] = 1
    return spec


def test_an_installed_verifier_scores_a_builtin_task(installed_plugin):
    task = load_task(spec_for("builtin:arith", "whole-word"))
    problem = next(p for p in task.eval + task.train if len(p.answer) == 2)
    assert task.score(f"I think it is {problem.answer}.", problem) == 1.0
    # the builtin exact scorer would refuse this (the answer is not the first line) ...
    assert task.score(f"working\n{problem.answer}", problem) == 1.0
    # ... and the plug-in's own rule decides: a longer number is not the answer
    assert task.score(f"{problem.answer}0", problem) == 0.0
    assert "whole-word" in registry.verifier_types()


def test_an_installed_tests_verifier_reads_the_rows_tests(installed_plugin, tmp_path):
    path = tmp_path / "echo.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"say {n}", "tests": [{"stdin": "", "stdout": str(n)}]}) for n in range(4)))
    task = load_task(spec_for(path, "echo-stdout"))
    problem = task.train[0]
    assert task.score(problem.tests[0][1], problem) == 1.0 and task.score("nothing", problem) == 0.0
    with pytest.raises(SpecError, match=r"spec.reward.type: echo-stdout scores a program against tests; builtin:arith has none"):
        load_task(spec_for("builtin:arith", "echo-stdout"))


def test_a_type_no_verifier_has_is_refused_when_the_task_loads(installed_plugin):
    with pytest.raises(SpecError, match=r"spec.reward.type: expected one of \['code', 'echo-stdout', 'math', "
                                        r"'whole-word'\] .*got 'regex'"):
        load_task(spec_for("builtin:arith", "regex"))


def test_a_broken_plugin_is_named(installed_plugin):
    (installed_plugin / "whole_word_rewards.py").write_text("raise ImportError('no regex engine here')\n")
    with pytest.raises(SpecError, match=r"spec.reward.type: the verifier plug-in 'whole-word' "
                                        r"\(whole_word_rewards:register\) failed to load: ImportError: no regex engine here"):
        load_task(spec_for("builtin:arith", "whole-word"))
