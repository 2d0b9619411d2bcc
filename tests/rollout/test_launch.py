"""The rollout container's launcher: one engine per tensor-parallel group of the pod's GPUs."""
from seesaw import pod_contract as pc
from seesaw.rollout.launch import engine_env
from seesaw.spec import SpecError, rollout_engines_per_pod, validate_manifest

import pytest


def manifest(rollout: dict, cluster: dict) -> dict:
    return {"apiVersion": "seesaw.dev/v1alpha1", "kind": "RLJob", "metadata": {"name": "engines"},
            "spec": {"model": {"generate": {}}, "rollout": rollout, "cluster": cluster}}


def test_eight_gpus_with_rollout_tp_2_run_four_engines_each_on_its_own_gpus():
    spec = validate_manifest(manifest({"tensorParallel": 2}, {"gpusPerNode": 8}))["spec"]
    assert rollout_engines_per_pod(spec) == 4
    envs = [engine_env({pc.ROLLOUT_PORT: "18200"}, e, 4, 2, 8) for e in range(4)]
    assert [env["CUDA_VISIBLE_DEVICES"] for env in envs] == ["0,1", "2,3", "4,5", "6,7"]
    assert [env[pc.ROLLOUT_PORT] for env in envs] == ["18200", "18201", "18202", "18203"]
    assert [env[pc.ROLLOUT_ENGINE] for env in envs] == ["0", "1", "2", "3"]


def test_the_engines_split_the_gpus_the_container_was_given():
    env = engine_env({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}, 1, 2, 2, 4)
    assert env["CUDA_VISIBLE_DEVICES"] == "6,7"


def test_cpu_engines_share_the_pods_threads():
    envs = [engine_env({pc.CPU_THREADS: "4"}, e, 2, 1, 0) for e in range(2)]
    assert [(env[pc.CPU_THREADS], env["OMP_NUM_THREADS"]) for env in envs] == [("2", "2")] * 2
    assert "CUDA_VISIBLE_DEVICES" not in envs[0]


def test_one_engine_on_the_cpu_unless_asked_and_never_more_than_the_gpus_hold():
    assert rollout_engines_per_pod(validate_manifest(manifest({}, {"gpusPerNode": 0}))["spec"]) == 1
    assert rollout_engines_per_pod(validate_manifest(manifest({"enginesPerPod": 2}, {"gpusPerNode": 0}))["spec"]) == 2
    with pytest.raises(SpecError, match=r"spec\.rollout\.enginesPerPod: 3 engines x rollout.tensorParallel 2 need 6 GPUs"):
        validate_manifest(manifest({"enginesPerPod": 3, "tensorParallel": 2}, {"gpusPerNode": 4}))
