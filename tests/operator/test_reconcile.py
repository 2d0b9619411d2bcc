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


def replica(index, phase="Running", ready=True, deleting=False, **status):
    meta = {"name": f"j-rollout-{index}", "labels": {c.LABEL_REPLICA: str(index)}}
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T11:59:59Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}], **status}}


def _running(replicas, **spec):
    """The status of a job whose gang and `replicas` rollout replicas run."""
    spec = {"rollout": {"replicas": replicas}, **spec}
    first = decide(job(**spec), [], NOW).status
    return decide(job(first, **spec), [pod(0), pod(1)] + [replica(r) for r in range(replicas)], NOW).status


def test_a_new_job_creates_its_rollout_replicas_with_the_gang():
    plan = decide(job(rollout={"replicas": 2}), [], NOW)
    assert plan.create_pods == [0, 1] and plan.create_replicas == [0, 1] and plan.ensure_children
    assert plan.status["rollout"] == {"desiredReplicas": 2, "replicas": 0, "readyReplicas": 0,
                                      "selector": "seesaw.dev/job=j,app.kubernetes.io/component=rollout-replica"}


def test_scaling_down_deletes_the_highest_replicas_and_leaves_the_gang_alone():
    status = _running(3)
    assert status["rollout"]["readyReplicas"] == 3 and status["phase"] == c.RUNNING
    pods = [pod(0), pod(1)] + [replica(r) for r in range(3)]
    plan = decide(job(status, rollout={"replicas": 1}), pods, NOW)
    assert plan.delete_pods == ["j-rollout-1", "j-rollout-2"] and not plan.create_pods and not plan.create_replicas
    assert plan.status["restarts"] == 0 and plan.status["phase"] == c.RUNNING
    scaled = [e.message for e in plan.events if e.reason == c.REASON_ROLLOUT_SCALED]
    assert scaled[0] == "rollout replicas: 3 -> 1" and len(scaled) == 3
    assert plan.status["rollout"]["desiredReplicas"] == 1


def test_scaling_up_creates_the_new_replicas_only():
    status = _running(1)
    plan = decide(job(status, rollout={"replicas": 3}), [pod(0), pod(1), replica(0)], NOW)
    assert plan.create_replicas == [1, 2] and not plan.create_pods and not plan.delete_pods
    assert not [e for e in plan.events if e.reason == c.REASON_ROLLOUT_REPLICA_REPLACED]


def test_a_failed_replica_is_replaced_without_restarting_the_gang():
    status = _running(2)
    failed = replica(1, phase="Failed", ready=False, containerStatuses=[
        {"name": c.CONTAINER_CHECKPOINT_ENGINE, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}])
    plan = decide(job(status, rollout={"replicas": 2}), [pod(0), pod(1), replica(0), failed], NOW)
    assert plan.delete_pods == ["j-rollout-1"] and plan.status["restarts"] == 0 and not plan.create_pods
    warning = next(e for e in plan.events if e.reason == c.REASON_ROLLOUT_REPLICA_FAILED)
    assert warning.type == "Warning" and "exited with code 1" in warning.message and "replacing it" in warning.message
    gone = decide(job(plan.status, rollout={"replicas": 2}), [pod(0), pod(1), replica(0)], NOW + dt.timedelta(minutes=11))
    assert gone.create_replicas == [1] and not gone.delete_pods
    assert any(e.reason == c.REASON_ROLLOUT_REPLICA_REPLACED for e in gone.events)


def test_a_gang_restart_keeps_the_rollout_replicas():
    status = _running(2, failurePolicy={"backoffSeconds": 0})
    plan = decide(job(status, rollout={"replicas": 2}, failurePolicy={"backoffSeconds": 0}),
                  [pod(0), pod(1, phase="Failed"), replica(0), replica(1)], NOW)
    assert plan.status["restarts"] == 1 and sorted(plan.delete_pods) == ["j-0", "j-1"]  # no replica


