"""Every object the builders can produce validates against the upstream Kubernetes schemas
(1.34, strict), and the pod carries what co-located RL needs."""
from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from seesaw.operator import build, constants as c
from seesaw.operator.render import render_yaml
from seesaw.spec import validate_manifest

K8S_VERSION = "1.34.0"
UID = "0b7c2a4e-1f7e-4c39-9a55-0d3b1f1c2e11"


def job(**spec) -> dict:
    manifest = {"apiVersion": "seesaw.dev/v1alpha1", "kind": "RLJob",
                "metadata": {"name": "math", "namespace": "team-a", "uid": UID},
                "spec": {"model": {"path": "qwen-7b", "pvc": "models"}, **spec}}
    resolved = validate_manifest(manifest)
    resolved["metadata"] = manifest["metadata"]
    return resolved


VARIANTS = {
    "cpu-single": dict(cluster={"nodes": 1, "gpusPerNode": 0}),
    "gpu-dra-4-nodes-volcano": dict(cluster={"nodes": 4, "gpusPerNode": 8, "gpuSharing": "dra", "gangScheduling": "volcano",
                                             "queue": "research", "priorityClassName": "high",
                                             "nodeSelector": {"nvidia.com/gpu.product": "H100"},
                                             "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
                                    rollout={"tensorParallel": 4}, trainer={"tensorParallel": 8, "pipelineParallel": 2},
                                    checkpoint={"pvc": "ckpt", "path": "/checkpoints", "everyIterations": 5}),
    "gpu-device-plugin-coscheduling": dict(cluster={"nodes": 2, "gpusPerNode": 4, "gpuSharing": "devicePlugin",
                                                    "gangScheduling": "coscheduling"}, rollout={"replicas": 2}),
    "image-model-scheduler-name": dict(model={"path": "/opt/model"}, cluster={"nodes": 1, "gpusPerNode": 1, "schedulerName": "kai"}),
    "hub-model-into-a-claim": dict(model={"hub": {"repo": "Qwen/Qwen2.5-0.5B-Instruct", "tokenSecret": "hf"}, "pvc": "models"}),
}
NO_UPSTREAM_SCHEMA = {"PodGroup"}  # Volcano's and scheduler-plugins' CRDs


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_validates_against_the_kubernetes_1_34_schemas(variant):
    objects = build.build_all(job(**VARIANTS[variant]))
    kinds = [o["kind"] for o in objects]
    spec = job(**VARIANTS[variant])["spec"]
    assert kinds.count("Pod") == spec["cluster"]["nodes"] + spec["rollout"]["replicas"]
    for obj in objects:
        if obj["kind"] in NO_UPSTREAM_SCHEMA:
            assert obj["spec"]["minMember"] == spec["cluster"]["nodes"], "the gang only: replicas come and go"
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_every_child_is_owned_by_the_rljob_as_its_controller():
    for obj in build.build_all(job(**VARIANTS["gpu-dra-4-nodes-volcano"])):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner == {"apiVersion": "seesaw.dev/v1alpha1", "kind": "RLJob", "name": "math", "uid": UID,
                         "controller": True, "blockOwnerDeletion": True}
        assert obj["metadata"]["namespace"] == "team-a"


def containers(pod):
    return {ct["name"]: ct for ct in pod["spec"]["initContainers"] + pod["spec"]["containers"]}


def test_the_pod_shares_gpus_ipc_and_shm_between_trainer_and_rollout():
    pod = build.build_pod(job(**VARIANTS["gpu-dra-4-nodes-volcano"]), 1)
    spec = pod["spec"]
    assert spec["shareProcessNamespace"] is True
    shm = next(v for v in spec["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    assert spec["resourceClaims"] == [{"name": "gpus", "resourceClaimTemplateName": "math-gpus"}]
    cts = containers(pod)
    assert cts["trainer"]["resources"]["claims"] == cts["rollout"]["resources"]["claims"] == [{"name": "gpus"}]
    assert "claims" not in cts["checkpoint-engine"]["resources"]
    for ct in cts.values():
        assert {"name": "shm", "mountPath": "/dev/shm"} in ct["volumeMounts"]
    # trainer and rollout are native sidecars: the pod ends when the checkpoint engine does.
    assert [ct["name"] for ct in spec["initContainers"]] == ["trainer", "rollout"]
    assert all(ct["restartPolicy"] == "Always" for ct in spec["initContainers"])
    assert spec["restartPolicy"] == "Never"
    assert cts["trainer"]["command"] == ["python", "-m", "seesaw.trainer.launch"]
    assert cts["rollout"]["command"] == ["python", "-m", "seesaw.rollout.launch"]
    assert cts["checkpoint-engine"]["command"] == ["python", "-m", "seesaw.checkpoint_engine.sidecar"]
    for name in ("trainer", "rollout"):
        assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(cts[name])


def test_pod_environment_names_the_job_its_index_and_the_rendezvous():
    pod = build.build_pod(job(cluster={"nodes": 3, "gpusPerNode": 0}), 2, attempt=1, resume_from="/checkpoints/latest.pt")
    env = {e["name"]: e for e in containers(pod)["checkpoint-engine"]["env"]}
    assert env["SEESAW_JOB_CONFIG"]["value"] == "/etc/seesaw/job.yaml"
    assert env["SEESAW_JOB_NAME"]["value"] == "math"
    assert env["SEESAW_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["SEESAW_POD_INDEX"]["value"] == "2"
    assert env["SEESAW_NUM_PODS"]["value"] == "3"
    assert env["SEESAW_RENDEZVOUS"]["value"] == "math-0.math.team-a.svc"
    assert env["SEESAW_RESUME_FROM"]["value"] == "/checkpoints/latest.pt"
    assert env["SEESAW_MODEL_DIR"]["value"] == "/models/qwen-7b"
    assert "SEESAW_REPORT_STATUS" not in env, "only pod 0 reports status"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["hostname"] == "math-2" and pod["spec"]["subdomain"] == "math"
    pod0 = build.build_pod(job(cluster={"nodes": 3, "gpusPerNode": 0}), 0)
    assert {e["name"]: e.get("value") for e in containers(pod0)["checkpoint-engine"]["env"]}["SEESAW_REPORT_STATUS"] == "true"
    assert pod0["spec"]["automountServiceAccountToken"] is True
    config = yaml.safe_load(build.build_config_map(job())["data"]["job.yaml"])
    assert validate_manifest(config)["spec"] == job()["spec"]


def test_a_hub_model_gets_its_token_from_the_secret_and_downloads_into_the_claim():
    pod = build.build_pod(job(model={"hub": {"repo": "org/m", "tokenSecret": "hf"}, "pvc": "models"}), 0)
    for container in ("trainer", "rollout", "checkpoint-engine"):
        env = {e["name"]: e for e in containers(pod)[container]["env"]}
        assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
        assert env["SEESAW_MODEL_CACHE"]["value"] == "/models" and "SEESAW_MODEL_DIR" not in env
        assert {m["mountPath"]: m.get("readOnly") for m in containers(pod)[container]["volumeMounts"]}["/models"] is False
    claim = {v["name"]: v for v in pod["spec"]["volumes"]}["models"]["persistentVolumeClaim"]
    assert claim == {"claimName": "models", "readOnly": False}
    # a path in a claim is only read; a public hub model without a claim goes to the run volume
    read_only = build.build_pod(job(), 0)
    assert {v["name"]: v for v in read_only["spec"]["volumes"]}["models"]["persistentVolumeClaim"]["readOnly"] is True
    public = {e["name"] for e in containers(build.build_pod(job(model={"hub": {"repo": "org/m"}}), 0))["trainer"]["env"]}
    assert not {"HF_TOKEN", "SEESAW_MODEL_CACHE", "SEESAW_MODEL_DIR"} & public


def test_device_plugin_mode_requests_gpus_once_and_points_rollout_at_them():
    pod = build.build_pod(job(**VARIANTS["gpu-device-plugin-coscheduling"]), 0)
    cts = containers(pod)
    assert cts["trainer"]["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert "nvidia.com/gpu" not in cts["rollout"]["resources"]["limits"]
    assert "nvidia.com/gpu" not in cts["checkpoint-engine"]["resources"]["limits"]
    assert "resourceClaims" not in pod["spec"]
    rollout_env = {e["name"]: e.get("value") for e in cts["rollout"]["env"]}
    assert rollout_env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert c.VISIBLE_DEVICES_FILE in cts["trainer"]["command"][-1]
    assert "CUDA_VISIBLE_DEVICES=$(cat " in cts["rollout"]["command"][-1]
    assert "python -m seesaw.rollout.launch" in cts["rollout"]["command"][-1]
    assert pod["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "math"
    assert pod["spec"]["schedulerName"] == "scheduler-plugins-scheduler"


def test_gang_scheduling_and_one_pod_per_node():
    objects = build.build_all(job(**VARIANTS["gpu-dra-4-nodes-volcano"]))
    (group,) = [o for o in objects if o["kind"] == "PodGroup"]
    assert group["apiVersion"] == "scheduling.volcano.sh/v1beta1"
    assert group["spec"] == {"minMember": 4, "queue": "research", "priorityClassName": "high"}
    pod = next(o for o in objects if o["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "math"
    assert pod["spec"]["schedulerName"] == "volcano"
    anti = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["topologyKey"] == "kubernetes.io/hostname"


def test_container_resources_split_the_node_and_cpu_has_no_limit():
    pod = build.build_pod(job(cluster={"nodes": 1, "gpusPerNode": 0, "cpusPerNode": "10", "memoryPerNode": "100Gi"}), 0)
    cts = containers(pod)
    assert cts["trainer"]["resources"]["requests"] == {"cpu": "4500m", "memory": "46080Mi"}
    assert cts["checkpoint-engine"]["resources"]["requests"]["cpu"] == "1000m"
    assert all("cpu" not in ct["resources"]["limits"] for ct in cts.values())


def test_a_bad_quantity_names_the_field():
    from seesaw.spec import SpecError

    with pytest.raises(SpecError, match=r"spec.cluster.memoryPerNode: expected a Kubernetes quantity"):
        build.build_pod(job(cluster={"nodes": 1, "gpusPerNode": 0, "memoryPerNode": "lots"}), 0)


def test_render_prints_what_the_builders_make_as_valid_yaml():
    manifest = copy.deepcopy(job(**VARIANTS["gpu-dra-4-nodes-volcano"]))
    del manifest["metadata"]["uid"]
    text = render_yaml(manifest, namespace="team-b")
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert [d["kind"] for d in docs] == ["ConfigMap", "Service", "ServiceAccount", "RoleBinding",
                                          "ResourceClaimTemplate", "PodGroup"] + ["Pod"] * 4
    for doc in docs:
        assert doc["metadata"]["namespace"] == "team-b"
        if doc["kind"] not in NO_UPSTREAM_SCHEMA:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_rollout_replica_pod_has_no_trainer_and_asks_for_its_own_gpus():
    spec = job(**VARIANTS["gpu-device-plugin-coscheduling"])
    pod = build.build_replica_pod(spec, 1)
    assert pod["metadata"]["name"] == "math-rollout-1"
    assert pod["metadata"]["labels"][c.LABEL_REPLICA] == "1"
    assert pod["metadata"]["labels"][c.LABEL_COMPONENT] == c.COMPONENT_ROLLOUT_REPLICA
    assert "scheduling.x-k8s.io/pod-group" not in pod["metadata"]["labels"], "not in the gang's PodGroup"
    parts = containers(pod)
    assert sorted(parts) == [c.CONTAINER_CHECKPOINT_ENGINE, c.CONTAINER_ROLLOUT]
    rollout = parts[c.CONTAINER_ROLLOUT]
    assert rollout["resources"]["limits"]["nvidia.com/gpu"] == 4, "no trainer to borrow the GPUs from"
    assert rollout["command"] == ["python", "-m", c.ROLLOUT_MODULE], "no waiting for a trainer's device list"
    env = {e["name"]: e.get("value") for e in parts[c.CONTAINER_CHECKPOINT_ENGINE]["env"]}
    assert env["SEESAW_ROLLOUT_REPLICA"] == "1" and env["SEESAW_COLOCATED"] == "0" and "SEESAW_POD_INDEX" not in env
    assert "checkpoints" not in {v["name"] for v in pod["spec"]["volumes"]}
    # the gang pods count the replicas they were made with
    gang_env = {e["name"]: e.get("value") for e in containers(build.build_pod(spec, 0))[c.CONTAINER_TRAINER]["env"]}
    assert gang_env["SEESAW_ROLLOUT_REPLICAS"] == "2"


def test_pod_zeros_checkpoint_engine_serves_metrics_and_gets_the_trackers_secret():
    spec = job(cluster={"nodes": 2, "gpusPerNode": 0}, rollout={"replicas": 1}, logging={"secretName": "trackers"})
    engine = containers(build.build_pod(spec, 0))[c.CONTAINER_CHECKPOINT_ENGINE]
    assert engine["ports"] == [{"name": c.METRICS_PORT_NAME, "containerPort": 9400, "protocol": "TCP"}]
    assert engine["envFrom"] == [{"secretRef": {"name": "trackers"}}]
    replica = containers(build.build_replica_pod(spec, 0))[c.CONTAINER_CHECKPOINT_ENGINE]
    assert "ports" not in replica and "envFrom" not in replica, "replicas conduct nothing: no metrics, no trackers"
    for name, container in containers(build.build_pod(spec, 1)).items():  # the credentials go to the trackers only
        assert "envFrom" not in container or name == c.CONTAINER_CHECKPOINT_ENGINE
    assert "envFrom" not in containers(build.build_pod(job(cluster={"nodes": 1, "gpusPerNode": 0}), 0))[c.CONTAINER_CHECKPOINT_ENGINE]


def test_kueue_labels_put_the_gang_in_one_pod_group_and_each_replica_alone():
    spec = job(cluster={"nodes": 3, "gpusPerNode": 0}, rollout={"replicas": 1})
    spec["metadata"] = dict(spec["metadata"], labels={c.KUEUE_QUEUE_LABEL: "team-a"})
    gang = build.build_pod(spec, 2)
    assert gang["metadata"]["labels"][c.KUEUE_QUEUE_LABEL] == "team-a"
    assert gang["metadata"]["labels"][c.KUEUE_GROUP_LABEL] == "math-gang-0"
    assert build.build_pod(spec, 2, attempt=1)["metadata"]["labels"][c.KUEUE_GROUP_LABEL] == "math-gang-1"
    assert gang["metadata"]["annotations"][c.KUEUE_GROUP_TOTAL_ANNOTATION] == "3"
    replica = build.build_replica_pod(spec, 0)
    assert replica["metadata"]["labels"][c.KUEUE_QUEUE_LABEL] == "team-a"
    assert c.KUEUE_GROUP_LABEL not in replica["metadata"]["labels"]
    assert c.KUEUE_QUEUE_LABEL not in build.build_pod(job(cluster={"nodes": 1, "gpusPerNode": 0}), 0)["metadata"]["labels"]


def test_the_kueue_example_in_the_operator_docs_is_a_valid_job_with_the_labels_kueue_reads():
    text = (Path(__file__).resolve().parents[2] / "docs" / "OPERATOR.md").read_text()
    section = text[text.index("### Kueue"):]
    block = section[section.index("```yaml") + len("```yaml"):]
    docs = list(yaml.safe_load_all(block[:block.index("```")]))
    (manifest,) = [d for d in docs if d["kind"] == "RLJob"]
    resolved = validate_manifest(manifest)
    resolved["metadata"] = dict(manifest["metadata"], uid=UID)
    pods = [o for o in build.build_all(resolved) if o["kind"] == "Pod"]
    assert len(pods) == 4
    gpus = sum(ct["resources"]["limits"].get("nvidia.com/gpu", 0) for pod in pods for ct in pod["spec"]["initContainers"])
    (queue,) = [d for d in docs if d["kind"] == "ClusterQueue"]
    quota = {r["name"]: r["nominalQuota"] for r in queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"]}
    assert gpus == quota["nvidia.com/gpu"], "the example's quota is what its pods ask for"
    assert all(pod["metadata"]["labels"][c.KUEUE_QUEUE_LABEL] == "team-a" for pod in pods)


def test_a_tensor_parallel_cpu_engine_gets_unbound_threads_and_a_gpu_one_does_not():
    def rollout_env(**spec):
        return {e["name"]: e.get("value") for e in containers(build.build_pod(job(**spec), 0))["rollout"]["env"]}

    assert rollout_env(cluster={"nodes": 1, "gpusPerNode": 0}, rollout={"tensorParallel": 2})["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in rollout_env(cluster={"nodes": 1, "gpusPerNode": 0})
    assert "VLLM_CPU_OMP_THREADS_BIND" not in rollout_env(cluster={"nodes": 1, "gpusPerNode": 2}, rollout={"tensorParallel": 2})
