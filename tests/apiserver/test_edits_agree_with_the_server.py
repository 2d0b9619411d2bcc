"""`seesaw validate NEW --against OLD` against the upstream API server's verdict on the same
edit (a merge patch of the stored job): the same verdict, and a refusal names the same field
in the same words (the CRD's transition rules)."""
from __future__ import annotations

import copy
import itertools

import pytest

from seesaw.operator import constants as c
from seesaw.operator.kube import collection_path
from seesaw.spec import SpecError, check_edit, validate_manifest
from pathlib import Path

import yaml

from rljob_edits import IMMUTABLE_CHANGES
from seesaw import manifest_yaml

BASE = manifest_yaml.load((Path(__file__).resolve().parents[2] / "examples" / "tiny-reverse.yaml").read_text())

_names = itertools.count()
EDITS = {
    **{f"refused:{block}": {"spec": {block: change}} for block, change in IMMUTABLE_CHANGES.items()},
    "refused:rollout-temperature": {"spec": {"rollout": {"temperature": 0.5}}},
    "refused:managed-by-added": {"spec": {"managedBy": "kueue.x-k8s.io/multikueue"}},
    "refused:logging": {"spec": {"logging": {"samplePrompts": 3}}},
    "ok:replicas-scaled": {"spec": {"rollout": {"replicas": 2}}},
    "ok:suspended": {"spec": {"suspend": True}},
    "ok:failure-policy": {"spec": {"failurePolicy": {"maxRestarts": 5}}},
    "ok:labels": {"metadata": {"labels": {"team": "b"}}},
}


def merged(base: dict, patch: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edit_gets_the_servers_verdict(server, installed, edit):
    old = merged(BASE, {"metadata": {"name": f"edit-{next(_names)}"}})
    path = collection_path(c.RLJOB_API_VERSION, c.RLJOB_KIND, "default")
    assert server.call("POST", path, old)[0] == 201
    status, body = server.call("PATCH", f"{path}/{old['metadata']['name']}", EDITS[edit], "application/merge-patch+json")
    try:
        check_edit(validate_manifest(merged(old, EDITS[edit])), validate_manifest(old))
        ours, field, problem = True, "", ""
    except SpecError as err:
        ours, field, problem = False, err.field, err.problem
    assert ours == (status == 200), f"server {status} {body.get('message', '')}; seesaw {'accepted' if ours else field}"
    if not ours:
        assert f"{field}: Invalid value" in body["message"] and problem in body["message"], (field, problem, body["message"])


def test_an_edit_may_not_rename_the_job():
    renamed = merged(BASE, {"metadata": {"name": "other"}})
    with pytest.raises(SpecError, match="metadata.name: field is immutable"):
        check_edit(validate_manifest(renamed), validate_manifest(BASE))


def test_every_transition_rule_of_the_crd_is_one_the_checker_evaluates():
    from seesaw.spec import crd_version_schema
    from seesaw.transitions import rule_holds, transition_rules

    rules = list(transition_rules(crd_version_schema()["properties"]["spec"]))
    assert len(rules) >= 13
    spec = validate_manifest(BASE)["spec"]
    for path, rule, _ in rules:
        side = spec
        for part in path.split(".")[1:]:
            side = side.get(part, {})
        assert rule_holds(rule["rule"], side, side), rule["rule"]  # evaluates (UnknownRule otherwise), and holds unchanged


def test_validate_against_names_the_immutable_field_and_passes_a_scale(tmp_path, capsys):
    from seesaw.cli import main

    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(yaml.safe_dump(BASE))
    new.write_text(yaml.safe_dump(merged(BASE, {"spec": {"rollout": {"replicas": 3}}})))
    assert main(["validate", str(new), "--against", str(old)]) == 0
    assert f"{new}: a valid edit of {old}" in capsys.readouterr().out
    new.write_text(yaml.safe_dump(merged(BASE, {"spec": {"rl": {"iterations": 99}}})))
    assert main(["validate", str(new), "--against", str(old)]) == 2
    assert "spec.rl: spec.rl is immutable: delete and re-create the RLJob to change it" in capsys.readouterr().err
