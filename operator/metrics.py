"""Prometheus metrics of the operator (the chart's metrics Service scrapes them)."""
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
