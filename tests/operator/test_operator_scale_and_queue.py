"""Rollout replicas through the scale subresource, and Kueue's plain-pod-group contract: the
operator, unmodified, against the fake API server (or a real cluster)."""
from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException

from fakes.operator_env import env_of, reasons, reporter_for, rljob, wait_reasons
from seesaw import pod_contract
from seesaw.operator import constants as c


def scale_path(cluster, ns: str, name: str) -> str:
    return f"{cluster.jobs_path(ns)}/{name}/scale"


def kubectl_scale(cluster, ns: str, name: str, replicas: int) -> dict:
    """What `kubectl scale rlj/NAME --replicas=N` sends: a merge patch of the Scale."""
    return cluster.request("PATCH", scale_path(cluster, ns, name), {"spec": {"replicas": replicas}},
                           "application/merge-patch+json")


def by_role(cluster, ns: str, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(gang pods, rollout replica pods) that are alive: name -> uid."""
    gang, replicas = {}, {}
    for pod in cluster.live_pods(ns, name):
        role = replicas if c.LABEL_REPLICA in pod["metadata"]["labels"] else gang
        role[pod["metadata"]["name"]] = pod["metadata"]["uid"]
    return gang, replicas


def ready_replicas(cluster, ns: str, name: str, count: int):
    def check():
        job = cluster.get(ns, name)
        rollout = (job.get("status") or {}).get("rollout") or {}
        return job if rollout.get("readyReplicas") == count and rollout.get("replicas") == count else None
    return cluster.wait(f"{count} ready rollout replica(s)", check)


def test_kubectl_scale_adds_and_removes_rollout_pods_without_touching_the_gang(env, ns):
    cluster = env.cluster
    cluster.apply(ns, rljob("elastic", rollout={"replicas": 1}))
    cluster.wait_phase(ns, "elastic", c.RUNNING)
    ready_replicas(cluster, ns, "elastic", 1)
    gang, replicas = by_role(cluster, ns, "elastic")
    assert sorted(gang) == ["elastic-0", "elastic-1"] and list(replicas) == ["elastic-rollout-0"]
    (replica,) = [p for p in cluster.pods(ns, "elastic") if p["metadata"]["name"] == "elastic-rollout-0"]
    assert [x["name"] for x in replica["spec"]["initContainers"]] == [c.CONTAINER_ROLLOUT], "no trainer"
    engine_env = env_of(replica["spec"]["containers"][0])
    assert engine_env[pod_contract.ROLLOUT_REPLICA] == "0" and engine_env[pod_contract.RENDEZVOUS] == f"elastic-0.elastic.{ns}.svc"

    scale = cluster.request("GET", scale_path(cluster, ns, "elastic"))
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1 and scale["status"]["replicas"] == 1
    assert scale["status"]["selector"] == "seesaw.dev/job=elastic,app.kubernetes.io/component=rollout-replica"

    kubectl_scale(cluster, ns, "elastic", 3)
    job = ready_replicas(cluster, ns, "elastic", 3)
    now_gang, replicas = by_role(cluster, ns, "elastic")
    assert sorted(replicas) == ["elastic-rollout-0", "elastic-rollout-1", "elastic-rollout-2"]
    assert now_gang == gang, "the gang's pods are the same pods"
    assert job["status"]["restarts"] == 0 and job["status"]["phase"] == c.RUNNING
    assert cluster.request("GET", scale_path(cluster, ns, "elastic"))["status"]["replicas"] == 3
    # the pods made after the scale carry the count of now (pod 0's conductor waits for that many after a restart)
    (newest,) = [p for p in cluster.pods(ns, "elastic") if p["metadata"]["name"] == "elastic-rollout-2"]
    assert env_of(newest["spec"]["containers"][0])[pod_contract.ROLLOUT_REPLICAS] == "3"

    kubectl_scale(cluster, ns, "elastic", 0)
    job = ready_replicas(cluster, ns, "elastic", 0)
    cluster.wait("replica pods gone", lambda: not [p for p in cluster.pods(ns, "elastic")
                                                   if c.LABEL_REPLICA in p["metadata"]["labels"]])
    assert by_role(cluster, ns, "elastic")[0] == gang and job["status"]["restarts"] == 0
    def scaled() -> list[str] | None:
        messages = [e["message"] for e in cluster.events(ns, "elastic") if e["reason"] == c.REASON_ROLLOUT_SCALED]
        return messages if "rollout replicas: 3 -> 0" in messages else None
    assert "rollout replicas: 1 -> 3" in cluster.wait("the scale-down event", scaled)

    # the scale subresource moves replicas only: the rest of spec.rollout stays as it was
    with pytest.raises(ApiException) as refused:
        cluster.patch(ns, "elastic", {"spec": {"rollout": {"temperature": 0.5}}})
    assert refused.value.status == 422 and "spec.rollout is immutable except spec.rollout.replicas" in refused.value.body
    with pytest.raises(ApiException) as negative:
        kubectl_scale(cluster, ns, "elastic", -1)
    assert negative.value.status == 422


def test_a_lost_rollout_pod_is_replaced_and_the_gang_goes_on(env, ns, kubelet):
    cluster = env.cluster
    cluster.apply(ns, rljob("keep", rollout={"replicas": 2}))
    cluster.wait_phase(ns, "keep", c.RUNNING)
    ready_replicas(cluster, ns, "keep", 2)
    gang, replicas = by_role(cluster, ns, "keep")

    cluster.request("DELETE", f"/api/v1/namespaces/{ns}/pods/keep-rollout-1")  # deleted by hand, or preempted
    cluster.wait("a new keep-rollout-1", lambda: by_role(cluster, ns, "keep")[1].get("keep-rollout-1")
                 not in (None, replicas["keep-rollout-1"]))
    kubelet.fail(ns, "keep-rollout-0", exit_code=137, reason="OOMKilled")
    cluster.wait("a new keep-rollout-0", lambda: by_role(cluster, ns, "keep")[1].get("keep-rollout-0")
                 not in (None, replicas["keep-rollout-0"]))
    job = ready_replicas(cluster, ns, "keep", 2)
    assert by_role(cluster, ns, "keep")[0] == gang and job["status"]["restarts"] == 0
    assert job["status"]["phase"] == c.RUNNING
    wait_reasons(cluster, ns, "keep", c.REASON_ROLLOUT_REPLICA_FAILED, c.REASON_ROLLOUT_REPLICA_REPLACED)
    events = {e["reason"]: e for e in cluster.events(ns, "keep")}
    assert "OOMKilled" in events[c.REASON_ROLLOUT_REPLICA_FAILED]["message"]
    assert events[c.REASON_ROLLOUT_REPLICA_FAILED]["type"] == "Warning"
    assert c.REASON_ROLLOUT_REPLICA_REPLACED in events and c.REASON_RESTARTING not in events


def preempt(cluster, ns: str, pod: str) -> None:
    """What Kueue does to the pods of a workload it preempts: mark them, then delete them."""
    current = cluster.request("GET", f"/api/v1/namespaces/{ns}/pods/{pod}")
    conditions = (current.get("status") or {}).get("conditions") or []
    conditions.append({"type": c.KUEUE_TERMINATION_CONDITION, "status": "True", "reason": "WorkloadEvicted",
                       "message": "Preempted to accommodate a workload (UID: x) due to prioritization in the ClusterQueue"})
    cluster.request("PATCH", f"/api/v1/namespaces/{ns}/pods/{pod}/status", {"status": {"conditions": conditions}},
                    "application/merge-patch+json")
    cluster.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{pod}")


def test_a_queued_job_carries_kueue_labels_and_a_preempted_gang_resumes_from_its_checkpoint(env, ns):
    cluster = env.cluster
    job = rljob("queued", rollout={"replicas": 1}, checkpoint={"pvc": "ckpt", "everyIterations": 1},
                failurePolicy={"maxRestarts": 0, "backoffSeconds": 0})
    job["metadata"]["labels"] = {c.KUEUE_QUEUE_LABEL: "team-a", c.KUEUE_PRIORITY_LABEL: "research"}
    cluster.apply(ns, job)
    cluster.wait_phase(ns, "queued", c.RUNNING)
    for pod in cluster.pods(ns, "queued"):
        labels, annotations = pod["metadata"]["labels"], pod["metadata"].get("annotations") or {}
        assert labels[c.KUEUE_QUEUE_LABEL] == "team-a" and labels[c.KUEUE_PRIORITY_LABEL] == "research"
        if c.LABEL_REPLICA in labels:  # a replica is a workload of its own: queued and preempted alone
            assert c.KUEUE_GROUP_LABEL not in labels and c.KUEUE_GROUP_TOTAL_ANNOTATION not in annotations
        else:  # the gang is one pod group, admitted all or nothing
            assert labels[c.KUEUE_GROUP_LABEL] == "queued-gang-0" and annotations[c.KUEUE_GROUP_TOTAL_ANNOTATION] == "2"
    checkpoint = "/checkpoints/iteration-000004"
    reporter_for(env, ns, "queued").progress(4, "checkpoint", {"path": checkpoint})
    gang, replicas = by_role(cluster, ns, "queued")

    for pod in sorted(gang):
        preempt(cluster, ns, pod)
    job = cluster.wait("the gang preempted once", lambda: ((j := cluster.get(ns, "queued"))["status"].get("preemptions") == 1 and j))
    job = cluster.wait_phase(ns, "queued", c.RUNNING)
    new_gang, new_replicas = by_role(cluster, ns, "queued")
    assert sorted(new_gang) == sorted(gang) and not set(new_gang.values()) & set(gang.values()), "a new gang"
    assert new_replicas == replicas, "the rollout replica rode it out"
    for pod in cluster.pods(ns, "queued"):
        if pod["metadata"]["name"] in new_gang:
            assert pod["metadata"]["labels"][c.LABEL_ATTEMPT] == "1"
            assert pod["metadata"]["labels"][c.KUEUE_GROUP_LABEL] == "queued-gang-1"  # a new group: a new Workload
            for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
                assert env_of(container)[pod_contract.RESUME_FROM] == checkpoint
    # maxRestarts is 0: a preemption is not a failure
    assert job["status"]["restarts"] == 0 and job["status"]["phase"] == c.RUNNING
    if env.fake:  # the preempted gang's pods were told to Kueue: finish their Workload, no replacements
        marked = env.fake.call(lambda: {e.obj["metadata"]["uid"] for e in env.fake.store.history
                                        if e.resource == ("", "pods") and (e.obj["metadata"].get("annotations") or {})
                                        .get(c.KUEUE_RETRIABLE_ANNOTATION) == "false"})
        assert set(gang.values()) <= marked
    wait_reasons(cluster, ns, "queued", c.REASON_PREEMPTED)
    (event,) = [e for e in cluster.events(ns, "queued") if e["reason"] == c.REASON_PREEMPTED]
    assert "from the checkpoint of iteration 4" in event["message"] and "not counted as a restart" in event["message"]
    assert c.REASON_RESTARTING not in reasons(cluster, ns, "queued")


def test_a_failed_queued_job_tells_kueue_not_to_wait_for_replacements(env, ns, kubelet):
    cluster = env.cluster
    job = rljob("gives-up", failurePolicy={"maxRestarts": 0, "backoffSeconds": 0})
    job["metadata"]["labels"] = {c.KUEUE_QUEUE_LABEL: "team-a"}
    cluster.apply(ns, job)
    cluster.wait_phase(ns, "gives-up", c.RUNNING)
    kubelet.fail(ns, "gives-up-1", exit_code=1)
    cluster.wait_phase(ns, "gives-up", c.FAILED)
    marked = [p["metadata"]["name"] for p in cluster.pods(ns, "gives-up")
              if (p["metadata"].get("annotations") or {}).get(c.KUEUE_RETRIABLE_ANNOTATION) == "false"]
    assert "gives-up-1" in marked

