"""Pod 0's checkpoint engine reports progress into its RLJob: iteration, in-pod phase and
metrics go to the status subresource, a written checkpoint (and a failed run) becomes an
Event. It uses the job's own ServiceAccount, bound by the operator to a narrow role
(seesaw.operator.permissions.STATUS_REPORTER_PERMISSIONS); outside a cluster it does nothing.

It writes only fields that no one else writes (no lists), so a plain merge patch cannot
clobber the operator's conditions. A failing report never stops training.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import socket
import threading
import time
from dataclasses import asdict, is_dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "seesaw.dev", "v1alpha1", "rljobs"
# Conductor metric names -> status.metrics fields (declared in the CRD).
METRICS = {
    "mean_reward": "meanReward", "accuracy": "accuracy", "loss": "loss",
    "mean_response_length": "meanResponseLength", "rollout_seconds": "rolloutSeconds",
    "train_seconds": "trainSeconds", "sync_seconds": "syncSeconds",
    "rollout_tokens_per_second": "rolloutTokensPerSecond", "sync_bytes": "syncBytes",
    "rollout_trainer_logprob_diff": "rolloutTrainerLogprobDiff", "eval_accuracy": "evalAccuracy",
    "eval_greedy_accuracy": "evalGreedyAccuracy",
}
RESULT = {"accuracy_before": "accuracyBefore", "accuracy_after": "accuracyAfter",
          "greedy_accuracy_before": "greedyAccuracyBefore", "greedy_accuracy_after": "greedyAccuracyAfter",
          "wall_seconds": "wallSeconds"}
INTEGER_METRICS = {"syncBytes"}
# In-pod phase changes come every few seconds on a small model: at most one patch per
# interval for them; iteration results, checkpoints and the end are always sent.
PHASE_PATCH_INTERVAL = 1.0
CHECKPOINT_EVENT_INTERVAL = 60.0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(values: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, field in names.items():
        value = values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[field] = int(value) if field in INTEGER_METRICS else float(value)
    return out


class NoopReporter:
    """Used outside a cluster (seesaw run), and on pods other than 0."""

    def progress(self, iteration: int, phase: str, metrics: dict[str, Any]) -> None:
        pass

    def failed(self, message: str) -> None:
        pass

    def succeeded(self, summary: Any) -> None:
        pass


class StatusReporter(NoopReporter):
    def __init__(self, name: str, namespace: str, request: Callable[[str, str, Any, str], Any],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.namespace, self.request, self.clock = name, namespace, request, clock
        self._last_phase_patch = -math.inf
        self._last_checkpoint_event = -math.inf
        self._suppressed_checkpoints = 0
        self._uid: str | None = None
        self._lock = threading.Lock()

    @property
    def _path(self) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/{PLURAL}/{self.name}"

    def _patch(self, status: dict[str, Any]) -> None:
        status["lastProgressTime"] = _now()
        try:
            self.request("PATCH", f"{self._path}/status", {"status": status}, "application/merge-patch+json")
        except Exception as err:  # reporting is best effort
            log.warning("could not report status to RLJob %s/%s: %s", self.namespace, self.name, err)

    def _event(self, type_: str, reason: str, message: str) -> None:
        try:
            if self._uid is None:
                self._uid = self.request("GET", self._path, None, "application/json")["metadata"]["uid"]
            now = dt.datetime.now(dt.timezone.utc).isoformat()
            body = {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
                "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RLJob", "name": self.name,
                                   "namespace": self.namespace, "uid": self._uid},
                "type": type_, "reason": reason, "message": message[:1024],
                "source": {"component": "seesaw-checkpoint-engine", "host": socket.gethostname()},
                "reportingComponent": "seesaw.dev/checkpoint-engine", "reportingInstance": socket.gethostname(),
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            }
            self.request("POST", f"/api/v1/namespaces/{self.namespace}/events", body, "application/json")
        except Exception as err:
            log.warning("could not post event %s on RLJob %s/%s: %s", reason, self.namespace, self.name, err)

    def progress(self, iteration: int, phase: str, metrics: dict[str, Any]) -> None:
        with self._lock:
            if phase == "iteration":
                self._patch({"iteration": int(iteration), "metrics": _finite(metrics, METRICS)})
            elif phase == "evaluated":  # held-out accuracy: the iteration's metrics carry it
                return
            elif phase == "checkpoint":
                self._patch({"iteration": int(iteration), "podPhase": "checkpoint",
                             "lastCheckpoint": {"iteration": int(iteration), "path": str(metrics.get("path", "")), "time": _now()}})
                self._checkpoint_event(iteration, str(metrics.get("path", "")))
            else:
                now = self.clock()
                if phase in ("done", "failed") or now - self._last_phase_patch >= PHASE_PATCH_INTERVAL:
                    self._last_phase_patch = now
                    self._patch({"iteration": int(iteration), "podPhase": phase})

    def _checkpoint_event(self, iteration: int, path: str) -> None:
        # One event a minute at most: a job that checkpoints every iteration must not flood.
        now = self.clock()
        if now - self._last_checkpoint_event < CHECKPOINT_EVENT_INTERVAL:
            self._suppressed_checkpoints += 1
            return
        self._last_checkpoint_event = now
        extra = f" ({self._suppressed_checkpoints} more since the last event)" if self._suppressed_checkpoints else ""
        self._suppressed_checkpoints = 0
        self._event("Normal", "CheckpointWritten", f"checkpoint of iteration {iteration} written to {path}{extra}")

    def failed(self, message: str) -> None:
        with self._lock:
            self._patch({"podPhase": "failed"})
            self._event("Warning", "TrainingFailed", message)

    def succeeded(self, summary: Any) -> None:
        data = asdict(summary) if is_dataclass(summary) else dict(summary)
        with self._lock:
            status: dict[str, Any] = {"podPhase": "done", "result": _finite(data, RESULT)}
            if data.get("exported_model"):
                status["result"]["exportedModel"] = str(data["exported_model"])
            if data.get("iterations") is not None:
                status["iteration"] = int(data["iterations"])
            self._patch(status)


def _client_request() -> Callable[[str, str, Any, str], Any]:
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.ApiClient()

    def request(method: str, path: str, body: Any, content_type: str) -> Any:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        method_, url, headers, payload, _ = api.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"])
        response = api.call_api(method_, url, header_params=headers, body=payload, _request_timeout=10)
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason,
                               body=response.data.decode("utf-8", "replace") if response.data else "")
        return json.loads(response.data) if response.data else {}

    return request


def reporter_from_env() -> NoopReporter:
    """A StatusReporter on pod 0 of a job the operator created (SEESAW_REPORT_STATUS) with
    API access (in-cluster or KUBECONFIG); a NoopReporter everywhere else."""
    name, namespace = os.environ.get("SEESAW_JOB_NAME"), os.environ.get("SEESAW_NAMESPACE")
    wanted = os.environ.get("SEESAW_REPORT_STATUS", "").lower() in ("1", "true", "yes")
    reachable = bool(os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG"))
    if not (wanted and name and namespace and reachable):
        return NoopReporter()
    try:
        return StatusReporter(name, namespace, _client_request())
    except Exception as err:
        log.warning("status reporting disabled: %s", err)
        return NoopReporter()
