"""Render the operator chart offline with Helm's own engine (helm-python-sdk)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "seesaw"
RELEASE = "seesaw"
NAMESPACE = "seesaw-system"

# Value combinations every structural test runs on: the defaults plus the non-default
# corners a user is likely to pick.
COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaces": {"watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}},
    "single-standalone": {"replicas": 1, "peering": {"enabled": False}},
    "servicemonitor-digest": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "image": {"digest": "sha256:" + "ab" * 32},
        "log": {"level": "debug", "format": "json"},
    },
    "existing-serviceaccount": {
        "serviceAccount": {"create": False, "name": "ops"},
        "replicas": 3,
        "watch": {"allNamespaces": False, "namespaces": ["ml"]},
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "node-role", "operator": "In", "values": ["control"]}]}]}}},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    },
}


def pytest_generate_tests(metafunc):
    """A test that takes `values` runs once per combination above."""
    if "values" in metafunc.fixturenames:
        metafunc.parametrize("values", list(COMBINATIONS.values()), ids=list(COMBINATIONS))


@pytest.fixture(scope="session")
def chart():
    # The chart's CRD is a link into crds/: Helm logs an INFO line per load, which is noise here.
    logging.getLogger().setLevel(logging.WARNING)
    with helm.Chart.load(CHART) as loaded:
        yield loaded


class Rendered:
    """The objects a chart renders for one set of values, and its NOTES text."""

    def __init__(self, manifests: dict[str, str]):
        self.objects: list[dict[str, Any]] = []
        self.notes = ""
        for path, text in manifests.items():
            if path.endswith("NOTES.txt"):
                self.notes = text
            else:
                self.objects.extend(doc for doc in yaml.safe_load_all(text) if doc)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
        return found[0]

    @property
    def pod_spec(self) -> dict[str, Any]:
        return self.one("StatefulSet")["spec"]["template"]["spec"]

    @property
    def operator(self) -> dict[str, Any]:
        (container,) = [c for c in self.pod_spec["containers"] if c["name"] == "operator"]
        return container


@pytest.fixture(scope="session")
def render(chart):
    def _render(values: dict[str, Any] | None = None) -> Rendered:
        return Rendered(chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True))
    return _render


@pytest.fixture(scope="session")
def chart_crds(chart) -> list[dict[str, Any]]:
    """The CRD objects Helm would install from the chart's crds/ folder."""
    return [doc for crd in chart.crds for doc in yaml.safe_load_all(crd["data"]) if doc]