def test_kueue_preempting_the_gang_recreates_it_without_counting_a_restart():
    spec = {"rollout": {"replicas": 1}, "failurePolicy": {"maxRestarts": 0}, "checkpoint": {"pvc": "ckpt"}}
    status = {**_running(1, **spec), "lastCheckpoint": CHECKPOINT}
    evicted = {"conditions": [{"type": "TerminationTarget", "status": "True", "reason": "WorkloadEvicted",
                               "message": "Preempted to accommodate a higher priority Workload"}]}
    pods = [pod(0, deleting=True, **evicted), pod(1, deleting=True, **evicted), replica(0)]
    plan = decide(job(status, **spec), pods, NOW)
    assert plan.status["phase"] == c.PENDING and plan.status["restarts"] == 0 and plan.status["preemptions"] == 1
    event = next(e for e in plan.events if e.reason == c.REASON_PREEMPTED)
    assert "from the checkpoint of iteration 3" in event.message and "not counted as a restart" in event.message
    recreate = decide(job(plan.status, **spec), [replica(0)], NOW)
    assert recreate.create_pods == [0, 1] and recreate.attempt == 1 and recreate.resume_from == CHECKPOINT["path"]


def test_a_failed_queued_job_marks_its_pods_for_kueue():
    queued = job({"attempt": 0}, failurePolicy={"maxRestarts": 0})
    queued["metadata"]["labels"] = {c.KUEUE_QUEUE_LABEL: "team-a"}
    plan = decide(queued, [pod(0), pod(1, phase="Failed")], NOW)
    assert plan.status["phase"] == c.FAILED and sorted(plan.unretriable_pods) == ["j-0", "j-1"]
    assert decide(job({"attempt": 0}, failurePolicy={"maxRestarts": 0}), [pod(0), pod(1, phase="Failed")], NOW).unretriable_pods == []


def test_a_replica_released_at_the_end_of_the_run_is_not_replaced():
    status = _running(2)
    plan = decide(job(status, rollout={"replicas": 2}), [pod(0), pod(1), replica(0, phase="Succeeded", ready=False), replica(1)], NOW)
    assert not plan.delete_pods and not plan.create_replicas
    assert not [e for e in plan.events if e.reason == c.REASON_ROLLOUT_REPLICA_FAILED]


def test_a_preempted_follower_is_a_preemption_even_when_pod_0_failed_first():
    spec = {"failurePolicy": {"maxRestarts": 0}}
    status = _running(0, **spec)
    evicted = {"conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}]}
    plan = decide(job(status, **spec), [pod(0, phase="Failed"), pod(1, deleting=True, **evicted)], NOW)
    assert plan.status["phase"] == c.PENDING and plan.status["preemptions"] == 1 and plan.status["restarts"] == 0


def test_kueue_stopping_pods_for_another_reason_is_not_a_preemption():
    spec = {"failurePolicy": {"maxRestarts": 0}}
    status = _running(0, **spec)
    deleted = {"conditions": [{"type": "TerminationTarget", "status": "True", "reason": "WorkloadDeleted",
                               "message": "The workload is deleted"}]}
    plan = decide(job(status, **spec), [pod(0, deleting=True, **deleted), pod(1, deleting=True, **deleted)], NOW)
    assert plan.status["phase"] == c.FAILED and "preemptions" not in plan.status


def test_a_failed_replica_is_recreated_after_the_backoff_only():
    spec = {"rollout": {"replicas": 1}, "failurePolicy": {"backoffSeconds": 30}}
    status = _running(1, **spec)
    failed = decide(job(status, **spec), [pod(0), pod(1), replica(0, phase="Failed", ready=False)], NOW)
    assert failed.delete_pods == ["j-rollout-0"] and failed.status["rollout"]["lastFailureTime"] == "2030-01-01T12:00:00Z"
    soon = decide(job(failed.status, **spec), [pod(0), pod(1)], NOW + dt.timedelta(seconds=10))
    assert soon.create_replicas == [] and 19 < soon.requeue_after <= 20
    later = decide(job(soon.status, **spec), [pod(0), pod(1)], NOW + dt.timedelta(seconds=31))
    assert later.create_replicas == [0]


def test_a_finished_job_reports_no_replica_left():
    status = _running(2)
    plan = decide(job(status, rollout={"replicas": 2}), [pod(0, phase="Succeeded"), pod(1), replica(0), replica(1)], NOW)
    assert plan.status["phase"] == c.SUCCEEDED and {"j-rollout-0", "j-rollout-1"} <= set(plan.delete_pods)
    assert plan.status["rollout"]["replicas"] == 0 and plan.status["rollout"]["readyReplicas"] == 0
