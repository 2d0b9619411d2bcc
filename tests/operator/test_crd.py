"""The RLJob CRD: a valid apiextensions/v1 object, structural, every example valid against
it. (That the server keeps every status field written: tests/apiserver.)"""
from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest

from seesaw.spec import crd, crd_version_schema, load_manifest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def test_the_crd_validates_against_the_kubernetes_schema():
    kubernetes_validate.validate(crd(), "1.34.0", strict=True)
    names = crd()["spec"]["names"]
    assert (crd()["spec"]["group"], names["kind"], names["plural"], names["shortNames"]) == ("seesaw.dev", "RLJob", "rljobs", ["rlj"])
    (version,) = crd()["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"]["status"] == {}
    # kubectl scale (and an HPA) drive the rollout replicas; the status paths must be declared
    scale = version["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.rollout.replicas"
    status = crd_version_schema()["properties"]["status"]["properties"]["rollout"]["properties"]
    assert {"replicas", "selector"} <= set(status)
    assert (scale["statusReplicasPath"], scale["labelSelectorPath"]) == (".status.rollout.replicas", ".status.rollout.selector")
    columns = {col["name"]: col["jsonPath"] for col in version["additionalPrinterColumns"]}
    assert columns["Replicas"] == ".spec.rollout.replicas" and columns["Replicas-Ready"] == ".status.rollout.readyReplicas"
    assert columns["Phase"] == ".status.phase" and columns["Iteration"] == ".status.iteration"
    assert columns["Pod-Phase"] == ".status.podPhase"
    assert columns["Reward"] == ".status.metrics.meanReward" and columns["Age"] == ".metadata.creationTimestamp"


def _walk(schema, path="", seen=None):
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_the_schema_is_structural_and_bounded_for_cel():
    for path, node in _walk(crd_version_schema()):
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert path.startswith(".spec.cluster.tolerations"), f"{path} keeps unknown fields"
            continue
        assert "type" in node, f"{path} has no type"
        if path.startswith(".spec") and node["type"] == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path}: unbounded strings make CEL cost estimates exceed the budget"
        if node["type"] == "array":
            assert "maxItems" in node, f"{path}: unbounded list"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_every_example_is_a_valid_rljob(example):
    load_manifest(example)


def test_printer_column_paths_are_declared():
    for column in crd()["spec"]["versions"][0]["additionalPrinterColumns"]:
        parts = column["jsonPath"].strip(".").split(".")
        node = crd_version_schema() if parts[0] != "metadata" else None
        for part in parts if node else []:
            node = node["properties"][part]


def test_spec_fields_that_must_not_change_have_transition_rules():
    rules = [r["rule"] for r in crd_version_schema()["properties"]["spec"]["x-kubernetes-validations"]]
    for field in ("model", "images", "cluster", "trainer", "rl", "checkpoint", "logging"):
        assert f"self.{field} == oldSelf.{field}" in rules
    # spec.rollout: every field but replicas (the scale subresource's), one by one
    rollout_fields = set(crd_version_schema()["properties"]["spec"]["properties"]["rollout"]["properties"])
    (rollout_rule,) = [r for r in rules if "oldSelf.rollout" in r]
    compared = {term.split("==")[0].strip().removeprefix("self.rollout.") for term in rollout_rule.split("&&")}
    assert compared == rollout_fields - {"replicas"}
    for mutable in ("suspend", "failurePolicy", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert f"self.{mutable} == oldSelf.{mutable}" not in rules
