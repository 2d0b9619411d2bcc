"""The operator end to end: `kopf run` against RLJobs on the real Kubernetes API server and
pods, events and services on the fake one (or against a real cluster)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

from fakes.operator_env import condition, env_of, reasons, reporter_for, rljob, wait_reasons
from seesaw import pod_contract
from seesaw.operator import constants as c

RESULTS = Path(__file__).resolve().parents[2] / "runs" / "operator"


def test_apply_creates_config_service_rbac_and_one_pod_per_node_then_running(env, ns):
    cluster = env.cluster
    spec = {"cluster": {"nodes": 3, "gpusPerNode": 0, "cpusPerNode": "2", "memoryPerNode": "4Gi"}}
    # Time from apply to the whole gang created, once the operator is up (a warm-up job).
    cluster.apply(ns, rljob("warmup", **spec))
    cluster.wait("warm-up pods", lambda: len(cluster.pods(ns, "warmup")) == 3)
    samples = []
    for i in range(5):
        started = time.monotonic()
        cluster.apply(ns, rljob(f"gang{i}", **spec))
        cluster.wait("3 pods", lambda: len(cluster.pods(ns, f"gang{i}")) == 3, every=0.01)
        samples.append(time.monotonic() - started)
    started = time.monotonic()
    cluster.apply(ns, rljob("gang", **spec))
    job = cluster.wait_phase(ns, "gang", c.RUNNING)
    running_seconds = time.monotonic() - started
    samples.sort()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "apply_to_pods.json").write_text(json.dumps(
        {"pods": 3, "runs": len(samples), "apply_to_all_pods_created_seconds_median": round(samples[2], 3),
         "apply_to_all_pods_created_seconds_max": round(samples[-1], 3),
         "apply_to_running_seconds": round(running_seconds, 3), "api": "real+fake" if env.fake else "cluster"}))
    print(f"apply -> 3 pods created: median {samples[2]:.3f}s, max {samples[-1]:.3f}s; -> Running {running_seconds:.3f}s")

    uid = job["metadata"]["uid"]
    if env.real:  # the RLJob and its status are the real server's; the fake does not serve RLJobs
        status, stored = env.real.call("GET", f"{cluster.jobs_path(ns)}/gang")
        assert status == 200 and stored["metadata"]["uid"] == uid and stored["metadata"]["managedFields"]
        assert stored["status"]["phase"] == c.RUNNING
        assert env.fake.call(lambda: ("seesaw.dev", "rljobs") not in env.fake.store.resources)
    children = [
        *cluster.objects(f"/api/v1/namespaces/{ns}/configmaps"),
        *cluster.objects(f"/api/v1/namespaces/{ns}/services"),
        *cluster.objects(f"/api/v1/namespaces/{ns}/serviceaccounts"),
        *cluster.objects(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
        *cluster.pods(ns, "gang"),
    ]
    ours = [o for o in children if any(r["uid"] == uid for r in o["metadata"].get("ownerReferences", []))]
    assert sorted(f"{o['kind']}/{o['metadata']['name']}" for o in ours) == sorted([
        "ConfigMap/gang-config", "Service/gang", "ServiceAccount/gang-job", "RoleBinding/gang-status-reporter",
        "Pod/gang-0", "Pod/gang-1", "Pod/gang-2"])
    assert all(r["controller"] for o in ours for r in o["metadata"]["ownerReferences"])
    status = job["status"]
    assert status["observedGeneration"] == job["metadata"]["generation"]
    assert status["pods"] == {"desired": 3, "pending": 0, "running": 3, "ready": 3, "succeeded": 0, "failed": 0}
    assert condition(job, c.COND_READY)["status"] == "True"
    assert {cond["type"] for cond in status["conditions"]} == set(c.CONDITION_TYPES)
    assert status["startTime"]
    assert [r for r in wait_reasons(cluster, ns, "gang", c.REASON_GANG_READY) if r != c.REASON_PHASE_CHANGED] == [
        c.REASON_PODS_CREATED, c.REASON_GANG_READY]


def test_progress_from_pod0_shows_in_status_and_pod0_exit_completes_the_job(env, ns, kubelet):
    cluster = env.cluster
    cluster.apply(ns, rljob("prog"))
    cluster.wait_phase(ns, "prog", c.RUNNING)
    reporter = reporter_for(env, ns, "prog")
    reporter.progress(1, "rollout", {})
    reporter.progress(1, "iteration", {"mean_reward": 0.25, "accuracy": 0.5, "loss": 0.1, "sync_bytes": 1024,
                                       "rollout_trainer_logprob_diff": float("nan"), "eval_accuracy": None})
    reporter.progress(1, "checkpoint", {"path": "/checkpoints/latest.pt"})
    job = cluster.get(ns, "prog")
    status = job["status"]
    assert status["iteration"] == 1
    assert status["metrics"] == {"meanReward": 0.25, "accuracy": 0.5, "loss": 0.1, "syncBytes": 1024}
    assert status["lastCheckpoint"]["iteration"] == 1 and status["lastCheckpoint"]["path"] == "/checkpoints/latest.pt"
    # The reporter's merge patches leave the operator's conditions alone.
    assert condition(job, c.COND_READY)["status"] == "True"
    assert c.REASON_CHECKPOINT_WRITTEN in reasons(cluster, ns, "prog")

    kubelet.succeed(ns, "prog-0")
    job = cluster.wait_phase(ns, "prog", c.SUCCEEDED)
    assert condition(job, c.COND_COMPLETE)["status"] == "True"
    assert condition(job, c.COND_READY)["status"] == "False"
    assert job["status"]["completionTime"]
    # What still ran is removed; pod 0 stays for its logs.
    cluster.wait("pod 1 removed", lambda: [p["metadata"]["name"] for p in cluster.pods(ns, "prog")] == ["prog-0"])
    wait_reasons(cluster, ns, "prog", c.REASON_SUCCEEDED)


def pod_envs(pod: dict) -> list[dict]:
    """The environment of each of the pod's containers (checkpoint engine, trainer, rollout)."""
    return [env_of(x) for x in pod["spec"]["containers"] + pod["spec"]["initContainers"]]


