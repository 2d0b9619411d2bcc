"""The decision alone (no API): restarts, backoff, suspend, deadlines, lost pods."""
from __future__ import annotations

import datetime as dt

from seesaw.operator import constants as c
from seesaw.operator.reconcile import decide

NOW = dt.datetime(2030, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def job(status=None, **spec):
    return {"apiVersion": "seesaw.dev/v1alpha1", "kind": "RLJob",
            "metadata": {"name": "j", "namespace": "n", "generation": 2, "uid": "u"},
            "spec": {"model": {"path": "/m"}, "cluster": {"nodes": 2, "gpusPerNode": 0}, **spec},
            "status": status or {}}


def pod(index, attempt=0, phase="Running", ready=True, deleting=False, **status):
    meta = {"name": f"j-{index}", "labels": {c.LABEL_POD_INDEX: str(index), c.LABEL_ATTEMPT: str(attempt)}}
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T11:59:59Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}], **status}}


def test_a_new_job_creates_every_pod_and_records_the_attempt():
    plan = decide(job(), [], NOW)
    assert plan.create_pods == [0, 1] and plan.ensure_children
    assert plan.status["attempt"] == 0 and plan.status["phase"] == c.PENDING
    assert plan.status["observedGeneration"] == 2 and plan.status["startTime"] == "2030-01-01T12:00:00Z"


def test_a_pod_that_vanished_from_a_created_gang_is_a_failure():
    running = decide(job(), [pod(0), pod(1)], NOW).status
    plan = decide(job(running), [pod(0)], NOW)
    assert plan.status["restarts"] == 1 and plan.delete_pods == ["j-0"]
    assert "disappeared" in plan.status["message"]


def test_restart_backoff_doubles_and_waits_before_recreating():
    status = {"restarts": 2, "lastRestartTime": "2030-01-01T11:59:50Z", "phase": c.PENDING}
    plan = decide(job(status, failurePolicy={"backoffSeconds": 10}), [], NOW)
    assert plan.create_pods == [] and 9 < plan.requeue_after <= 10  # 10 * 2**(2-1) = 20s, 10s gone
    later = decide(job(status, failurePolicy={"backoffSeconds": 10}), [], NOW + dt.timedelta(seconds=11))
    assert later.create_pods == [0, 1] and later.attempt == 2


def test_pods_of_an_earlier_attempt_are_removed_before_the_new_gang():
    plan = decide(job({"restarts": 1}), [pod(0, attempt=0), pod(1, attempt=0, deleting=True)], NOW)
    assert plan.delete_pods == ["j-0"] and plan.create_pods == []


def test_pods_still_terminating_after_a_resume_are_not_failures():
    status = {"phase": c.SUSPENDED, "restarts": 0, "conditions": [{"type": c.COND_SUSPENDED, "status": "True"}]}
    plan = decide(job(status, suspend=False), [pod(0, deleting=True)], NOW)
    assert plan.status["restarts"] == 0 and plan.create_pods == []
    assert plan.status["phase"] == c.PENDING


def test_suspend_deletes_every_pod_even_finished_ones():
    plan = decide(job({"attempt": 0}, suspend=True), [pod(0), pod(1, phase="Failed")], NOW)
    assert sorted(plan.delete_pods) == ["j-0", "j-1"] and "attempt" not in plan.status
    assert plan.status["phase"] == c.SUSPENDED


def test_a_configured_non_retryable_reason_fails_at_once():
    failing = pod(1, ready=False, phase="Pending", containerStatuses=[
        {"name": "trainer", "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret x not found"}}}])
    plan = decide(job({"attempt": 0}), [pod(0), failing], NOW)
    assert plan.status["phase"] == c.FAILED and plan.status["reason"] == c.REASON_NON_RETRYABLE
    assert "secret x not found" in plan.status["message"] and plan.delete_pods == ["j-0", "j-1"]


