"""What to do about one RLJob, decided from what is observed: the RLJob (its spec and the
status persisted in it) and the pods that carry its label. Pure: no API calls, no memory of
earlier runs, so a restarted operator reaches the same decisions.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import re
from typing import Any

from seesaw import pod_contract
from seesaw.operator import constants as c
from seesaw.operator.build import num_pods
from seesaw.operator.conditions import get_condition, iso, is_true, parse_time, set_condition
from seesaw.spec import SpecError, restart_backoff_seconds, validate_manifest

Obj = dict[str, Any]
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 52
PVC_HINT = "set spec.checkpoint.pvc to a PersistentVolumeClaim to keep checkpoints when the pods go"
# Container and pod failure reasons that mean the pod is not coming back by itself.
_WAITING_FAILURES = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError",
                     "CreateContainerError", "RunContainerError", "CrashLoopBackOff"}


@dataclasses.dataclass
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclasses.dataclass
class PodView:
    """What the decision needs of one pod."""

    name: str
    index: int
    attempt: int
    phase: str
    ready: bool
    terminating: bool
    failure_reason: str | None = None
    failure_message: str = ""

    @property
    def live(self) -> bool:
        return not self.terminating and self.phase not in ("Succeeded", "Failed")


@dataclasses.dataclass
class Plan:
    status: Obj
    ensure_children: bool = False
    create_pods: list[int] = dataclasses.field(default_factory=list)
    attempt: int = 0
    resume_from: str | None = None
    delete_pods: list[str] = dataclasses.field(default_factory=list)
    events: list[Event] = dataclasses.field(default_factory=list)
    delete_job: bool = False
    requeue_after: float | None = None
    spec: Obj | None = None  # the resolved spec, when it is valid


def _int_label(pod: Obj, key: str) -> int:
    try:
        return int(pod["metadata"].get("labels", {}).get(key, "-1"))
    except ValueError:
        return -1


def _container_failure(statuses: list[Obj]) -> tuple[str, str] | None:
    for status in statuses:
        state = status.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") in _WAITING_FAILURES:
            return waiting["reason"], f"container {status['name']}: {waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
        terminated = state.get("terminated") or {}
        if terminated and terminated.get("exitCode", 0) != 0:
            reason = terminated.get("reason") or "Error"
            if status["name"] == c.CONTAINER_CHECKPOINT_ENGINE and terminated["exitCode"] == pod_contract.EXIT_UNRECOVERABLE:
                reason = c.REASON_UNRECOVERABLE  # the conductor found a restart would fail the same way
            detail = terminated.get("message") or ""
            return reason, f"container {status['name']} exited with code {terminated['exitCode']} ({reason}){': ' + detail if detail else ''}"
    return None


def observe_pod(pod: Obj) -> PodView:
    status = pod.get("status") or {}
    conditions = {cond.get("type"): cond for cond in status.get("conditions") or []}
    ready = (conditions.get("Ready") or {}).get("status") == "True"
    view = PodView(
        name=pod["metadata"]["name"],
        index=_int_label(pod, c.LABEL_POD_INDEX),
        attempt=_int_label(pod, c.LABEL_ATTEMPT),
        phase=status.get("phase") or "Pending",
        ready=ready,
        terminating=bool(pod["metadata"].get("deletionTimestamp")),
    )
    # The main container first: when it exits the kubelet stops the sidecars, whose exit
    # codes then say nothing about the cause.
    containers = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    found = _container_failure(containers)
    if view.phase == "Failed" and status.get("reason"):
        # The pod's own reason (Evicted, DeadlineExceeded, ...) says more than an exit code.
        view.failure_reason = status["reason"]
        view.failure_message = f"{status['reason']}: {status.get('message') or 'pod failed'}"
    elif found:
        view.failure_reason, view.failure_message = found
    elif view.phase == "Failed":
        view.failure_reason, view.failure_message = c.REASON_POD_FAILED, "pod failed"
    return view


def _unschedulable(pods: list[Obj]) -> str:
    for pod in pods:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                return f"; pod {pod['metadata']['name']} not scheduled: {cond.get('message') or cond.get('reason')}"
    return ""


def decide(job: Obj, pods: list[Obj], now: dt.datetime) -> Plan:
    old_status = job.get("status") or {}
    status = copy.deepcopy(old_status)
    plan = Plan(status=status)
    generation = int(job["metadata"].get("generation") or 0)
    status["observedGeneration"] = generation
    views = [observe_pod(pod) for pod in pods]
    events = plan.events

    def condition(type_: str, true: bool, reason: str, message: str) -> bool:
        return set_condition(status, type_, true, reason, message, generation, now)

    def move_to(phase: str, reason: str, message: str, warning: bool = False) -> None:
        previous = old_status.get("phase")
        status.update(phase=phase, reason=reason, message=message)
        if previous != phase:
            events.append(Event("Warning" if warning else "Normal", c.REASON_PHASE_CHANGED,
                                f"{previous or 'New'} -> {phase}: {message}"))

    def delete_live(keep: str | None = None) -> None:
        plan.delete_pods += [v.name for v in views if v.live and v.name != keep]

    def count(current: list[PodView]) -> None:
        status["pods"] = {
            "desired": n_pods,
            "pending": sum(v.phase == "Pending" and not v.terminating for v in current),
            "running": sum(v.phase == "Running" and not v.terminating for v in current),
            "ready": sum(v.ready and v.phase == "Running" and not v.terminating for v in current),
            "succeeded": sum(v.phase == "Succeeded" for v in current),
            "failed": sum(v.phase == "Failed" for v in current),
        }

    def fail(reason: str, message: str) -> None:
        move_to(c.FAILED, reason, message, warning=True)
        condition(c.COND_FAILED, True, reason, message)
        condition(c.COND_READY, False, c.REASON_FINISHED, "the job has failed")
        condition(c.COND_COMPLETE, False, reason, "the job has failed")
        if is_true(status, c.COND_RESTARTING):
            condition(c.COND_RESTARTING, False, reason, "no further restart")
        status.setdefault("completionTime", iso(now))
        events.append(Event("Warning", reason, message))
        delete_live()
        _ttl(plan, job, now)

    # --- finished: free what still runs, then wait for the TTL -------------------------------
    if old_status.get("phase") in c.FINISHED:
        delete_live(keep=None)
        _ttl(plan, job, now)
        return plan

    # --- a spec the API server let through but that cannot run --------------------------------
    name = job["metadata"]["name"]
    try:
        if len(name) > MAX_NAME or not NAME_RE.match(name):
            raise SpecError("metadata.name", f"must be a DNS label of at most {MAX_NAME} characters "
                            f"(pods are named <name>-<index>), got {name!r}")
        resolved = validate_manifest({k: job[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in job})
        if resolved["spec"]["rollout"]["replicas"]:
            raise SpecError("spec.rollout.replicas", "rollout replicas run under `seesaw run` so far; the operator does "
                            "not create rollout-only pods yet, so in a cluster it must be 0")
    except SpecError as err:
        n_pods = 0
        for type_, reason, msg in _initial_conditions():
            if get_condition(status, type_) is None:
                condition(type_, False, reason, msg)
        fail(c.REASON_SPEC_INVALID, str(err))
        return plan
    spec = plan.spec = resolved["spec"]
    n_pods = num_pods(resolved)
    policy = spec["failurePolicy"]
    restarts = int(status.get("restarts") or 0)
    status.setdefault("restarts", 0)
    status["totalIterations"] = spec["rl"]["iterations"]
    for type_, reason, msg in _initial_conditions():
        if get_condition(status, type_) is None:
            condition(type_, False, reason, msg)
    current = [v for v in views if v.attempt == restarts]
    stale = [v for v in views if v.attempt != restarts]
    if status.get("attempt") != restarts:
        # Pods of this attempt going away before the operator created the attempt's gang
        # (after a suspend): wait for them, they are not failures.
        stale += [v for v in current if v.terminating]
        current = [v for v in current if not v.terminating]
    plan.attempt = restarts

    # --- suspend / resume ----------------------------------------------------------------------
    if spec["suspend"]:
        plan.delete_pods += [v.name for v in views if not v.terminating]
        status.pop("attempt", None)
        kept = "checkpoints kept" if spec["checkpoint"].get("pvc") else "checkpoints lost with them (no spec.checkpoint.pvc)"
        message = f"spec.suspend is true: pods removed, {kept}"
        if condition(c.COND_SUSPENDED, True, c.REASON_SUSPENDED, message):
            events.append(Event("Normal", c.REASON_SUSPENDED, message))
        condition(c.COND_READY, False, c.REASON_SUSPENDED, "the job is suspended")
        move_to(c.SUSPENDED, c.REASON_SUSPENDED, message)
        count([v for v in views if not v.terminating])
        return plan
    if is_true(status, c.COND_SUSPENDED):
        lost = _lost_checkpoint(spec, status)
        message = ("spec.suspend is false: " + (f"starting from the beginning: {lost}; {PVC_HINT}" if lost
                                                 else "resuming from the last checkpoint"))
        condition(c.COND_SUSPENDED, False, c.REASON_RESUMED, message)
        events.append(Event("Warning" if lost else "Normal", c.REASON_RESUMED, message))
        # As for a Job, the active deadline counts from the resume.
        status["startTime"] = iso(now)
        move_to(c.PENDING, c.REASON_RESUMED, message)

    # --- active deadline ----------------------------------------------------------------------------
    deadline = spec.get("activeDeadlineSeconds")
    started = parse_time(status.get("startTime"))
    if deadline and started:
        left = started.timestamp() + deadline - now.timestamp()
        if left <= 0:
            fail(c.REASON_DEADLINE, f"the job ran longer than spec.activeDeadlineSeconds ({deadline}s)")
            return plan
        plan.requeue_after = left

    # --- pods of an earlier attempt: remove them before the next gang starts --------------------------
    if stale:
        plan.delete_pods += [v.name for v in stale if not v.terminating]
        count(current)
        move_to(c.PENDING, c.REASON_RESTARTING if restarts else c.REASON_PODS_PENDING,
                f"waiting for {len(stale)} pod(s) of the previous attempt to terminate")
        return plan

    # --- failures --------------------------------------------------------------------------------------
    failure = _find_failure(current, status, restarts, n_pods, policy["nonRetryableReasons"])
    if failure:
        reason, message, retryable = failure
        checkpoint = status.get("lastCheckpoint") or {}
        if not retryable:
            fail(c.REASON_NON_RETRYABLE, f"{message} ({reason} is in spec.failurePolicy.nonRetryableReasons)")
            return plan
        if restarts >= policy["maxRestarts"]:
            fail(c.REASON_RESTART_LIMIT, f"{message}; the gang was restarted {restarts} time(s), "
                                         f"spec.failurePolicy.maxRestarts is {policy['maxRestarts']}")
            return plan
        restarts += 1
        status["restarts"] = restarts
        status["lastRestartTime"] = iso(now)
        status.pop("attempt", None)
        lost = _lost_checkpoint(spec, status)
        where = (f"from the beginning: {lost}; {PVC_HINT}" if lost
                 else f"from the checkpoint of iteration {checkpoint['iteration']}" if checkpoint.get("iteration") is not None
                 else "from the start (no checkpoint yet)")
        text = f"{message}; restarting the gang {where} (restart {restarts} of {policy['maxRestarts']})"
        condition(c.COND_RESTARTING, True, c.REASON_POD_FAILED, text)
        condition(c.COND_READY, False, c.REASON_POD_FAILED, message)
        events.append(Event("Warning", c.REASON_RESTARTING, text))
        if lost:
            events.append(Event("Warning", c.REASON_CHECKPOINT_LOST,
                                f"restart {restarts}: {lost}, so the run starts from the beginning; {PVC_HINT}"))
        plan.delete_pods += [v.name for v in current if not v.terminating]
        move_to(c.PENDING, c.REASON_RESTARTING, text, warning=True)
        count([])
        plan.requeue_after = restart_backoff_seconds(policy, restarts)
        return plan

    # --- success: pod 0's checkpoint engine conducts the run and exits 0 at its end ---------------
    leader = next((v for v in current if v.index == 0), None)
    if leader and leader.phase == "Succeeded":
        message = f"pod {leader.name} completed the run"
        move_to(c.SUCCEEDED, c.REASON_SUCCEEDED, message)
        condition(c.COND_COMPLETE, True, c.REASON_SUCCEEDED, message)
        condition(c.COND_READY, False, c.REASON_FINISHED, "the job has finished")
        if is_true(status, c.COND_RESTARTING):
            condition(c.COND_RESTARTING, False, c.REASON_FINISHED, "the job has finished")
        status["completionTime"] = iso(now)
        events.append(Event("Normal", c.REASON_SUCCEEDED, message))
        delete_live(keep=leader.name)
        count(current)
        _ttl(plan, job, now)
        return plan

    # --- create what is missing -----------------------------------------------------------------------
    present = {v.index for v in current}
    missing = [i for i in range(n_pods) if i not in present]
    if missing:
        wait = restart_backoff_seconds(policy, restarts) - _since(status.get("lastRestartTime"), now) if restarts else 0.0
        if wait > 0:
            plan.requeue_after = min(plan.requeue_after or wait, wait)
            count(current)
            move_to(c.PENDING, c.REASON_RESTARTING, f"restart {restarts}: backing off {wait:.0f}s before recreating the pods")
            return plan
        plan.ensure_children = True
        plan.create_pods = missing
        # Only a checkpoint on a PVC outlives the pods that wrote it (see _lost_checkpoint).
        if spec["checkpoint"].get("pvc"):
            plan.resume_from = (status.get("lastCheckpoint") or {}).get("path")
        status["attempt"] = restarts
        status.setdefault("startTime", iso(now))
    elif current:
        # Adopt a gang created in a round whose status write was lost (a 409, a crash).
        status["attempt"] = restarts
        status.setdefault("startTime", iso(now))
    if deadline and not started and status.get("startTime"):
        plan.requeue_after = min(plan.requeue_after or float(deadline), float(deadline))

    # --- where the gang stands --------------------------------------------------------------------------
    count(current)
    pods_now = status["pods"]
    running = pods_now["running"] + pods_now["succeeded"]
    if running == n_pods and pods_now["ready"] + pods_now["succeeded"] == n_pods:
        message = f"all {n_pods} pod(s) ready"
        if condition(c.COND_READY, True, c.REASON_GANG_READY, message):
            events.append(Event("Normal", c.REASON_GANG_READY, message))
        if is_true(status, c.COND_RESTARTING):
            condition(c.COND_RESTARTING, False, c.REASON_GANG_READY, f"the gang is ready again after restart {restarts}")
        move_to(c.RUNNING, c.REASON_GANG_READY, message)
    elif running == n_pods:
        message = f"{pods_now['ready']} of {n_pods} pod(s) ready"
        condition(c.COND_READY, False, c.REASON_PODS_STARTING, message)
        # A gang that was running stays Running while a probe flaps; Ready tells.
        if old_status.get("phase") != c.RUNNING:
            move_to(c.INITIALIZING, c.REASON_PODS_STARTING, message)
    else:
        message = f"{running} of {n_pods} pod(s) running" + _unschedulable([p for p in pods if observe_pod(p).attempt == restarts])
        condition(c.COND_READY, False, c.REASON_PODS_PENDING, message)
        move_to(c.PENDING, c.REASON_PODS_PENDING, message)
    return plan


def _initial_conditions() -> list[tuple[str, str, str]]:
    return [
        (c.COND_READY, c.REASON_PODS_PENDING, "the pods are not ready yet"),
        (c.COND_SUSPENDED, c.REASON_NOT_SUSPENDED, "spec.suspend is false"),
        (c.COND_RESTARTING, c.REASON_NO_RESTART, "no pod has failed"),
        (c.COND_COMPLETE, c.REASON_NOT_FINISHED, "the run has not finished"),
        (c.COND_FAILED, c.REASON_NOT_FINISHED, "the run has not failed"),
    ]


def _find_failure(current: list[PodView], status: Obj, attempt: int, n_pods: int,
                  non_retryable: list[str]) -> tuple[str, str, bool] | None:
    for view in sorted(current, key=lambda v: v.index):
        if view.failure_reason and (view.phase == "Failed" or view.failure_reason in _WAITING_FAILURES):
            if view.failure_reason in non_retryable:
                return view.failure_reason, f"pod {view.name}: {view.failure_message}", False
            if view.phase == "Failed" or view.failure_reason == "CrashLoopBackOff":
                return view.failure_reason, f"pod {view.name} failed: {view.failure_message}", True
        if view.terminating and view.phase not in ("Succeeded", "Failed"):
            # Only pods of an earlier attempt are deleted by the operator: this one was
            # evicted, preempted or deleted by someone else.
            return c.POD_LOST, f"pod {view.name} is being deleted (evicted, preempted or deleted by hand)", True
    if status.get("attempt") == attempt:
        present = {v.index for v in current}
        for index in range(n_pods):
            if index not in present:
                return c.POD_LOST, f"pod {index} of the gang disappeared", True
    return None


def _lost_checkpoint(spec: Obj, status: Obj) -> str | None:
    """Why the last checkpoint is gone once the pods are, or None. Without spec.checkpoint.pvc
    the checkpoint directory is an emptyDir of the pod (build._volumes) and dies with it."""
    checkpoint = status.get("lastCheckpoint") or {}
    if spec["checkpoint"].get("pvc") or not checkpoint.get("path"):
        return None
    return (f"the checkpoint of iteration {checkpoint.get('iteration')} ({checkpoint['path']}) was on the pods' "
            "emptyDir volume and was lost with them")


def _since(value: str | None, now: dt.datetime) -> float:
    moment = parse_time(value)
    return (now - moment).total_seconds() if moment else float("inf")


def _ttl(plan: Plan, job: Obj, now: dt.datetime) -> None:
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    finished = parse_time(plan.status.get("completionTime"))
    if ttl is None or finished is None:
        return
    left = finished.timestamp() + ttl - now.timestamp()
    if left <= 0:
        plan.delete_job = True
        plan.events.append(Event("Normal", c.REASON_TTL_EXPIRED, f"deleting the job {ttl}s after it finished"))
    else:
        plan.requeue_after = left
