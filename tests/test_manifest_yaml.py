"""Manifests read as kubectl sends them: go-yaml v2's scalar rules through sigs.k8s.io/yaml,
then the JSON the API server decodes. The table's expected values are that conversion's;
tests/apiserver/test_yaml_as_kubectl.py checks the same table against the real Go code."""
from __future__ import annotations

import json

import pytest
import yaml

from seesaw import manifest_yaml
from seesaw.spec import SpecError, load_manifest

from kubectl_yaml_cases import SCALARS, example_text

@pytest.mark.parametrize("scalar,expected", list(SCALARS.items()))
def test_a_plain_scalar_reads_as_kubectl_sends_it(scalar, expected):
    got = manifest_yaml.load(f"value: {scalar}\n")["value"]
    assert got == expected and type(got) is type(expected), (scalar, got, expected)


def test_quoted_scalars_stay_strings_and_keys_become_strings():
    doc = manifest_yaml.load("a: '1e-6'\nb: \"y\"\ny: 1\n1: one\n2.5: x\n1000000.0: m\n")
    assert doc == {"a": "1e-6", "b": "y", "true": 1, "1": "one", "2.5": "x", "1e+06": "m"}
    with pytest.raises(manifest_yaml.ManifestYAMLError, match="a map key is null"):
        manifest_yaml.load("null: z\n")


@pytest.mark.parametrize("scalar", [".inf", "-.Inf", ".NaN", "+.INF"])
def test_infinities_and_nan_cannot_be_sent(scalar):
    with pytest.raises(manifest_yaml.ManifestYAMLError, match=r"spec\.rl\.learningRate: .* cannot be sent to the API server"):
        manifest_yaml.load(f"spec:\n  rl:\n    learningRate: {scalar}\n")


def test_json_manifests_read_the_same():
    assert manifest_yaml.load('{"spec": {"lr": 1e-6, "n": 2.0, "s": "y"}}') == {"spec": {"lr": 1e-06, "n": 2, "s": "y"}}


def test_a_learning_rate_of_1e_minus_6_is_accepted_as_kubectl_sends_it(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(example_text("1e-6"))
    assert isinstance(yaml.safe_load(job.read_text())["spec"]["trainer"]["optimizer"]["learningRate"], str)  # PyYAML's reading
    assert load_manifest(job)["spec"]["trainer"]["optimizer"]["learningRate"] == 1e-06
    job.write_text(example_text(".inf"))
    with pytest.raises(SpecError, match=r"spec\.trainer\.optimizer\.learningRate: inf cannot be sent"):
        load_manifest(job)


def test_a_wrong_kind_is_named(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(example_text("0.001").replace("kind: RLJob", "kind: RLjob"))
    with pytest.raises(SpecError, match=r"kind: expected RLJob \(apiVersion seesaw.dev/v1alpha1\), got 'RLjob'"):
        load_manifest(job)



def test_validate_reads_every_document_of_files_and_stdin_and_names_the_bad_one(tmp_path, capsys, monkeypatch):
    import io

    from seesaw.cli import main

    good = example_text("0.001")
    two = tmp_path / "two.yaml"
    two.write_text(good + "---\n" + good.replace("name: lr", "name: lr2"))
    as_json = tmp_path / "job.json"
    as_json.write_text(json.dumps(manifest_yaml.load(good)))
    monkeypatch.setattr("sys.stdin", io.StringIO(good))
    assert main(["validate", str(two), str(as_json), "-"]) == 0
    out = capsys.readouterr().out
    assert f"{two} (document 1 of 2): valid RLJob lr" in out and f"{two} (document 2 of 2): valid RLJob lr2" in out
    assert f"{as_json}: valid RLJob lr" in out and "<stdin>: valid RLJob lr" in out
    two.write_text(good + "---\n" + good.replace("learningRate: 0.001", "learningRate: fast"))
    assert main(["validate", str(two)]) == 2
    assert f"{two} (document 2 of 2): spec.trainer.optimizer.learningRate" in capsys.readouterr().err
    two.write_text(good + "---\n" + good)
    with pytest.raises(SpecError, match=r"expected exactly one RLJob document, found 2"):
        load_manifest(two)  # seesaw run takes one job