def created_pods(env, ns: str) -> list[tuple[str, str]]:
    """(name, attempt label) of every pod ever created in `ns`, in order (the fake's watch history)."""
    return env.fake.call(lambda: [(e.obj["metadata"]["name"], e.obj["metadata"]["labels"][c.LABEL_ATTEMPT])
                                  for e in env.fake.store.history if e.resource == ("", "pods") and e.type == "ADDED"
                                  and e.obj["metadata"]["namespace"] == ns])


def test_a_two_pod_gang_restarts_whole_once_from_the_pvc_checkpoint_then_fails_past_max_restarts(env, ns, kubelet):
    cluster = env.cluster
    cluster.apply(ns, rljob("pair", cluster={"nodes": 2, "gpusPerNode": 0, "cpusPerNode": "2", "memoryPerNode": "4Gi"},
                            checkpoint={"pvc": "ckpt", "everyIterations": 1},
                            failurePolicy={"maxRestarts": 1, "backoffSeconds": 0}))
    cluster.wait_phase(ns, "pair", c.RUNNING)
    pods = cluster.pods(ns, "pair")
    assert [p["metadata"]["name"] for p in pods] == ["pair-0", "pair-1"]
    # Rendezvous: every container knows its pod's place and finds pod 0 through the headless Service.
    for index, pod in enumerate(pods):
        assert pod["spec"]["hostname"] == f"pair-{index}" and pod["spec"]["subdomain"] == "pair"
        for values in pod_envs(pod):
            assert values[pod_contract.POD_INDEX] == str(index) and values[pod_contract.NUM_PODS] == "2"
            assert values[pod_contract.RENDEZVOUS] == f"pair-0.pair.{ns}.svc"
            assert values[pod_contract.GANG_PORT] == str(pod_contract.DEFAULT_GANG_PORT)
            assert values[pod_contract.TRAINER_DIST_PORT] == str(pod_contract.DEFAULT_TRAINER_DIST_PORT)
            assert pod_contract.RESUME_FROM not in values
    (service,) = [s for s in cluster.objects(f"/api/v1/namespaces/{ns}/services") if s["metadata"]["name"] == "pair"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert {pod_contract.DEFAULT_GANG_PORT, pod_contract.DEFAULT_TRAINER_DIST_PORT} <= {
        port["port"] for port in service["spec"]["ports"]}
    checkpoint = "/checkpoints/iteration-000003"
    reporter_for(env, ns, "pair").progress(3, "checkpoint", {"path": checkpoint})
    first = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}

    # One pod fails: the whole gang goes and comes back once, resuming from the checkpoint.
    kubelet.fail(ns, "pair-1", exit_code=1, message="trainer lost its NCCL peer")
    job = cluster.wait("restart counted", lambda: (j := cluster.get(ns, "pair"))["status"].get("restarts") == 1 and j)
    restarting = condition(job, c.COND_RESTARTING)
    assert restarting["status"] == "True" and restarting["reason"] == c.REASON_POD_FAILED
    assert "pair-1" in restarting["message"] and "from the checkpoint of iteration 3" in restarting["message"]
    job = cluster.wait_phase(ns, "pair", c.RUNNING)
    pods = cluster.pods(ns, "pair")
    assert [p["metadata"]["name"] for p in pods] == ["pair-0", "pair-1"]
    assert all(p["metadata"]["uid"] != first[p["metadata"]["name"]] for p in pods), "both pods are new"
    assert all(p["metadata"]["labels"][c.LABEL_ATTEMPT] == "1" for p in pods)
    for pod in pods:
        for values in pod_envs(pod):
            assert values[pod_contract.RESUME_FROM] == checkpoint and values[pod_contract.RESTART_ATTEMPT] == "1"
    assert created_pods(env, ns) == [("pair-0", "0"), ("pair-1", "0"), ("pair-0", "1"), ("pair-1", "1")]
    assert job["status"]["restarts"] == 1 and job["status"]["lastRestartTime"]
    assert condition(job, c.COND_RESTARTING)["status"] == "False"
    assert wait_reasons(cluster, ns, "pair", c.REASON_RESTARTING).count(c.REASON_RESTARTING) == 1
    assert c.REASON_CHECKPOINT_LOST not in reasons(cluster, ns, "pair")

    # A second failure with maxRestarts 1 fails the job: no third gang.
    kubelet.evict(ns, "pair-1")
    job = cluster.wait_phase(ns, "pair", c.FAILED)
    failed = condition(job, c.COND_FAILED)
    assert failed["status"] == "True" and failed["reason"] == c.REASON_RESTART_LIMIT
    assert "pair-1" in failed["message"] and "Evicted" in failed["message"] and "maxRestarts is 1" in failed["message"]
    assert job["status"]["restarts"] == 1 and job["status"]["reason"] == c.REASON_RESTART_LIMIT
    cluster.wait("no live pod", lambda: not cluster.live_pods(ns, "pair"))
    assert len(created_pods(env, ns)) == 4, "no pod of a third gang"
    assert wait_reasons(cluster, ns, "pair", c.REASON_RESTART_LIMIT).count(c.REASON_RESTARTING) == 1


