"""Event rate limiting, and the status reporter's payloads."""
from __future__ import annotations

import math

from seesaw.checkpoint_engine.status_reporter import NoopReporter, StatusReporter, reporter_from_env
from seesaw.operator.events import EventLimiter, EventRecorder


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_burst_then_one_event_per_refill_and_the_dropped_are_counted():
    clock = Clock()
    posted = []
    recorder = EventRecorder(lambda obj, t, r, m: posted.append(m), EventLimiter(burst=3, refill_seconds=10, clock=clock))
    obj = {"metadata": {"uid": "u", "name": "j"}}
    for i in range(10):
        recorder.record(obj, "Normal", "PhaseChanged", f"change {i}")
    assert posted == ["change 0", "change 1", "change 2"]
    clock.t = 10
    recorder.record(obj, "Normal", "PhaseChanged", "change 10")
    assert posted[-1] == "change 10 (7 earlier event(s) suppressed by rate limiting)"


def test_identical_events_are_dropped_but_warnings_skip_the_bucket():
    clock = Clock()
    posted = []
    recorder = EventRecorder(lambda obj, t, r, m: posted.append((t, m)), EventLimiter(burst=1, refill_seconds=100, clock=clock))
    obj = {"metadata": {"uid": "u", "name": "j"}}
    recorder.record(obj, "Normal", "GangReady", "all ready")
    recorder.record(obj, "Normal", "GangReady", "all ready")
    recorder.record(obj, "Warning", "Restarting", "pod j-1 failed")
    assert [m for _, m in posted] == ["all ready", "pod j-1 failed (1 earlier event(s) suppressed by rate limiting)"]


def test_reporter_maps_metrics_drops_non_finite_and_limits_checkpoint_events():
    clock = Clock()
    calls = []

    def request(method, path, body, ctype):
        calls.append((method, path, body, ctype))
        return {"metadata": {"uid": "uid-1"}} if method == "GET" else {}

    reporter = StatusReporter("j", "n", request, clock=clock)
    reporter.progress(4, "iteration", {"mean_reward": 0.5, "loss": math.nan, "sync_bytes": 7.0, "eval_accuracy": None})
    method, path, body, ctype = calls[-1]
    assert (method, path, ctype) == ("PATCH", "/apis/seesaw.dev/v1alpha1/namespaces/n/rljobs/j/status", "application/merge-patch+json")
    assert body["status"]["metrics"] == {"meanReward": 0.5, "syncBytes": 7} and body["status"]["iteration"] == 4
    for i in range(3):
        reporter.progress(5 + i, "checkpoint", {"path": "/c/latest.pt"})
    events = [b for m, p, b, _ in calls if m == "POST"]
    assert len(events) == 1 and events[0]["reason"] == "CheckpointWritten"
    assert events[0]["involvedObject"]["uid"] == "uid-1"
    clock.t = 61
    reporter.progress(9, "checkpoint", {"path": "/c/latest.pt"})
    events = [b for m, p, b, _ in calls if m == "POST"]
    assert "(2 more since the last event)" in events[-1]["message"]


def test_reporter_phase_patches_are_throttled_and_failures_never_raise():
    clock = Clock()
    calls = []
    reporter = StatusReporter("j", "n", lambda *a: calls.append(a) or {}, clock=clock)
    for phase in ("rollout", "train", "sync"):
        reporter.progress(1, phase, {})
    assert [c[2]["status"]["podPhase"] for c in calls] == ["rollout"]

    def broken(*_):
        raise ConnectionError("API server unreachable")

    StatusReporter("j", "n", broken).progress(1, "iteration", {"mean_reward": 1.0})  # no exception


def test_outside_a_cluster_the_reporter_does_nothing(monkeypatch):
    for var in ("KUBERNETES_SERVICE_HOST", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SEESAW_REPORT_STATUS", "true")
    monkeypatch.setenv("SEESAW_JOB_NAME", "j")
    monkeypatch.setenv("SEESAW_NAMESPACE", "n")
    assert type(reporter_from_env()) is NoopReporter
