"""seesaw.manifest_yaml against the real conversion: kubectl's YAML to JSON (sigs.k8s.io/yaml,
built from Debian's Go sources into tools/yaml2json), then the real API server.

Every scalar of tests/test_manifest_yaml.py's table goes through both; and a manifest whose
learning rate is `1e-6` (a string to PyYAML) is what the server accepts and what
`seesaw validate` reads."""
from __future__ import annotations

import json
import subprocess

import pytest

from real_apiserver import binaries
from seesaw import manifest_yaml
from seesaw.operator import constants as c
from seesaw.operator.kube import collection_path
from seesaw.spec import load_manifest
from kubectl_yaml_cases import SCALARS, example_text


def kubectl_json(text: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binaries() / "yaml2json")], input=text, capture_output=True, text=True, timeout=30)


def as_kubectl(text: str):
    converted = kubectl_json(text)
    assert converted.returncode == 0, converted.stderr
    return json.loads(converted.stdout)


@pytest.mark.parametrize("scalar", list(SCALARS))
def test_each_scalar_reads_as_kubectl_converts_it(scalar):
    text = f"value: {scalar}\n"
    theirs, ours = as_kubectl(text), manifest_yaml.load(text)
    assert ours == theirs and type(ours["value"]) is type(theirs["value"]), (scalar, ours, theirs)
    assert theirs["value"] == SCALARS[scalar]


def test_keys_and_quoting_as_kubectl():
    text = "a: '1e-6'\nb: \"y\"\ny: 1\n1: one\n2.5: x\n1000000.0: m\nlist: [1e3, 'on', off]\n"
    assert manifest_yaml.load(text) == as_kubectl(text)
    assert kubectl_json("null: z\n").returncode != 0  # and manifest_yaml refuses it (tests/test_manifest_yaml.py)


@pytest.mark.parametrize("scalar", [".inf", "-.Inf", ".NaN"])
def test_what_kubectl_cannot_send_is_refused(scalar):
    assert kubectl_json(f"value: {scalar}\n").returncode != 0
    with pytest.raises(manifest_yaml.ManifestYAMLError, match="cannot be sent to the API server"):
        manifest_yaml.load(f"value: {scalar}\n")


def test_a_learning_rate_of_1e_minus_6_is_accepted_by_the_server_and_by_validate(server, installed, tmp_path):
    text = example_text("1e-6")
    status, body = server.call("POST", collection_path(c.RLJOB_API_VERSION, c.RLJOB_KIND, "default"), as_kubectl(text),
                               fieldValidation="Strict")
    assert status == 201, body
    job = tmp_path / "job.yaml"
    job.write_text(text)
    ours = load_manifest(job)["spec"]["trainer"]["optimizer"]["learningRate"]
    assert ours == body["spec"]["trainer"]["optimizer"]["learningRate"] == 1e-06
