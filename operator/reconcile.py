"""What to do about one RLJob, decided from what is observed: the RLJob (its spec and the
status persisted in it) and the pods that carry its label. Pure: no API calls, no memory of
earlier runs, so a restarted operator reaches the same decisions.

`decide` takes its steps in a fixed order, each a method named for what it decides
(KubeRay-style `...IfNeeded`); a step that settles the round ends it.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import Any

from seesaw import pod_contract
from seesaw.operator import constants as c
from seesaw.operator.build import desired_replicas, num_pods, queue_name, replica_selector
from seesaw.operator.conditions import get_condition, iso, is_true, parse_time, set_condition
from seesaw.spec import SpecError, restart_backoff_seconds, validate_manifest

Obj = dict[str, Any]
PVC_HINT = "set spec.checkpoint.pvc to a PersistentVolumeClaim to keep checkpoints when the pods go"
# Container and pod failure reasons that mean the pod is not coming back by itself.
# DisruptionTarget reasons that mean a higher-priority workload took the pod's place.
_PREEMPTION_REASONS = {"PreemptionByScheduler", "PreemptionByKubeScheduler"}
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
    index: int  # the gang pod's index; -1 for a rollout replica
    attempt: int
    phase: str
    ready: bool
    terminating: bool
    failure_reason: str | None = None
    failure_message: str = ""
    replica: int | None = None  # a rollout replica's index
    preempted: str = ""  # why Kueue or the scheduler took the pod away, if they did

    @property
    def live(self) -> bool:
        return not self.terminating and self.phase not in ("Succeeded", "Failed")


@dataclasses.dataclass
class Plan:
    status: Obj
    ensure_children: bool = False
    create_pods: list[int] = dataclasses.field(default_factory=list)
    create_replicas: list[int] = dataclasses.field(default_factory=list)
    attempt: int = 0
    resume_from: str | None = None
    delete_pods: list[str] = dataclasses.field(default_factory=list)
    # pods to mark kueue.x-k8s.io/retriable-in-group=false before they go (a failed queued job)
    unretriable_pods: list[str] = dataclasses.field(default_factory=list)
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


def _preemption(conditions: dict[str, Obj]) -> str:
    """Why Kueue or the scheduler preempted the pod, or "". Kueue marks every pod it stops
    (TerminationTarget) but also when its Workload is deleted or no longer matches: only an
    eviction for preemption is one; the scheduler marks the pods it preempts (DisruptionTarget)."""
    kueue = conditions.get(c.KUEUE_TERMINATION_CONDITION) or {}
    scheduler = conditions.get("DisruptionTarget") or {}
    for cond, preempted in ((kueue, kueue.get("reason") == "Preempted" or (
                                kueue.get("reason") == "WorkloadEvicted" and "preempt" in (kueue.get("message") or "").lower())),
                            (scheduler, scheduler.get("reason") in _PREEMPTION_REASONS)):
        if cond.get("status") == "True" and preempted:
            return f"{cond['reason']}: {cond.get('message') or 'preempted'}"
    return ""


def observe_pod(pod: Obj) -> PodView:
    status = pod.get("status") or {}
    conditions = {cond.get("type"): cond for cond in status.get("conditions") or []}
    ready = (conditions.get("Ready") or {}).get("status") == "True"
    labels = pod["metadata"].get("labels") or {}
    view = PodView(
        name=pod["metadata"]["name"],
        index=_int_label(pod, c.LABEL_POD_INDEX),
        attempt=_int_label(pod, c.LABEL_ATTEMPT),
        phase=status.get("phase") or "Pending",
        ready=ready,
        terminating=bool(pod["metadata"].get("deletionTimestamp")),
        replica=_int_label(pod, c.LABEL_REPLICA) if c.LABEL_REPLICA in labels else None,
        preempted=_preemption(conditions),
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
    """The plan for one round, from the steps below in the order they are taken."""
    round_ = _Round(job, pods, now)
    if round_.release_pods_if_finished() or round_.fail_if_spec_invalid():
        return round_.plan
    round_.initialise_status()
    if round_.suspend_if_requested():
        return round_.plan
    round_.resume_if_unsuspended()
    if round_.fail_if_past_deadline():
        return round_.plan
    # The rollout replicas live beside the gang: scaled and replaced whatever the gang does.
    round_.remove_or_replace_replicas_if_needed()
    gang_steps = (round_.remove_stale_pods_if_needed, round_.restart_gang_if_failed,
                  round_.complete_if_leader_succeeded, round_.create_missing_pods_if_needed)
    if not any(step() for step in gang_steps):  # any() stops at the step that settles the gang
        round_.update_gang_phase()
    round_.create_missing_replicas_if_needed()
    return round_.plan


class _Round:
    """One decision: what is observed, the status being written, and the plan."""

    def __init__(self, job: Obj, pods: list[Obj], now: dt.datetime) -> None:
        self.job, self.pods, self.now = job, pods, now
        self.old_status = job.get("status") or {}
        self.status = copy.deepcopy(self.old_status)
        self.plan = Plan(status=self.status)
        self.generation = int(job["metadata"].get("generation") or 0)
        self.status["observedGeneration"] = self.generation
        self.views = [observe_pod(pod) for pod in pods]
        self.replica_views = [v for v in self.views if v.replica is not None]
        self.gang_views = [v for v in self.views if v.replica is None]
        self.spec: Obj = {}
        self.n_pods = 0
        self.current: list[PodView] = []  # the gang pods of the current attempt
        self.stale: list[PodView] = []

    # --- helpers the steps share ---------------------------------------------------------
    @property
    def events(self) -> list[Event]:
        return self.plan.events

    @property
    def restarts(self) -> int:
        return int(self.status.get("restarts") or 0)

    @property
    def desired_replicas(self) -> int:
        """spec.rollout.replicas (0 until the spec is known to be valid)."""
        return desired_replicas({"spec": self.spec}) if self.spec else 0

    @property
    def attempt(self) -> int:
        """Which gang: failure restarts and preemptions each make a new one."""
        return self.restarts + int(self.status.get("preemptions") or 0)

    def condition(self, type_: str, true: bool, reason: str, message: str) -> bool:
        return set_condition(self.status, type_, true, reason, message, self.generation, self.now)

    def move_to(self, phase: str, reason: str, message: str, warning: bool = False) -> None:
        previous = self.old_status.get("phase")
        self.status.update(phase=phase, reason=reason, message=message)
        if previous != phase:
            self.events.append(Event("Warning" if warning else "Normal", c.REASON_PHASE_CHANGED,
                                     f"{previous or 'New'} -> {phase}: {message}"))

    def delete_live(self, keep: str | None = None) -> None:
        self.plan.delete_pods += [v.name for v in self.views if v.live and v.name != keep]

    def count(self, current: list[PodView]) -> None:
        self.status["pods"] = {
            "desired": self.n_pods,
            "pending": sum(v.phase == "Pending" and not v.terminating for v in current),
            "running": sum(v.phase == "Running" and not v.terminating for v in current),
            "ready": sum(v.ready and v.phase == "Running" and not v.terminating for v in current),
            "succeeded": sum(v.phase == "Succeeded" for v in current),
            "failed": sum(v.phase == "Failed" for v in current),
        }

    def fail(self, reason: str, message: str) -> None:
        self.move_to(c.FAILED, reason, message, warning=True)
        self.condition(c.COND_FAILED, True, reason, message)
        self.condition(c.COND_READY, False, c.REASON_FINISHED, "the job has failed")
        self.condition(c.COND_COMPLETE, False, reason, "the job has failed")
        if is_true(self.status, c.COND_RESTARTING):
            self.condition(c.COND_RESTARTING, False, reason, "no further restart")
        self.status.setdefault("completionTime", iso(self.now))
        self.events.append(Event("Warning", reason, message))
        self.finish_queued_group(self.views)  # Kueue would otherwise hold the quota
        self.delete_live()
        if "rollout" in self.status:
            self.count_replicas()
        _ttl(self.plan, self.job, self.now)

    def finish_queued_group(self, gang: list[PodView]) -> None:
        """Under Kueue, a gang's pods hold its finalizer until their group's Workload ends;
        the next gang is a new group (build.gang_group_name), so mark this one's pods so that
        Kueue ends the old Workload and lets them go instead of waiting for replacements."""
        if queue_name(self.job):
            self.plan.unretriable_pods += [v.name for v in gang]

    def add_initial_conditions(self) -> None:
        for type_, reason, msg in _initial_conditions():
            if get_condition(self.status, type_) is None:
                self.condition(type_, False, reason, msg)

    # --- the steps, in order ----------------------------------------------------------------
    def release_pods_if_finished(self) -> bool:
        """A finished job frees what still runs, then waits for its TTL."""
        if self.old_status.get("phase") not in c.FINISHED:
            return False
        self.delete_live()
        _ttl(self.plan, self.job, self.now)
        return True

    def fail_if_spec_invalid(self) -> bool:
        """A spec the API server let through but that cannot run fails the job, named."""
        try:
            resolved = validate_manifest({k: self.job[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in self.job},
                                         on_create=False)
        except SpecError as err:
            self.add_initial_conditions()
            self.fail(c.REASON_SPEC_INVALID, str(err))
            return True
        self.spec = self.plan.spec = resolved["spec"]
        self.n_pods = num_pods(resolved)
        return False

    def initialise_status(self) -> None:
        self.status.setdefault("restarts", 0)
        self.status["totalIterations"] = self.spec["rl"]["iterations"]
        self.add_initial_conditions()
        self.current = [v for v in self.gang_views if v.attempt == self.attempt]
        self.stale = [v for v in self.gang_views if v.attempt != self.attempt]
        if self.status.get("attempt") != self.attempt:
            # Pods of this attempt going away before the operator created the attempt's gang
            # (after a suspend): wait for them, they are not failures.
            self.stale += [v for v in self.current if v.terminating]
            self.current = [v for v in self.current if not v.terminating]
        self.plan.attempt = self.attempt

    def suspend_if_requested(self) -> bool:
        if not self.spec["suspend"]:
            return False
        self.plan.delete_pods += [v.name for v in self.views if not v.terminating]
        self.finish_queued_group(self.gang_views)
        self.status.pop("attempt", None)
        kept = "checkpoints kept" if self.spec["checkpoint"].get("pvc") else "checkpoints lost with them (no spec.checkpoint.pvc)"
        message = f"spec.suspend is true: pods removed, {kept}"
        if self.condition(c.COND_SUSPENDED, True, c.REASON_SUSPENDED, message):
            self.events.append(Event("Normal", c.REASON_SUSPENDED, message))
        self.condition(c.COND_READY, False, c.REASON_SUSPENDED, "the job is suspended")
        self.move_to(c.SUSPENDED, c.REASON_SUSPENDED, message)
        self.count([v for v in self.gang_views if not v.terminating])
        self.count_replicas()
        return True

    def resume_if_unsuspended(self) -> None:
        if not is_true(self.status, c.COND_SUSPENDED):
            return
        lost = _lost_checkpoint(self.spec, self.status)
        message = ("spec.suspend is false: " + (f"starting from the beginning: {lost}; {PVC_HINT}" if lost
                                                 else "resuming from the last checkpoint"))
        self.condition(c.COND_SUSPENDED, False, c.REASON_RESUMED, message)
        self.events.append(Event("Warning" if lost else "Normal", c.REASON_RESUMED, message))
        # As for a Job, the active deadline counts from the resume.
        self.status["startTime"] = iso(self.now)
        self.move_to(c.PENDING, c.REASON_RESUMED, message)

    def fail_if_past_deadline(self) -> bool:
        deadline = self.spec.get("activeDeadlineSeconds")
        started = parse_time(self.status.get("startTime"))
        if not (deadline and started):
            return False
        left = started.timestamp() + deadline - self.now.timestamp()
        if left <= 0:
            self.fail(c.REASON_DEADLINE, f"the job ran longer than spec.activeDeadlineSeconds ({deadline}s)")
            return True
        self.plan.requeue_after = left
        return False

    def remove_or_replace_replicas_if_needed(self) -> None:
        """Rollout replicas follow spec.rollout.replicas (kubectl scale): the highest indices
        beyond it are deleted (each finishes its prompts first, then leaves the gang), and one
        whose pod failed is deleted to be replaced; none of it touches the gang."""
        desired = self.desired_replicas
        before = (self.old_status.get("rollout") or {}).get("desiredReplicas")
        if before is not None and before != desired:
            self.events.append(Event("Normal", c.REASON_ROLLOUT_SCALED, f"rollout replicas: {before} -> {desired}"))
        for view in sorted(self.replica_views, key=lambda v: v.replica):
            if view.terminating:
                continue
            if view.replica >= desired:
                self.plan.delete_pods.append(view.name)
                self.events.append(Event("Normal", c.REASON_ROLLOUT_SCALED,
                                         f"removing rollout replica {view.replica} (pod {view.name}): it finishes "
                                         f"the prompts it has, then leaves"))
            elif view.phase == "Failed":  # Succeeded: pod 0's conductor released it, the job is over
                self.plan.delete_pods.append(view.name)
                self.status.setdefault("rollout", {})["lastFailureTime"] = iso(self.now)
                why = view.failure_message or "its pod failed"
                self.events.append(Event("Warning", c.REASON_ROLLOUT_REPLICA_FAILED,
                                         f"rollout replica {view.replica} (pod {view.name}): {why}; replacing it, "
                                         f"the job goes on without it meanwhile"))
        self.count_replicas()

    def create_missing_replicas_if_needed(self) -> None:
        """Once the job's children exist (a gang attempt was created), every replica index
        below spec.rollout.replicas without a pod gets one; a new pod of a replica that was
        there before is a replacement, said in an event."""
        if self.status.get("phase") in c.FINISHED or self.status.get("attempt") is None:
            return
        desired = self.desired_replicas
        present = {v.replica for v in self.replica_views}
        missing = [r for r in range(desired) if r not in present]
        if not missing:
            return
        # a replica that fails at once is not re-created in a tight loop
        wait = self.spec["failurePolicy"]["backoffSeconds"] - _since((self.status.get("rollout") or {}).get("lastFailureTime"), self.now)
        if wait > 0:
            self.plan.requeue_after = min(self.plan.requeue_after or wait, wait)
            return
        self.plan.create_replicas = missing
        self.plan.ensure_children = True
        before = (self.old_status.get("rollout") or {}).get("desiredReplicas") or 0
        replaced = [r for r in missing if r < before]
        if replaced:
            self.events.append(Event("Normal", c.REASON_ROLLOUT_REPLICA_REPLACED,
                                     f"re-creating rollout replica(s) {replaced}: their pods were gone"))

    def count_replicas(self) -> None:
        """status.rollout, as the scale subresource reads it: the pods being deleted this round
        no longer count."""
        alive = [v for v in self.replica_views if not v.terminating and v.phase not in ("Succeeded", "Failed")
                 and v.name not in self.plan.delete_pods]
        self.status.setdefault("rollout", {}).update({
            "desiredReplicas": self.desired_replicas,
            "replicas": len(alive),
            "readyReplicas": sum(v.ready and v.phase == "Running" for v in alive),
            "selector": replica_selector(self.job),
        })

    def remove_stale_pods_if_needed(self) -> bool:
        """Pods of an earlier attempt go before the next gang starts."""
        if not self.stale:
            return False
        self.plan.delete_pods += [v.name for v in self.stale if not v.terminating]
        self.finish_queued_group(self.stale)
        self.count(self.current)
        self.move_to(c.PENDING, c.REASON_RESTARTING if self.attempt else c.REASON_PODS_PENDING,
                     f"waiting for {len(self.stale)} pod(s) of the previous attempt to terminate")
        return True

    def restart_gang_if_failed(self) -> bool:
        """A gang pod that failed or went away: restart the whole gang from the last
        checkpoint, or fail the job when the failure policy says so. A preemption (Kueue's or
        the scheduler's) restarts it without counting against spec.failurePolicy.maxRestarts."""
        policy = self.spec["failurePolicy"]
        failure = _find_failure(self.current, self.status, self.attempt, self.n_pods, policy["nonRetryableReasons"])
        if not failure:
            return False
        reason, message, retryable = failure
        checkpoint = self.status.get("lastCheckpoint") or {}
        preempted = reason == c.REASON_PREEMPTED
        if not retryable:
            self.fail(c.REASON_NON_RETRYABLE, f"{message} ({reason} is in spec.failurePolicy.nonRetryableReasons)")
            return True
        if not preempted and self.restarts >= policy["maxRestarts"]:
            self.fail(c.REASON_RESTART_LIMIT, f"{message}; the gang was restarted {self.restarts} time(s), "
                                              f"spec.failurePolicy.maxRestarts is {policy['maxRestarts']}")
            return True
        if preempted:
            self.status["preemptions"] = int(self.status.get("preemptions") or 0) + 1
        else:
            self.status["restarts"] = self.restarts + 1
            self.status["lastRestartTime"] = iso(self.now)
        self.status.pop("attempt", None)
        lost = _lost_checkpoint(self.spec, self.status)
        where = (f"from the beginning: {lost}; {PVC_HINT}" if lost
                 else f"from the checkpoint of iteration {checkpoint['iteration']}" if checkpoint.get("iteration") is not None
                 else "from the start (no checkpoint yet)")
        count = (f"preemption {self.status['preemptions']}, not counted as a restart" if preempted
                 else f"restart {self.restarts} of {policy['maxRestarts']}")
        text = f"{message}; restarting the gang {where} ({count})"
        self.condition(c.COND_RESTARTING, True, reason if preempted else c.REASON_POD_FAILED, text)
        self.condition(c.COND_READY, False, reason if preempted else c.REASON_POD_FAILED, message)
        self.events.append(Event("Normal" if preempted else "Warning", c.REASON_PREEMPTED if preempted else c.REASON_RESTARTING, text))
        if lost:
            self.events.append(Event("Warning", c.REASON_CHECKPOINT_LOST,
                                     f"{count}: {lost}, so the run starts from the beginning; {PVC_HINT}"))
        self.plan.delete_pods += [v.name for v in self.current if not v.terminating]
        self.finish_queued_group(self.current)
        self.move_to(c.PENDING, c.REASON_RESTARTING, text, warning=not preempted)
        self.count([])
        if not preempted:
            self.plan.requeue_after = restart_backoff_seconds(policy, self.restarts)
        return True

    def complete_if_leader_succeeded(self) -> bool:
        """Pod 0's checkpoint engine conducts the run and exits 0 at its end."""
        leader = next((v for v in self.current if v.index == 0), None)
        if not (leader and leader.phase == "Succeeded"):
            return False
        message = f"pod {leader.name} completed the run"
        self.move_to(c.SUCCEEDED, c.REASON_SUCCEEDED, message)
        self.condition(c.COND_COMPLETE, True, c.REASON_SUCCEEDED, message)
        self.condition(c.COND_READY, False, c.REASON_FINISHED, "the job has finished")
        if is_true(self.status, c.COND_RESTARTING):
            self.condition(c.COND_RESTARTING, False, c.REASON_FINISHED, "the job has finished")
        self.status["completionTime"] = iso(self.now)
        self.events.append(Event("Normal", c.REASON_SUCCEEDED, message))
        self.delete_live(keep=leader.name)
        self.count(self.current)
        self.count_replicas()
        _ttl(self.plan, self.job, self.now)
        return True

    def create_missing_pods_if_needed(self) -> bool:
        """The gang's missing pods, after the restart backoff; a gang created in a round whose
        status write was lost (a 409, a crash) is adopted."""
        policy = self.spec["failurePolicy"]
        present = {v.index for v in self.current}
        missing = [i for i in range(self.n_pods) if i not in present]
        if missing:
            restarts = self.restarts
            wait = restart_backoff_seconds(policy, restarts) - _since(self.status.get("lastRestartTime"), self.now) if restarts else 0.0
            if wait > 0:
                self.plan.requeue_after = min(self.plan.requeue_after or wait, wait)
                self.count(self.current)
                self.move_to(c.PENDING, c.REASON_RESTARTING, f"restart {restarts}: backing off {wait:.0f}s before recreating the pods")
                return True
            self.plan.ensure_children = True
            self.plan.create_pods = missing
            # Only a checkpoint on a PVC outlives the pods that wrote it (see _lost_checkpoint).
            if self.spec["checkpoint"].get("pvc"):
                self.plan.resume_from = (self.status.get("lastCheckpoint") or {}).get("path")
            self.status["attempt"] = self.attempt
            self.status.setdefault("startTime", iso(self.now))
        elif self.current:
            self.status["attempt"] = self.attempt
            self.status.setdefault("startTime", iso(self.now))
        deadline = self.spec.get("activeDeadlineSeconds")
        if deadline and not parse_time(self.old_status.get("startTime")) and self.status.get("startTime"):
            self.plan.requeue_after = min(self.plan.requeue_after or float(deadline), float(deadline))
        return False

    def update_gang_phase(self) -> None:
        """Where the gang stands: Pending, Initializing or Running, and the Ready condition."""
        self.count(self.current)
        pods_now, n_pods = self.status["pods"], self.n_pods
        running = pods_now["running"] + pods_now["succeeded"]
        if running == n_pods and pods_now["ready"] + pods_now["succeeded"] == n_pods:
            message = f"all {n_pods} pod(s) ready"
            if self.condition(c.COND_READY, True, c.REASON_GANG_READY, message):
                self.events.append(Event("Normal", c.REASON_GANG_READY, message))
            if is_true(self.status, c.COND_RESTARTING):
                self.condition(c.COND_RESTARTING, False, c.REASON_GANG_READY,
                               f"the gang is ready again after restart {self.restarts}")
            self.move_to(c.RUNNING, c.REASON_GANG_READY, message)
        elif running == n_pods:
            message = f"{pods_now['ready']} of {n_pods} pod(s) ready"
            self.condition(c.COND_READY, False, c.REASON_PODS_STARTING, message)
            # A gang that was running stays Running while a probe flaps; Ready tells.
            if self.old_status.get("phase") != c.RUNNING:
                self.move_to(c.INITIALIZING, c.REASON_PODS_STARTING, message)
        else:
            current = {v.name for v in self.current}
            message = f"{running} of {n_pods} pod(s) running" + _unschedulable(
                [p for p in self.pods if p["metadata"]["name"] in current])
            self.condition(c.COND_READY, False, c.REASON_PODS_PENDING, message)
            self.move_to(c.PENDING, c.REASON_PODS_PENDING, message)


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
    # A preemption first: the gang's other pods fail because of it (pod 0 loses a follower).
    for view in sorted(current, key=lambda v: v.index):
        if view.preempted and (view.terminating or view.phase == "Failed"):
            return c.REASON_PREEMPTED, f"pod {view.name} was preempted ({view.preempted})", True
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
