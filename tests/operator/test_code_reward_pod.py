"""A code job's checkpoint engines may create the reward sandbox's namespaces; nothing else
about the pods changes, and a math job's pods are as before."""
from __future__ import annotations

import kubernetes_validate

from seesaw.operator import build, constants as c
from seesaw.spec import validate_manifest

K8S_VERSION = "1.34.0"


def job(reward: str) -> dict:
    manifest = {"apiVersion": "seesaw.dev/v1alpha1", "kind": "RLJob",
                "metadata": {"name": "code", "namespace": "team-a", "uid": "0b7c2a4e-1f7e-4c39-9a55-0d3b1f1c2e11"},
                "spec": {"model": {"path": "qwen-7b", "pvc": "models"}, "cluster": {"nodes": 2, "gpusPerNode": 0},
                         "rollout": {"replicas": 1}, "prompts": {"source": "/models/data/code.jsonl"},
                         "reward": {"type": reward}}}
    resolved = validate_manifest(manifest)
    resolved["metadata"] = manifest["metadata"]
    return resolved


def pods(spec: dict) -> list[dict]:
    return [o for o in build.build_all(spec) if o["kind"] == "Pod"]


def containers(pod: dict) -> dict[str, dict]:
    return {ct["name"]: ct for ct in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]}


def test_a_code_job_s_checkpoint_engines_run_without_the_seccomp_and_apparmor_defaults():
    code, math = pods(job("code")), pods(job("math"))
    assert len(code) == 3  # two gang pods and a rollout replica: each checkpoint engine loads the task
    for with_sandbox, without in zip(code, math):
        engine = containers(with_sandbox)[c.CONTAINER_CHECKPOINT_ENGINE]
        # unprivileged user namespaces: no capability, no privilege escalation, no privileged mode
        assert engine["securityContext"] == {"allowPrivilegeEscalation": False, "seccompProfile": {"type": "Unconfined"},
                                             "appArmorProfile": {"type": "Unconfined"}}
        # the rest of the pod is the math job's
        engine_without = containers(without)[c.CONTAINER_CHECKPOINT_ENGINE]
        assert engine_without["securityContext"] == {"allowPrivilegeEscalation": False}
        for name, container in containers(with_sandbox).items():
            if name != c.CONTAINER_CHECKPOINT_ENGINE:
                assert container == containers(without)[name]
        assert with_sandbox["spec"]["securityContext"] == without["spec"]["securityContext"] == {"fsGroup": 10001}
        assert {k: v for k, v in engine.items() if k != "securityContext"} == \
            {k: v for k, v in engine_without.items() if k != "securityContext"}


def test_a_code_job_s_pods_validate_against_the_kubernetes_schemas():
    for pod in pods(job("code")):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
