"""Prometheus and Grafana for the jobs: the chart's PodMonitor finds pod 0's metrics port as
the operator builds the pod, and every query of the dashboard names metrics the code exports."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

import seesaw.operator.metrics  # noqa: F401  registers the operator's metrics
from seesaw.checkpoint_engine.job_metrics import JobMetrics
from seesaw.operator import constants as c
from seesaw.operator.build import build_pod
from seesaw.spec import load_manifest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "seesaw" / "dashboards" / "seesaw.json"
ENABLED = {"jobMetrics": {"podMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                          "grafanaDashboard": {"enabled": True}}}
# labels Prometheus adds when it scrapes (target labels, the PodMonitor's relabelling) or
# that queries use (histogram buckets)
SCRAPE_LABELS = {"namespace", "pod", "container", "endpoint", "job", "instance", "rljob", "le"}


def exported(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Each sample name a registry can expose (with _total, _bucket, ...) -> its label names."""
    return {name: set(getattr(collector, "_labelnames", ()))
            for name, collector in registry._names_to_collectors.items()}


def all_exported() -> dict[str, set[str]]:
    operator = {name: labels for name, labels in exported(REGISTRY).items() if name.startswith("seesaw_")}
    return operator | exported(JobMetrics().registry)


def pod_zero() -> dict:
    job = load_manifest(ROOT / "examples" / "tiny-reverse.yaml")
    job["metadata"].update(namespace="ml", uid="u")
    return build_pod(job, 0)


@pytest.mark.parametrize("watch", [{"allNamespaces": True}, {"allNamespaces": False, "namespaces": ["ml", "team-b"]}],
                         ids=["all-namespaces", "listed"])
def test_the_pod_monitor_scrapes_pod_zeros_metrics_port_in_the_watched_namespaces(render, watch):
    monitor = render({**ENABLED, "watch": watch}).one("PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    pod = pod_zero()
    labels = pod["metadata"]["labels"]
    selector = monitor["spec"]["selector"]
    assert selector["matchLabels"].items() <= labels.items()
    assert all(expression["key"] in labels for expression in selector["matchExpressions"])
    assert labels[c.LABEL_POD_INDEX] == "0"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    (engine,) = [k for k in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
                 if k["name"] == c.CONTAINER_CHECKPOINT_ENGINE]
    assert endpoint["port"] in {p["name"] for p in engine["ports"]} and endpoint["path"] == "/metrics"
    # the RLJob's name becomes the `rljob` label the dashboard selects on
    (relabel,) = endpoint["relabelings"]
    meta_label = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", c.LABEL_JOB)
    assert relabel["sourceLabels"] == [meta_label] and relabel["targetLabel"] == "rljob"
    namespaces = monitor["spec"]["namespaceSelector"]
    assert namespaces == ({"any": True} if watch["allNamespaces"] else {"matchNames": watch["namespaces"]})


def test_nothing_for_prometheus_or_grafana_unless_asked(render):
    rendered = render({})
    assert not rendered.all("PodMonitor")
    assert not [m for m in rendered.all("ConfigMap") if m["metadata"]["name"].endswith("-dashboard")]


def test_the_dashboard_configmap_carries_the_dashboard_file(render):
    (config,) = [m for m in render(ENABLED).all("ConfigMap") if m["metadata"]["name"].endswith("-dashboard")]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["seesaw.json"]) == json.loads(DASHBOARD.read_text())


def queries(dashboard: dict) -> list[str]:
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    return found


def test_every_dashboard_query_names_exported_metrics_and_their_labels():
    names = all_exported()
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = queries(dashboard)
    assert len(exprs) >= 15
    used = set()
    for expr in exprs:
        metrics = set(re.findall(r"\bseesaw_[a-z_]+\b", expr))
        assert metrics, f"no Seesaw metric in {expr!r}"
        unknown = metrics - set(names)
        assert not unknown, f"{expr!r} names metrics nobody exports: {unknown}"
        used |= metrics
        labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
        for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            labels |= {label.strip() for label in clause.split(",") if label.strip()}
        labels |= set(re.findall(r"label_values\(\s*\w+\s*,\s*(\w+)\s*\)", expr))
        known = SCRAPE_LABELS.union(*(names[m] for m in metrics))
        assert labels <= known, f"{expr!r} uses labels its metrics do not have: {labels - known}"
    # and the dashboard shows every metric the job exports
    family = re.compile(r"_(total|bucket|sum|count|created)$")
    job_metrics = {family.sub("", name) for name in exported(JobMetrics().registry)}
    assert job_metrics <= {family.sub("", name) for name in used}
