"""The RLJob CRD on the upstream Kubernetes API server: it installs (its CEL rules compile
within the cost budget), the examples are accepted and defaulted as seesaw.spec defaults
them, the scale subresource moves spec.rollout.replicas, and the rules refuse what they must."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from seesaw.checkpoint_engine.status_reporter import METRICS, RESULT
from seesaw.operator import constants as c
from seesaw.operator.reconcile import decide
from seesaw.operator.kube import collection_path
from seesaw.spec import load_manifest
from rljob_edits import IMMUTABLE_CHANGES
from seesaw import manifest_yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


def jobs(namespace: str) -> str:
    return collection_path(c.RLJOB_API_VERSION, c.RLJOB_KIND, namespace)


def integral(value: Any) -> Any:
    """JSON as the server writes it back: 60.0 is 60."""
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def test_the_crd_installs_and_its_cel_rules_compile(installed):
    assert installed["Established"]["status"] == "True"
    assert installed["NamesAccepted"]["status"] == "True"
    assert "NonStructuralSchema" not in installed


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_accepted_and_defaulted_as_seesaw_spec_defaults_it(server, installed, example):
    manifest = load_manifest(example)  # seesaw's own defaults
    raw = manifest_yaml.load(example.read_text())
    status, created = server.call("POST", jobs("examples"), raw, fieldValidation="Strict")
    assert status == 201, created.get("message", created)
    assert integral(created["spec"]) == integral(manifest["spec"])


def new_job(server, name: str) -> dict:
    raw = manifest_yaml.load((REPO / "examples" / "tiny-reverse.yaml").read_text())
    raw["metadata"] = {"name": name}
    status, created = server.call("POST", jobs("scale"), raw)
    assert status == 201, created.get("message", created)
    return created


def test_the_scale_subresource_moves_rollout_replicas_and_reads_the_status(server, installed):
    created = new_job(server, "elastic")
    path = f"{jobs('scale')}/elastic"
    status, scale = server.call("PATCH", f"{path}/scale", {"spec": {"replicas": 3}}, "application/merge-patch+json")
    assert status == 200, scale.get("message", scale)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3
    job = server.call("GET", path)[1]
    assert job["spec"]["rollout"]["replicas"] == 3
    assert job["metadata"]["generation"] == created["metadata"]["generation"] + 1
    selector = "seesaw.dev/job=elastic,app.kubernetes.io/component=rollout-replica"
    status, _ = server.call("PATCH", f"{path}/status", {"status": {"rollout": {"replicas": 2, "readyReplicas": 1,
                                                                               "desiredReplicas": 3, "selector": selector}}},
                     "application/merge-patch+json")
    assert status == 200
    scale = server.call("GET", f"{path}/scale")[1]
    assert scale["status"] == {"replicas": 2, "selector": selector}
    status, refused = server.call("PATCH", f"{path}/scale", {"spec": {"replicas": 300}}, "application/merge-patch+json")
    assert status == 422 and "spec.rollout.replicas" in refused["message"], refused


def test_spec_rollout_is_immutable_except_its_replicas(server, installed):
    new_job(server, "fixed")
    path = f"{jobs('scale')}/fixed"
    status, _ = server.call("PATCH", path, {"spec": {"rollout": {"replicas": 2}}}, "application/merge-patch+json")
    assert status == 200
    status, refused = server.call("PATCH", path, {"spec": {"rollout": {"temperature": 0.5}}}, "application/merge-patch+json")
    assert status == 422, refused
    assert "spec.rollout is immutable except spec.rollout.replicas" in refused["message"]
    status, refused = server.call("PATCH", path, {"spec": {"rl": {"iterations": 7}}}, "application/merge-patch+json")
    assert status == 422 and "spec.rl is immutable" in refused["message"], refused


def test_the_name_and_cross_field_rules_are_enforced_by_the_server(server, installed):
    raw = manifest_yaml.load((REPO / "examples" / "tiny-reverse.yaml").read_text())
    raw["metadata"] = {"name": "a" * 53}
    status, refused = server.call("POST", jobs("rules"), raw)
    assert status == 422 and "metadata.name must be a DNS label of at most 52 characters" in refused["message"], refused
    raw["metadata"] = {"name": "experts"}
    raw["spec"]["cluster"] = {"nodes": 1, "gpusPerNode": 2}
    raw["spec"]["trainer"] = dict(raw["spec"].get("trainer") or {}, expertParallel=4)
    status, refused = server.call("POST", jobs("rules"), raw)
    assert status == 422 and "trainer.expertParallel must not exceed the total GPU count" in refused["message"], refused




@pytest.mark.parametrize("block", sorted(IMMUTABLE_CHANGES))
def test_every_immutable_block_refuses_an_update_naming_itself(server, installed, block):
    name = f"immutable-{block.lower()}"
    new_job(server, name)
    status, refused = server.call("PATCH", f"{jobs('scale')}/{name}", {"spec": {block: IMMUTABLE_CHANGES[block]}},
                           "application/merge-patch+json")
    assert status == 422, refused
    assert f"spec.{block}: Invalid value" in refused["message"] and f"spec.{block} is immutable" in refused["message"]


def test_managed_by_cannot_be_added_changed_or_removed(server, installed):
    new_job(server, "unmanaged")
    path = f"{jobs('scale')}/unmanaged"
    status, refused = server.call("PATCH", path, {"spec": {"managedBy": "kueue.x-k8s.io/multikueue"}},
                           "application/merge-patch+json")
    assert status == 422 and "spec.managedBy is immutable" in refused["message"], refused
    raw = manifest_yaml.load((REPO / "examples" / "tiny-reverse.yaml").read_text())
    raw["metadata"] = {"name": "managed"}
    raw["spec"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    assert server.call("POST", jobs("scale"), raw)[0] == 201
    status, refused = server.call("PATCH", f"{jobs('scale')}/managed", {"spec": {"managedBy": None}},
                           "application/merge-patch+json")
    assert status == 422 and "spec.managedBy is immutable" in refused["message"], refused
    status, _ = server.call("PATCH", f"{jobs('scale')}/managed", {"spec": {"suspend": True}}, "application/merge-patch+json")
    assert status == 200, "the mutable fields still change"


def test_every_status_field_the_operator_and_the_reporter_write_is_kept(server, installed):
    """The server prunes what the schema does not declare, silently: write each status the
    code writes through the status subresource and read it back whole."""
    created = new_job(server, "status")
    job = {**created, "spec": created["spec"] | {"activeDeadlineSeconds": 10}}
    now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    failed_pod = {"metadata": {"name": "status-0", "labels": {c.LABEL_POD_INDEX: "0", c.LABEL_ATTEMPT: "0"}},
                  "status": {"phase": "Failed", "reason": "Evicted"}}
    reporter = {"iteration": 3, "podPhase": "train", "lastProgressTime": "2030-01-01T00:00:00Z",
                "metrics": {field: 1.5 for field in METRICS.values()} | {"syncBytes": 5},
                "result": {field: 0.5 for field in RESULT.values()},
                "lastCheckpoint": {"iteration": 3, "path": "/c", "time": "2030-01-01T00:00:00Z"}}
    for written in (decide(job, [], now).status, decide(job, [failed_pod], now).status, reporter):
        status, current = server.call("GET", f"{jobs('scale')}/status")
        status, stored = server.call("PUT", f"{jobs('scale')}/status/status",
                                     {**current, "status": written})
        assert status == 200, stored.get("message", stored)
        assert integral(stored["status"]) == integral(written), "the API server pruned part of this status"