def test_a_non_retryable_reason_fails_at_once_without_restarts(env, ns, kubelet):
    cluster = env.cluster
    kubelet.bad_images.add("registry.example/missing:1")
    cluster.apply(ns, rljob("badimage", images={"trainer": "registry.example/missing:1"}))
    job = cluster.wait_phase(ns, "badimage", c.FAILED)
    failed = condition(job, c.COND_FAILED)
    assert failed["reason"] == c.REASON_NON_RETRYABLE
    assert "ErrImagePull" in failed["message"] and "registry.example/missing:1" in failed["message"]
    assert job["status"]["restarts"] == 0


def test_suspend_removes_the_pods_resume_recreates_them_from_the_start_without_a_checkpoint_pvc(env, ns):
    cluster = env.cluster
    cluster.apply(ns, rljob("pause"))  # no spec.checkpoint.pvc: the checkpoints are on the pods' emptyDir
    cluster.wait_phase(ns, "pause", c.RUNNING)
    reporter_for(env, ns, "pause").progress(2, "checkpoint", {"path": "/checkpoints/iteration-000002"})
    cluster.patch(ns, "pause", {"spec": {"suspend": True}})
    job = cluster.wait_phase(ns, "pause", c.SUSPENDED)
    cluster.wait("pods gone", lambda: not cluster.pods(ns, "pause"))
    assert condition(job, c.COND_SUSPENDED)["status"] == "True"
    assert job["status"]["lastCheckpoint"]["iteration"] == 2
    assert cluster.objects(f"/api/v1/namespaces/{ns}/configmaps"), "the config stays"

    cluster.patch(ns, "pause", {"spec": {"suspend": False}})
    job = cluster.wait_phase(ns, "pause", c.RUNNING)
    assert condition(job, c.COND_SUSPENDED)["status"] == "False"
    assert job["status"]["restarts"] == 0, "a resume is not a failure"
    pods = cluster.pods(ns, "pause")
    assert len(pods) == 2
    # The emptyDir went with the suspended pods: nothing to resume from, and the user is told why.
    assert all(pod_contract.RESUME_FROM not in values for pod in pods for values in pod_envs(pod))
    resumed = condition(job, c.COND_SUSPENDED)["message"]
    assert "iteration 2" in resumed and "emptyDir" in resumed and "spec.checkpoint.pvc" in resumed
    wait_reasons(cluster, ns, "pause", c.REASON_SUSPENDED, c.REASON_RESUMED)


def test_deleting_the_rljob_deletes_everything_it_owns(env, ns):
    cluster = env.cluster
    cluster.apply(ns, rljob("gone"))
    cluster.wait_phase(ns, "gone", c.RUNNING)
    cluster.delete(ns, "gone")
    cluster.wait("RLJob gone", lambda: cluster.get(ns, "gone") is None)
    cluster.wait("pods gone", lambda: not cluster.pods(ns, "gone"))
    cluster.wait("config gone", lambda: not cluster.objects(f"/api/v1/namespaces/{ns}/configmaps"))
    assert not [s for s in cluster.objects(f"/api/v1/namespaces/{ns}/services") if s["metadata"]["name"] == "gone"]
    if env.fake:  # the owner references did it (garbage collection), not the operator
        deletes = env.fake.call(lambda: [x for x in env.fake.store.calls if x.verb == "delete" and x.namespace == ns])
        assert not [x for x in deletes if x.who == "operator"]