def test_a_checkpoint_engine_that_says_a_restart_would_fail_the_same_way_fails_the_job_at_once():
    failed = pod(0, ready=False, phase="Failed", containerStatuses=[
        {"name": c.CONTAINER_CHECKPOINT_ENGINE, "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}])
    plan = decide(job({"attempt": 0}), [failed, pod(1)], NOW)
    assert plan.status["phase"] == c.FAILED and plan.status["reason"] == c.REASON_NON_RETRYABLE
    assert "Unrecoverable" in plan.status["message"] and not plan.create_pods
    other = pod(0, ready=False, phase="Failed", containerStatuses=[
        {"name": c.CONTAINER_CHECKPOINT_ENGINE, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}])
    assert decide(job({"attempt": 0}), [other, pod(1)], NOW).status["restarts"] == 1  # any other exit: the gang restarts


def test_conditions_keep_their_transition_time_until_they_flip():
    first = decide(job(), [pod(0), pod(1)], NOW).status
    ready_at = next(x for x in first["conditions"] if x["type"] == c.COND_READY)["lastTransitionTime"]
    again = decide(job(first), [pod(0), pod(1)], NOW + dt.timedelta(minutes=5)).status
    assert next(x for x in again["conditions"] if x["type"] == c.COND_READY)["lastTransitionTime"] == ready_at
    assert [x["type"] for x in again["conditions"]] == list(c.CONDITION_TYPES)


def test_an_invalid_name_fails_with_the_field_named():
    bad = job()
    bad["metadata"]["name"] = "A" * 60
    plan = decide(bad, [], NOW)
    assert plan.status["reason"] == c.REASON_SPEC_INVALID and "metadata.name" in plan.status["message"]


CHECKPOINT = {"iteration": 3, "path": "/checkpoints/iteration-000003"}


def _restart(**spec):
    """Pod 1 fails after pod 0 reported a checkpoint; then the round that recreates the gang."""
    spec = {"failurePolicy": {"backoffSeconds": 0}, **spec}
    running = {**decide(job(**spec), [pod(0), pod(1)], NOW).status, "lastCheckpoint": CHECKPOINT}
    failed = decide(job(running, **spec), [pod(0), pod(1, phase="Failed")], NOW)
    recreate = decide(job(failed.status, **spec), [], NOW + dt.timedelta(seconds=1))
    return failed, recreate


def test_without_a_checkpoint_pvc_a_restart_starts_over_and_warns_the_checkpoint_was_lost():
    failed, recreate = _restart()
    assert failed.status["restarts"] == 1 and sorted(failed.delete_pods) == ["j-0", "j-1"]
    restarting = next(e for e in failed.events if e.reason == c.REASON_RESTARTING)
    assert "from the beginning" in restarting.message and "iteration 3" in restarting.message
    lost = [e for e in failed.events if e.reason == c.REASON_CHECKPOINT_LOST]
    assert [e.type for e in lost] == ["Warning"]
    assert "iteration 3" in lost[0].message and "emptyDir" in lost[0].message and "spec.checkpoint.pvc" in lost[0].message
    assert recreate.create_pods == [0, 1] and recreate.attempt == 1
    assert recreate.resume_from is None


def test_with_a_checkpoint_pvc_a_restart_resumes_from_the_last_checkpoint():
    failed, recreate = _restart(checkpoint={"pvc": "ckpt"})
    restarting = next(e for e in failed.events if e.reason == c.REASON_RESTARTING)
    assert "from the checkpoint of iteration 3" in restarting.message
    assert not [e for e in failed.events if e.reason == c.REASON_CHECKPOINT_LOST]
    assert recreate.create_pods == [0, 1] and recreate.resume_from == CHECKPOINT["path"]


def test_rollout_replicas_are_refused_in_a_cluster_until_the_operator_builds_their_pods():
    plan = decide(job(rollout={"replicas": 2}), [], NOW)
    assert plan.status["reason"] == c.REASON_SPEC_INVALID
    assert "spec.rollout.replicas: rollout replicas run under `seesaw run` so far" in plan.status["message"]
    assert not plan.create_pods and not plan.ensure_children, "nothing is created for a job that cannot run"
