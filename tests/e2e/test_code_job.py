"""A code job end to end: examples/tiny-code.yaml at a small size, every response's program
run against its tests in the sandbox, and RL moving the reward."""
import sys
from pathlib import Path

import pytest
import yaml

from pod_helpers import run_to_completion
from seesaw import manifest_yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SEESAW = str(Path(sys.executable).parent / "seesaw")
ITERATIONS = 40


def test_the_code_example_learns_from_sandboxed_rewards(tmp_path):
    manifest = manifest_yaml.load((ROOT / "examples" / "tiny-code.yaml").read_text())
    spec = manifest["spec"]
    spec["prompts"]["source"] = str(ROOT / "examples" / "data" / "tiny-code.jsonl")
    spec["rl"].update(iterations=ITERATIONS)
    spec["rl"]["evaluation"] = {"prompts": 32, "everyIterations": 0}
    job = tmp_path / "code.yaml"
    job.write_text(yaml.safe_dump(manifest))

    result, summary, metrics, _ = run_to_completion(SEESAW, job, tmp_path, timeout=900)
    assert [m["iteration"] for m in metrics] == list(range(1, ITERATIONS + 1))
    # every iteration scored its programs in the sandbox: 8 prompts x 8 samples x 2 tests
    assert all(m["scoring_seconds"] > 0 for m in metrics)
    # the reward moves up: the last quarter of the run earns more than the first (runs of 32
    # iterations: 0.55 -> 0.67 and 0.55 -> 0.65), and the held-out greedy answers do not get worse
    quarter = ITERATIONS // 4
    early = sum(m["mean_reward"] for m in metrics[:quarter]) / quarter
    late = sum(m["mean_reward"] for m in metrics[-quarter:]) / quarter
    assert late > early, (early, late, [round(m["mean_reward"], 2) for m in metrics])
    assert summary["greedy_accuracy_after"] >= summary["greedy_accuracy_before"], summary
