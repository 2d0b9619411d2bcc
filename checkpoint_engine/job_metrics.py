"""Prometheus metrics of a running job, served by pod 0's checkpoint engine on
SEESAW_JOB_METRICS_PORT (`/metrics`, port name `metrics`; the chart's PodMonitor scrapes it).

Each name is a `seesaw_job_` metric; the operator's own are `seesaw_operator_` and
`seesaw_rljob_` (operator/metrics.py). Prometheus adds the pod's labels (job name,
namespace) when it scrapes, so the metrics carry none of their own.
"""
from __future__ import annotations

import math
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from seesaw.checkpoint_engine.phases import Phase

# rollout and train take seconds to hours; sync sub-second to minutes
PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TIMED_PHASES = {"rollout": "rollout_seconds", "train": "train_seconds", "sync": "sync_seconds"}
IN_POD_PHASES = tuple(phase.value for phase in Phase)


class JobMetrics:
    """A progress observer of the conductor that keeps the job's metrics in its own registry."""

    def __init__(self, restarts: int = 0) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.iteration = Gauge("seesaw_job_iteration", "Last RL iteration finished", registry=r)
        self.phase = Gauge("seesaw_job_phase", "1 for the in-pod phase pod 0 is in", ["phase"], registry=r)
        self.phase_seconds = Histogram("seesaw_job_phase_seconds", "Seconds of each rollout, train and weight-sync phase",
                                       ["phase"], buckets=PHASE_BUCKETS, registry=r)
        self.sync_bytes = Counter("seesaw_job_sync_bytes", "Bytes of weights sent from the trainer to the rollout engines",
                                  registry=r)
        self.sync_seconds = Counter("seesaw_job_sync_seconds", "Seconds spent in weight syncs", registry=r)
        self.reward = Gauge("seesaw_job_mean_reward", "Mean reward of the last iteration's samples", registry=r)
        self.train_accuracy = Gauge("seesaw_job_train_accuracy", "Share of correct samples in the last iteration",
                                    registry=r)
        self.heldout_accuracy = Gauge("seesaw_job_heldout_accuracy", "Held-out accuracy at the last evaluation",
                                      ["sampling"], registry=r)
        self.response_tokens = Gauge("seesaw_job_mean_response_tokens", "Mean response length of the last iteration",
                                     registry=r)
        self.loss = Gauge("seesaw_job_loss", "Policy loss of the last iteration", registry=r)
        self.tokens_per_second = Gauge("seesaw_job_rollout_tokens_per_second",
                                       "Generated tokens per second of the last rollout", registry=r)
        self.weight_version = Gauge("seesaw_job_weight_version",
                                    "Weight version every rollout engine holds (the stalest one's)", registry=r)
        self.restarts = Gauge("seesaw_job_restarts", "Gang restarts before this attempt", registry=r)
        self.restarts.set(restarts)
        self.engines = Gauge("seesaw_job_rollout_engines", "Rollout engines serving (gang and replicas)", registry=r)
        # one series whatever the engine count: the straggler's name is in the log and metrics.jsonl
        self.straggler = Gauge("seesaw_job_rollout_straggler_ratio",
                               "The slowest rollout engine's seconds over the median engine's in the last rollout",
                               registry=r)

    def serve(self, port: int) -> int:
        """Serve /metrics on 0.0.0.0:port (0: a free one); the port."""
        server, _ = start_http_server(port, registry=self.registry)
        return server.server_port

    def progress(self, iteration: int, phase: str, metrics: dict[str, Any]) -> None:
        if phase == "iteration":
            self._iteration(iteration, metrics)
        elif phase == "evaluated":
            for sampling in ("sampled", "greedy"):
                self.heldout_accuracy.labels(sampling).set(metrics[sampling])
        elif phase in IN_POD_PHASES:
            for name in IN_POD_PHASES:
                self.phase.labels(name).set(1 if name == phase else 0)

    def _iteration(self, iteration: int, m: dict[str, Any]) -> None:
        self.iteration.set(iteration)
        for phase, field in TIMED_PHASES.items():
            self.phase_seconds.labels(phase).observe(m[field])
        self.sync_bytes.inc(m["sync_bytes"])
        self.sync_seconds.inc(m["sync_seconds"])
        for gauge, field in ((self.reward, "mean_reward"), (self.train_accuracy, "accuracy"),
                             (self.response_tokens, "mean_response_length"), (self.loss, "loss"),
                             (self.tokens_per_second, "rollout_tokens_per_second"), (self.straggler, "straggler_ratio")):
            if math.isfinite(m.get(field, math.nan)):
                gauge.set(m[field])
        serving = [e for e in m["engines"] if not (e.get("lost") or e.get("left"))]
        self.engines.set(len(serving))
        versions = [e["weight_version"] for e in serving if "weight_version" in e]
        if versions:
            self.weight_version.set(min(versions))