def test_a_schema_error_is_refused_by_the_api_server_naming_the_field(env, ns):
    with pytest.raises(ApiException) as refused:
        env.cluster.apply(ns, rljob("badschema", rollout={"temperature": -1}))
    assert refused.value.status == 422
    assert "rollout.temperature" in refused.value.body


def test_a_cross_field_error_is_refused_by_the_api_server_naming_the_field(env, ns):
    """The CRD's CEL rule; a job that slipped past it (a CRD installed before the rule) fails
    with the same message: test_reconcile's spec-invalid cases."""
    job = rljob("badtp", cluster={"nodes": 1, "gpusPerNode": 8}, rollout={"tensorParallel": 3})
    with pytest.raises(ApiException) as refused:
        env.cluster.apply(ns, job)
    assert refused.value.status == 422
    assert "spec.rollout.tensorParallel" in refused.value.body and "tensorParallel must divide" in refused.value.body


def test_changing_an_immutable_field_is_refused_naming_it(env, ns):
    cluster = env.cluster
    cluster.apply(ns, rljob("frozen"))
    cluster.wait_phase(ns, "frozen", c.RUNNING)
    with pytest.raises(ApiException) as refused:
        cluster.patch(ns, "frozen", {"spec": {"rollout": {"temperature": 0.5}}})
    assert refused.value.status == 422
    assert "spec.rollout is immutable" in refused.value.body
    # What may change, changes.
    cluster.patch(ns, "frozen", {"spec": {"failurePolicy": {"maxRestarts": 5}}})


def test_active_deadline_fails_the_job(env, ns):
    cluster = env.cluster
    cluster.apply(ns, rljob("deadline", activeDeadlineSeconds=2))
    job = cluster.wait_phase(ns, "deadline", c.FAILED, timeout=15)
    assert condition(job, c.COND_FAILED)["reason"] == c.REASON_DEADLINE
    assert "activeDeadlineSeconds (2s)" in condition(job, c.COND_FAILED)["message"]
    cluster.wait("no live pod", lambda: not cluster.live_pods(ns, "deadline"))


def test_a_finished_job_is_deleted_after_its_ttl(env, ns, kubelet):
    cluster = env.cluster
    cluster.apply(ns, rljob("ttl", ttlSecondsAfterFinished=1))
    cluster.wait_phase(ns, "ttl", c.RUNNING)
    kubelet.succeed(ns, "ttl-0")
    cluster.wait("RLJob deleted after its TTL", lambda: cluster.get(ns, "ttl") is None, timeout=15)


def test_a_job_managed_by_another_controller_is_left_alone(env, ns):
    cluster = env.cluster
    cluster.apply(ns, rljob("foreign", managedBy="kueue.x-k8s.io/multikueue"))
    time.sleep(1.5)
    job = cluster.get(ns, "foreign")
    assert not job.get("status") and not cluster.pods(ns, "foreign")


def test_unschedulable_pods_say_why_in_the_status(env, ns, kubelet):
    cluster = env.cluster
    kubelet.unschedulable = True
    try:
        cluster.apply(ns, rljob("nofit"))
        job = cluster.wait("the reason in the message", lambda: "Insufficient nvidia.com/gpu" in
                           ((j := cluster.get(ns, "nofit")).get("status") or {}).get("message", "") and j)
        assert job["status"]["phase"] == c.PENDING
    finally:
        kubelet.unschedulable = False


def test_kubectl_get_shows_phase_iteration_reward_and_age(env, ns):
    cluster = env.cluster
    cluster.apply(ns, rljob("table"))
    cluster.wait_phase(ns, "table", c.RUNNING)
    reporter_for(env, ns, "table").progress(7, "iteration", {"mean_reward": 0.625})
    # What `kubectl get rlj` asks the API server for.
    table = cluster.api.call_api("GET", f"{cluster.api.configuration.host}{cluster.jobs_path(ns)}", header_params={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    table.read()
    body = json.loads(table.data)
    if body.get("kind") != "Table":
        pytest.fail(f"no server-side table: {body.get('kind')}")
    names = [col["name"] for col in body["columnDefinitions"]]
    assert names == ["Name", "Phase", "Iteration", "Pod-Phase", "Reward", "Restarts", "Replicas", "Replicas-Ready", "Age"]
    (row,) = body["rows"]
    assert row["cells"][:8] == ["table", "Running", 7, None, 0.625, 0, 0, 0]
