"""The CPU images proved by use: `seesaw run --runtime docker` plays the tiny job's pods as
containers from them, and the job learns and syncs its weights as with processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pod_helpers import start_until_first_iteration
from seesaw.local.docker_runtime import RUN_LABEL
from seesaw import manifest_yaml

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SEESAW = str(Path(sys.executable).parent / "seesaw")


def run_in_docker(host: str, tmp_path: Path, job: str, *extra: str, timeout: float = 900) -> tuple[subprocess.CompletedProcess, dict, Path]:
    summary = tmp_path / "summary.json"
    result = subprocess.run([SEESAW, "run", "--runtime", "docker", str(ROOT / "examples" / job), "--workdir",
                             str(tmp_path / "runs"), "--summary-json", str(summary), *extra],
                            capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                            env=dict(os.environ, DOCKER_HOST=host))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    run_dir = next((tmp_path / "runs").glob(f"{job.removesuffix('.yaml')}-*"))
    return result, json.loads(summary.read_text()), run_dir


def test_the_tiny_job_learns_in_containers(cpu_images, engine_left_clean, tmp_path):
    _, host = engine_left_clean
    result, summary, run_dir = run_in_docker(host, tmp_path, "tiny-reverse.yaml", "--iterations", "20")
    assert "docker runtime: pods on network seesaw-tiny-reverse-" in result.stdout
    assert "iter  20/20 |" in result.stdout
    # the demo's gain shows by iteration 20 (0.33 -> about 0.6 on 256 held-out prompts)
    assert summary["accuracy_after"] > summary["accuracy_before"] + 0.1, summary
    assert summary["sync"]["bytes"] > 0 and summary["sync"]["max_abs_logprob_diff"] < 1e-4
    # the containers wrote what the run left: as the images' user, into the run's folders
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert (run_dir / "checkpoints" / latest).stat().st_uid == 10001
    assert (run_dir / "metrics.jsonl").stat().st_uid == 10001
    # each container's output streamed into the run's logs, as with processes
    assert "Starting to load model" in (run_dir / "rollout.log").read_text()
    assert "GET /healthz" in (run_dir / "trainer.log").read_text()


def test_a_gang_of_two_pods_meets_through_the_services_names(cpu_images, engine_left_clean, tmp_path):
    _, host = engine_left_clean
    result, summary, run_dir = run_in_docker(host, tmp_path, "tiny-reverse-2pods.yaml", "--iterations", "2")
    assert "iter   2/2 |" in result.stdout
    assert summary["sync"]["max_abs_logprob_diff"] < 1e-4
    # pod 1's checkpoint engine joined pod 0's through <pod>.<service>.<namespace>.svc
    assert (run_dir / "pod-1-trainer.log").stat().st_size > 0
    assert (run_dir / ".pods" / "tiny-reverse-2pods-1-0" / "config" / "job.yaml").exists()


def test_a_missing_image_is_named_before_anything_starts(docker_engine, engine_left_clean, tmp_path):
    _, host = engine_left_clean
    job = (ROOT / "examples" / "tiny-reverse.yaml").read_text().replace(
        "ghcr.io/seesaw-rl/trainer:0.1.0-cpu", "ghcr.io/seesaw-rl/trainer:no-such-tag")
    (tmp_path / "job.yaml").write_text(job.replace("sftSteps: 400", "sftSteps: 5"))
    result = subprocess.run([SEESAW, "run", "--runtime", "docker", "job.yaml", "--workdir", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env=dict(os.environ, DOCKER_HOST=host))
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert "spec.images.trainer" in result.stderr and "no-such-tag" in result.stderr and "make images" in result.stderr


def test_a_container_that_dies_is_named_and_the_run_leaves_nothing(cpu_images, engine_left_clean, tmp_path):
    client, host = engine_left_clean
    job = manifest_yaml.load((ROOT / "examples" / "tiny-reverse.yaml").read_text())
    job["spec"]["failurePolicy"] = {"maxRestarts": 0}
    job["spec"]["rl"]["iterations"] = 40
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    runner, output = start_until_first_iteration(
        [SEESAW, "run", "--runtime", "docker", "job.yaml", "--workdir", str(tmp_path / "runs")], tmp_path,
        env=dict(os.environ, DOCKER_HOST=host))
    try:
        (trainer,) = [c for c in client.containers.list(filters={"label": RUN_LABEL}) if c.name.endswith("-trainer")]
        trainer.kill()  # SIGKILL, as the kernel's OOM killer would
        output += list(runner.stdout)
        assert runner.wait(timeout=120) == 1
    finally:
        runner.kill()
    text = "".join(output)
    assert "FAILED: pod 0's trainer exited with code 137 (SIGKILL in one of its processes)" in text, text[-4000:]
    assert "spec.failurePolicy.maxRestarts is 0" in text
