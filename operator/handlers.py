"""The kopf operator: `kopf run -m seesaw.operator.handlers [--all-namespaces | --namespace X]`.

Thin by design. One daemon per RLJob reconciles it whenever one of its pods or its spec
changes (and every SEESAW_RESYNC_SECONDS): read the RLJob and its pods, let
reconcile.decide() say what to do, do it, then patch the status it computed. Nothing is
decided from memory, so a restarted operator (or a new kopf peering leader) picks every job
up where it was, and deterministic pod names make a second create a harmless 409.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
from typing import Any

import kopf
from kubernetes.client.rest import ApiException

from seesaw.operator import constants as c
from seesaw.operator.build import build_children, build_pod, build_replica_pod
from seesaw.operator.conditions import merge_patch
from seesaw.operator.events import EventRecorder
from seesaw.operator.kube import Conflict, Kube, load_client
from seesaw.operator.reconcile import decide

RESYNC_SECONDS = float(os.environ.get("SEESAW_RESYNC_SECONDS", "30"))
ERROR_BACKOFF_SECONDS = 5.0


class _State:
    kube: Kube | None = None
    wakeups: dict[tuple[str, str], asyncio.Event] = {}
    recorder = EventRecorder(
        post=lambda obj, type_, reason, message: kopf.event(obj, type=type_, reason=reason, message=message),
        important=frozenset({c.REASON_SUCCEEDED, c.REASON_PODS_CREATED, c.REASON_GANG_READY}),
    )


STATE = _State()


def _managed(spec: Any, **_: Any) -> bool:
    # Another controller named in spec.managedBy (e.g. MultiKueue) owns the job.
    return spec.get("managedBy") in (None, "", c.CONTROLLER_NAME)


def _wake(namespace: str | None, name: str | None) -> None:
    event = STATE.wakeups.get((namespace or "", name or ""))
    if event is not None:
        event.set()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, logger: logging.Logger, **_: Any) -> None:
    # Handler progress in annotations, never in status: the CRD declares every status
    # field, and the API server would prune kopf's.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=c.GROUP)
    settings.persistence.finalizer = f"{c.GROUP}/operator"
    # kopf would turn every INFO log line of a handler into an Event; ours are rate-limited.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "seesaw-operator"
    # Only the jobs' pods are streamed: without it kopf watches every pod of the cluster and
    # drops the others itself, so a busy cluster's pod churn would cost the operator.
    settings.watching.label_selectors["v1", "pods"] = c.LABEL_JOB
    settings.watching.server_timeout = int(os.environ.get("SEESAW_WATCH_TIMEOUT_SECONDS", "300"))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    STATE.kube = Kube(load_client())
    port = os.environ.get("SEESAW_METRICS_PORT")
    if port:
        from seesaw.operator import metrics

        metrics.serve(int(port))
        logger.info("metrics on :%s/metrics", port)


@kopf.daemon(c.GROUP, c.VERSION, c.RLJOB_PLURAL, when=_managed, cancellation_timeout=10.0)
async def run_job(name: str, namespace: str, stopped: kopf.DaemonStopped, logger: logging.Logger, **_: Any) -> None:
    key = (namespace, name)
    wake = STATE.wakeups[key] = asyncio.Event()
    try:
        while not stopped:
            wake.clear()
            try:
                delay = await reconcile_once(namespace, name, logger)
            except Exception:  # one bad round must not end the job's daemon
                logger.exception("reconciling %s/%s failed; retrying in %.0fs", namespace, name, ERROR_BACKOFF_SECONDS)
                delay = ERROR_BACKOFF_SECONDS
            if delay is None:  # the job is gone
                _forget_metrics(namespace, name)
                return
            await _sleep(wake, stopped, min(delay, RESYNC_SECONDS))
    finally:
        if STATE.wakeups.get(key) is wake:
            del STATE.wakeups[key]


async def _sleep(wake: asyncio.Event, stopped: kopf.DaemonStopped, timeout: float) -> None:
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())}
    try:
        await asyncio.wait(waiters, timeout=max(0.05, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


# The two event handlers are async: kopf runs a plain function in a thread, from which
# asyncio.Event.set() is not safe, and a thread hop per pod event is most of their cost.
@kopf.on.event("", "v1", "pods", labels={c.LABEL_JOB: kopf.PRESENT})
async def pod_changed(namespace: str, labels: dict[str, str], **_: Any) -> None:
    _wake(namespace, labels.get(c.LABEL_JOB))


@kopf.on.event(c.GROUP, c.VERSION, c.RLJOB_PLURAL)
async def job_changed(name: str, namespace: str, meta: Any, status: Any, **_: Any) -> None:
    # The sidecar's progress patches change the status, not the generation: no wake-up.
    if meta.get("generation") != status.get("observedGeneration") or meta.get("deletionTimestamp"):
        _wake(namespace, name)


async def reconcile_once(namespace: str, name: str, logger: logging.Logger) -> float | None:
    """One round; returns when to look again (None: the job is gone)."""
    kube = STATE.kube
    assert kube is not None, "the startup handler has not run"
    for _ in range(5):
        job = await kube.get_rljob(namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        pods = await kube.list_pods(namespace, name)
        plan = decide(job, pods, dt.datetime.now(dt.timezone.utc))
        resolved = {**job, "spec": plan.spec} if plan.spec else job
        if plan.ensure_children:
            role = os.environ.get(c.JOB_CLUSTERROLE_ENV, c.JOB_CLUSTERROLE_DEFAULT)
            for child in build_children(resolved, role):
                await _create(kube, job, child, logger)
        created = [build_pod(resolved, index, plan.attempt, plan.resume_from) for index in plan.create_pods]
        created += [build_replica_pod(resolved, replica) for replica in plan.create_replicas]
        created = [pod["metadata"]["name"] for pod in created if await _create(kube, job, pod, logger)]
        if created:
            # Said at once: a status conflict below re-runs the round, which finds them existing.
            suffix = f" (attempt {plan.attempt})" if plan.attempt else ""
            STATE.recorder.record(job, "Normal", c.REASON_PODS_CREATED, f"created pod(s) {', '.join(created)}{suffix}")
        for pod in plan.unretriable_pods:
            await kube.annotate_pod(namespace, pod, {c.KUEUE_RETRIABLE_ANNOTATION: "false"})
        for pod in dict.fromkeys(plan.delete_pods):
            await kube.delete("v1", "Pod", namespace, pod)
        patch = merge_patch(job.get("status") or {}, plan.status)
        if patch:
            try:
                await kube.patch_rljob_status(namespace, name, job["metadata"]["resourceVersion"], patch)
            except Conflict:
                continue  # someone wrote in between (the sidecar): decide again from what is there
        for event in plan.events:
            STATE.recorder.record(job, event.type, event.reason, event.message)
        _observe_metrics(job, plan)
        if plan.delete_job:
            await kube.delete(c.RLJOB_API_VERSION, c.RLJOB_KIND, namespace, name)
            return None
        return plan.requeue_after if plan.requeue_after is not None else RESYNC_SECONDS
    return 1.0


async def _create(kube: Kube, job: dict[str, Any], obj: dict[str, Any], logger: logging.Logger) -> bool:
    try:
        return await kube.create(obj)
    except ApiException as err:
        message = f"creating {obj['kind']} {obj['metadata']['name']} failed: {err.status} {err.reason}: {(err.body or '')[:300]}"
        logger.warning(message)
        STATE.recorder.record(job, "Warning", c.REASON_CHILD_CREATE_FAILED, message)
        return False


def _observe_metrics(job: dict[str, Any], plan: Any) -> None:
    if os.environ.get("SEESAW_METRICS_PORT"):
        from seesaw.operator import metrics

        metrics.observe(job, plan.status)


def _forget_metrics(namespace: str, name: str) -> None:
    if os.environ.get("SEESAW_METRICS_PORT"):
        from seesaw.operator import metrics

        metrics.forget(namespace, name)
