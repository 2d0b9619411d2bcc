"""One short `seesaw run` with partial rollouts, shared by the tests that read its output."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pod_helpers import tiny_manifest

SEESAW = str(Path(sys.executable).parent / "seesaw")


@pytest.fixture(scope="session")
def partial_rollout_run(tmp_path_factory):
    """(completed process, run dir, file of the spec fields every process read)."""
    tmp_path = tmp_path_factory.mktemp("partial")
    manifest = tiny_manifest(iterations=4, promptsPerIteration=4)
    # a correct answer is 5 tokens ('dcba' + eos): with 2 tokens per iteration it finishes in the
    # third; maxTokens 8 ends every response by the fourth, so a group surely finishes and trains
    manifest["spec"]["rl"]["partialRollout"] = {"enabled": True, "tokenBudget": 2}
    manifest["spec"]["checkpoint"]["everyIterations"] = 2
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    reads = tmp_path / "spec-reads.txt"
    result = subprocess.run([SEESAW, "run", str(job), "--workdir", str(tmp_path / "runs")], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path, env=dict(os.environ, SEESAW_SPEC_READS=str(reads)))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result, next((tmp_path / "runs").glob("tiny-reverse-*")), reads
