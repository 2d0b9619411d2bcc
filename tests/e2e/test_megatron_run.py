"""`seesaw run` with trainer.backend megatron, on the CPU: Megatron-core's ranks over gloo, the
vLLM CPU engine and the Mooncake sync, as a GPU job runs them but slowly.

One pod with two trainer ranks at TP=2 and a TP=2 rollout engine, then a gang of two pods
with a pipeline stage each.
The layout is reported (a silent fall back to the torch backend cannot pass), the engine
proves every sync, iteration 1's batch replayed into the torch backend gives the same loss,
and a checkpoint continues the run.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from seesaw import pod_contract as pc
from seesaw.checkpoint_engine.first_batch import replay
from seesaw import manifest_yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SEESAW = str(Path(sys.executable).parent / "seesaw")
PROBE = 1e-4  # the conductor's own bound on the engine's log-probs against the trainer's


def megatron_job(tmp_path: Path, iterations: int, rollout_tp: int = 1, **trainer) -> Path:
    manifest = manifest_yaml.load((ROOT / "examples" / "tiny-reverse.yaml").read_text())
    spec = manifest["spec"]
    spec["trainer"].update(backend="megatron", **trainer)
    spec["rollout"]["tensorParallel"] = rollout_tp
    spec["rl"].update(iterations=iterations)
    spec["rl"]["evaluation"].update(prompts=32, everyIterations=0)
    spec["checkpoint"] = {"everyIterations": 1}
    job = tmp_path / f"job-{iterations}.yaml"
    job.write_text(yaml.safe_dump(manifest))
    return job


def run(job: Path, workdir: Path, *extra: str, ranks_per_pod: int = 1) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{pc.TRAINER_PROCESSES: str(ranks_per_pod)})
    result = subprocess.run([SEESAW, "run", str(job), "--workdir", str(workdir), *extra], capture_output=True,
                            text=True, timeout=600, cwd=job.parent, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_ranks_at_tp2_train_sync_resume_and_match_the_torch_backends_first_loss(tmp_path):
    # the engine is tensor-parallel too: two vLLM workers over gloo, each loading its shard of every update
    result = run(megatron_job(tmp_path, 2, rollout_tp=2, tensorParallel=2), tmp_path / "runs", "--keep-first-batch",
                 ranks_per_pod=2)
    assert "trainer ready (2 ranks, megatron on cpu, TP=2 PP=1 DP=1)" in result.stdout, result.stdout[-3000:]
    run_dir = next((tmp_path / "runs").glob("tiny-reverse-*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["trainer"] == {"backend": "megatron", "device": "cpu", "tp": 2, "pp": 1, "dp": 1, "ep": 1}
    assert "tensor_parallel_size=2" in (run_dir / "rollout.log").read_text()
    metrics = records(run_dir)
    # after every sync both TP workers hold their shard: a wrong one would move the probe's log-probs
    assert all(m["probe_max_abs_logprob_diff"] <= PROBE for m in metrics), [m["probe_max_abs_logprob_diff"] for m in metrics]
    # Megatron's gathered tensors were packed into the sender's staging buffer one at a time:
    # its peak is that buffer plus the tensor in hand, never a second copy of the weights
    largest = max(t.numel() * t.element_size() for f in Path(summary["exported_model"]).glob("*.safetensors")
                  for t in load_file(f).values())
    assert all(m["sync_bytes"] < m["staging_peak_bytes"] <= m["sync_bytes"] + largest for m in metrics), \
        [(m["sync_bytes"], m["staging_peak_bytes"], largest) for m in metrics]

    # the same batch on a fresh torch trainer from the same weights: the same first loss
    replayed = replay(run_dir, "torch")
    assert replayed["difference"] <= 1e-4, replayed

    # the TP=2 checkpoint of iteration 2 continues the run at iteration 3
    resumed = run(megatron_job(tmp_path, 3, rollout_tp=2, tensorParallel=2), tmp_path / "resumed",
                  "--resume-from", str(run_dir / "checkpoints"), ranks_per_pod=2)
    assert "continuing at iteration 3" in resumed.stdout and "iter   3/3" in resumed.stdout, resumed.stdout[-3000:]
    again = records(next((tmp_path / "resumed").glob("tiny-reverse-*")))
    assert [m["iteration"] for m in again] == [1, 2, 3] and again[2]["probe_max_abs_logprob_diff"] <= PROBE


def test_a_gang_of_two_pods_trains_with_a_pipeline_stage_in_each(tmp_path):
    job = megatron_job(tmp_path, 2, pipelineParallel=2)
    manifest = yaml.safe_load(job.read_text())
    manifest["spec"]["cluster"]["nodes"] = 2
    job.write_text(yaml.safe_dump(manifest))
    result = run(job, tmp_path / "runs")
    run_dir = next((tmp_path / "runs").glob("tiny-reverse-*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["pods"] == 2 and summary["trainer_ranks"] == 2, summary
    assert summary["trainer"] == {"backend": "megatron", "device": "cpu", "tp": 1, "pp": 2, "dp": 1, "ep": 1}
    assert "megatron on cpu, TP=1 PP=2 DP=1" in result.stdout
    metrics = records(run_dir)
    assert [m["iteration"] for m in metrics] == [1, 2] and all(m["loss"] > 0 for m in metrics)
    # every engine of both pods loaded exactly the weights the two stages hold together
    for m in metrics:
        assert [e["pod"] for e in m["engines"]] == [0, 1]
        assert len({e["weight_checksum"] for e in m["engines"]}) == 1, m["engines"]
        assert all(e["probe_max_abs_logprob_diff"] <= PROBE for e in m["engines"]), m["engines"]
