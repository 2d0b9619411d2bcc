"""Two pods, one job: `seesaw run` on the 2-pod example plays the gang the operator starts."""
import json
import sys
from pathlib import Path

import pytest
import yaml

from pod_helpers import kill_after_first_iteration, processes_of_run, run_to_completion
from seesaw import pod_contract as pc
from seesaw.spec import load_manifest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SEESAW = str(Path(sys.executable).parent / "seesaw")


def two_pod_job(tmp_path: Path, iterations: int, max_restarts: int = 0) -> Path:
    manifest = load_manifest(ROOT / "examples" / "tiny-reverse-2pods.yaml")
    spec = manifest["spec"]
    spec["failurePolicy"].update(maxRestarts=max_restarts, backoffSeconds=0)
    spec["model"]["generate"]["sftSteps"] = 20
    spec["rl"].update(iterations=iterations, promptsPerIteration=8)
    spec["rl"]["evaluation"].update(prompts=32, everyIterations=0)
    spec["checkpoint"]["everyIterations"] = 1
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_two_pods_roll_out_train_and_sync_as_one_job(tmp_path):
    job = two_pod_job(tmp_path, iterations=3)
    result, summary, metrics, _ = run_to_completion(SEESAW, job, tmp_path)
    assert summary["pods"] == 2 and [e["pod"] for e in summary["engines"]] == [0, 1]
    assert [m["iteration"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        engines = m["engines"]
        assert [e["prompts"] for e in engines] == [4, 4], "each engine rolls out its half of the 8 prompts"
        # after every sync both engines loaded this iteration's weights and proved it on the probe batch
        assert [e["weight_version"] for e in engines] == [m["iteration"] + 1] * 2
        assert all(e["probe_max_abs_logprob_diff"] < 1e-4 for e in engines)
        assert m["params_checksum"], "the trainers compared their replicas' checksums"
        assert m["rollout_trainer_logprob_diff"] < 1e-4
    assert len({m["params_checksum"] for m in metrics}) == 3, "training moved the replicas every iteration"
    # after every sync each engine loaded exactly the parameters the trainers hold after that step
    for m in metrics:
        assert [e["weight_checksum"] for e in m["engines"]] == [m["params_checksum"]] * 2
    assert summary["exported_model"].endswith("/checkpoints/iteration-000003/model")
    assert [e["weight_checksum"] for e in summary["engines"]] == [metrics[-1]["engines"][0]["weight_checksum"]] * 2
    assert "pod 1's trainer ready" in result.stdout and "pod 1's rollout engine ready" in result.stdout


def test_a_gang_that_runs_out_of_restarts_prints_how_to_continue(tmp_path):
    job = two_pod_job(tmp_path, iterations=200)
    code, text, seconds, leftovers = kill_after_first_iteration(
        SEESAW, job, tmp_path, lambda p: "seesaw.rollout.server" in " ".join(p.cmdline())
        and p.environ().get("SEESAW_POD_INDEX") == "1")
    assert code == 1, text[-3000:]
    assert seconds < 60
    assert "FAILED: pod 1's rollout engine was killed by SIGKILL" in text, text[-3000:]
    assert "spec.failurePolicy.maxRestarts is 0" in text
    command = text.split("to continue from its last checkpoint: ")[1].splitlines()[0]
    assert command.startswith(f"seesaw run {job} --resume-from ") and "/checkpoints/iteration-" in command
    assert not leftovers, f"processes left behind: {[p.cmdline()[:3] for p in leftovers]}"


def test_two_engines_in_one_pod_share_the_rollouts_and_both_prove_every_sync(tmp_path):
    manifest = load_manifest(ROOT / "examples" / "tiny-reverse.yaml")
    spec = manifest["spec"]
    spec["model"]["generate"]["sftSteps"] = 20
    spec["rollout"]["enginesPerPod"] = 2
    spec["rl"].update(iterations=2, promptsPerIteration=8)
    spec["rl"]["evaluation"].update(prompts=32, everyIterations=0)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(manifest))
    result, summary, metrics, _ = run_to_completion(SEESAW, job, tmp_path)
    assert "rollout engine 0 ready" in result.stdout and "rollout engine 1 ready" in result.stdout
    assert [(e["pod"], e["engine"]) for e in summary["engines"]] == [(0, 0), (0, 1)]
    for m in metrics:
        assert [e["prompts"] for e in m["engines"]] == [4, 4], "each engine of the pod rolls out half the prompts"
        assert [e["weight_version"] for e in m["engines"]] == [m["iteration"] + 1] * 2
        assert [e["weight_checksum"] for e in m["engines"]] == [m["params_checksum"]] * 2
        assert all(e["probe_max_abs_logprob_diff"] < 1e-4 for e in m["engines"])


def test_two_trainer_ranks_per_pod_train_as_one_group_and_a_dead_rank_restarts_the_gang_from_its_checkpoint(
        tmp_path, monkeypatch):
    monkeypatch.setenv(pc.TRAINER_PROCESSES, "2")  # as pods with two GPUs each: four trainer ranks in all
    job = two_pod_job(tmp_path, iterations=3, max_restarts=1)
    code, text, _, leftovers = kill_after_first_iteration(
        SEESAW, job, tmp_path, lambda p: "seesaw.trainer.server" in " ".join(p.cmdline())
        and p.environ().get(pc.POD_INDEX) == "1" and p.environ().get("LOCAL_RANK") == "1", timeout=600)
    assert code == 0, text[-4000:]
    # each pod's trainer: two ranks of one data-parallel group of four
    assert "trainer ready (2 ranks, torch on cpu, TP=1 PP=1 DP=4)" in text, text[-3000:]
    assert "pod 1's trainer ready (2 ranks, torch on cpu, TP=1 PP=1 DP=4)" in text, text[-3000:]
    run_dir = next((tmp_path / "runs").glob("tiny-reverse-2pods-*"))
    pod_1 = (run_dir / "pod-1-trainer.log").read_text()
    # the follower's death takes its pod's trainer container down (said in its log: the run's
    # output shows only the log's last lines, which the other rank's traceback may fill), and
    # the gang restarts
    assert "trainer rank 1 exited with code 137: stopping the pod's other trainer ranks" in pod_1, pod_1[-3000:]
    assert "FAILED: pod 1's trainer" in text and "restarting the gang from" in text and "(restart 1 of 1)" in text, \
        text[-3000:]
    resumed_at = int(text.split("continuing at iteration ")[1].split()[0])
    assert resumed_at >= 2, "the gang went on after the checkpoint of an iteration it finished"
    logs = (run_dir / "trainer.log").read_text() + pod_1
    assert all(f"trainer rank {r} of 4" in logs for r in range(4)), "one group over both pods' ranks"
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [1, 2, 3], "every iteration recorded exactly once"
    set_aside = [json.loads(line) for path in run_dir.glob("metrics.attempt-*.jsonl")
                 for line in path.read_text().splitlines()]
    assert [m["iteration"] for m in set_aside][:resumed_at - 1] == list(range(1, resumed_at))
    # the four replicas compared their checksums after every step (a mismatch stops the step)
    assert all(m["params_checksum"] for m in metrics) and len({m["params_checksum"] for m in metrics}) == 3
    assert all(m["rollout_trainer_logprob_diff"] < 1e-4 for m in metrics)
    leftovers += processes_of_run(run_dir)
    assert not leftovers, f"processes left behind: {[p.cmdline()[:3] for p in leftovers]}"
