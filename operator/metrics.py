"""Prometheus metrics of the operator (the chart's metrics Service scrapes them).

A job's series are its own (namespace, name, phase): len(PHASES) + 2 of them while it exists,
removed when it is gone, so a long-lived operator's series follow the jobs it has now, not
every job it ever saw. Per-pod and per-engine figures are the job's own metrics
(checkpoint_engine/job_metrics.py), which carry no per-engine label.
"""
from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, start_http_server

from seesaw.operator import constants as c

RECONCILES = Counter("seesaw_operator_reconciles_total", "Reconcile rounds of RLJobs")
PHASE = Gauge("seesaw_rljob_phase", "1 for the phase each RLJob is in", ["namespace", "rljob", "phase"])
RESTARTS = Gauge("seesaw_rljob_restarts", "Gang restarts of each RLJob", ["namespace", "rljob"])
ITERATION = Gauge("seesaw_rljob_iteration", "Last RL iteration reported by each RLJob", ["namespace", "rljob"])


def serve(port: int) -> None:
    start_http_server(port)


def observe(job: dict[str, Any], status: dict[str, Any]) -> None:
    meta = job["metadata"]
    namespace, name = meta.get("namespace", ""), meta["name"]
    RECONCILES.inc()
    for phase in c.PHASES:
        PHASE.labels(namespace, name, phase).set(1 if status.get("phase") == phase else 0)
    RESTARTS.labels(namespace, name).set(status.get("restarts") or 0)
    ITERATION.labels(namespace, name).set(status.get("iteration") or 0)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted job's series."""
    for phase in c.PHASES:
        _remove(PHASE, namespace, name, phase)
    _remove(RESTARTS, namespace, name)
    _remove(ITERATION, namespace, name)


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:  # never observed (the operator restarted since)
        pass
