"""The docker runtime's reading of the operator's pods: which containers, in what order, with
which namespaces, volumes, environment and security settings (no engine needed)."""
from pathlib import Path

import pytest

from seesaw.local.docker_runtime import plan_pod, resolve_env
from seesaw.operator import build
from seesaw.spec import SpecError, load_manifest

ROOT = Path(__file__).resolve().parents[2]


def job(example: str = "tiny-reverse-2pods.yaml") -> dict:
    return load_manifest(ROOT / "examples" / example)


def plan(manifest: dict, index: int, tmp_path: Path, shared: dict | None = None):
    pod = build.build_pods(manifest)[index]
    return plan_pod(pod, build.build_config_map(manifest), tmp_path / f"pod-{index}",
                    shared if shared is not None else {"checkpoints": tmp_path / "checkpoints"},
                    {"/host/model": "/host/model"}, {"SEESAW_MODEL_DIR": "/host/model"}, "run-1")


def test_sidecars_start_in_order_before_the_checkpoint_engine(tmp_path):
    manifest = job()
    pod = plan(manifest, 0, tmp_path)
    assert [(c.name, c.sidecar) for c in pod.containers] == [
        ("trainer", True), ("rollout", True), ("checkpoint-engine", False)]
    trainer, rollout, engine = pod.containers
    assert (trainer.startup_port, rollout.startup_port, engine.startup_port) == (18100, 18200, None)
    assert trainer.image == "ghcr.io/seesaw-rl/trainer:0.1.0-cpu" and engine.image.endswith("checkpoint-engine:0.1.0")
    assert trainer.settings["entrypoint"] == ["python", "-m", "seesaw.trainer.launch"]
    assert trainer.settings["name"] == "run-1-tiny-reverse-2pods-0-trainer"


def test_the_pod_name_resolves_as_the_headless_service_names_it(tmp_path):
    manifest = job()
    pods = [plan(manifest, i, tmp_path) for i in range(2)]
    env = resolve_env(pods[1].containers[2].env, "default", "10.0.0.2")
    assert env["SEESAW_RENDEZVOUS"] in pods[0].aliases  # where pod 1 looks for pod 0
    assert "tiny-reverse-2pods-1.tiny-reverse-2pods.default.svc" in pods[1].aliases
    assert pods[0].hostname == "tiny-reverse-2pods-0"
    assert pods[0].share_pid and pods[0].shm_bytes == 32 * 2**30  # spec.cluster.shmSize's default


def test_volumes_are_folders_and_the_config_map_is_read_only(tmp_path):
    manifest = job()
    pod = plan(manifest, 0, tmp_path, shared={"checkpoints": tmp_path / "ckpt", "run": tmp_path / "run-dir"})
    trainer = pod.containers[0].settings["volumes"]
    assert trainer[str(tmp_path / "pod-0" / "config")] == {"bind": "/etc/seesaw", "mode": "ro"}
    assert trainer[str(tmp_path / "run-dir")] == {"bind": "/var/run/seesaw", "mode": "rw"}
    assert trainer[str(tmp_path / "ckpt")] == {"bind": manifest["spec"]["checkpoint"]["path"], "mode": "rw"}
    assert trainer["/host/model"] == {"bind": "/host/model", "mode": "ro"}
    assert not any(v["bind"] == "/dev/shm" for v in trainer.values())  # the pause container's shm_size
    rollout = pod.containers[1].settings["volumes"]
    assert str(tmp_path / "ckpt") not in rollout  # the operator mounts no checkpoints into the rollout engine
    (config_file, text), = pod.config_files.items()
    assert config_file == tmp_path / "pod-0" / "config" / "job.yaml" and "tiny-reverse-2pods" in text
    # a pod without a shared run folder gets one of its own
    other = plan(manifest, 1, tmp_path)
    assert other.folders["run"] == tmp_path / "pod-1" / "run"


def test_environment_and_security_follow_the_pod(tmp_path):
    manifest = job()
    engine = plan(manifest, 0, tmp_path).containers[2]
    env = resolve_env(engine.env, "team-a", "172.18.0.5")
    assert env["SEESAW_POD_IP"] == "172.18.0.5" and env["SEESAW_NAMESPACE"] == "team-a"
    assert env["SEESAW_REPORT_STATUS"] == "true" and env["SEESAW_MODEL_DIR"] == "/host/model"
    assert env["SEESAW_POD_INDEX"] == "0" and env["CUDA_VISIBLE_DEVICES"] == ""
    settings = engine.settings
    assert settings["security_opt"] == ["no-new-privileges"]
    assert settings["group_add"] == ["10001"]
    limit = build.container_resources(manifest, "checkpoint-engine")["limits"]["memory"]
    assert settings["mem_limit"] == int(build.parse_quantity(limit, "memory")), limit
    assert settings["labels"] == {"dev.seesaw.run": "run-1", "dev.seesaw.pod": "tiny-reverse-2pods-0"}


def test_a_code_jobs_checkpoint_engine_runs_without_seccomp_and_apparmor_confinement(tmp_path):
    engine = plan(job("tiny-code.yaml"), 0, tmp_path).containers[2]
    assert sorted(engine.settings["security_opt"]) == ["apparmor=unconfined", "no-new-privileges", "seccomp=unconfined"]
    trainer = plan(job("tiny-code.yaml"), 0, tmp_path).containers[0]
    assert trainer.settings["security_opt"] == ["no-new-privileges"]


def test_a_claim_is_refused_naming_what_to_leave_out(tmp_path):
    manifest = job()
    manifest["spec"]["checkpoint"]["pvc"] = "ckpt"
    with pytest.raises(SpecError, match="spec.checkpoint.pvc"):
        plan(manifest, 0, tmp_path)


def test_an_unknown_field_reference_is_refused():
    with pytest.raises(SpecError, match="spec.nodeName"):
        resolve_env([{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}], "ns", "1.2.3.4")
