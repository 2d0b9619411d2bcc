"""`seesaw validate` against the upstream API server, manifest by manifest: the same verdict,
and for a refusal the same field named. The corpus is generated from the CRD's schema (a
wrong type, each bound, each enum) plus what the schema alone does not say: each CEL rule,
unknown fields inside and outside spec, nulls, integral floats, an integer beyond int64,
the name rule, status on create, metadata as the server checks it, and plain YAML scalars that
PyYAML and kubectl read differently. Every case is YAML text, as a user writes it: the server
gets what kubectl would send for it (tools/yaml2json, sigs.k8s.io/yaml's conversion), seesaw
reads the same text as `seesaw validate` does."""
from __future__ import annotations

import copy
import itertools
import json
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from seesaw.operator import constants as c
from seesaw.operator.kube import collection_path
from real_apiserver import binaries
from seesaw.spec import SpecError, crd_version_schema, load_manifests
from seesaw import manifest_yaml

REPO = Path(__file__).resolve().parents[2]
BASE = manifest_yaml.load((REPO / "examples" / "tiny-reverse.yaml").read_text())
_names = itertools.count()


def with_value(path: str, value: Any, base: dict | None = None) -> dict:
    """The base manifest with `path` (dotted, from the root) set to `value`."""
    manifest = copy.deepcopy(base or BASE)
    *parents, last = path.split(".")
    node = manifest
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return manifest


WRONG_TYPE = {"integer": "three", "number": "fast", "string": 7, "boolean": "yes", "object": "x", "array": "x"}


def schema_cases(schema: dict, path: str) -> Iterator[tuple[str, dict]]:
    """For every field of spec: a value of the wrong type; below its minimum, above its
    maximum; outside its enum."""
    for name, sub in (schema.get("properties") or {}).items():
        here = f"{path}.{name}"
        kind = sub.get("type")
        if kind in WRONG_TYPE:
            yield f"{here}:type", with_value(here, WRONG_TYPE[kind])
        if "minimum" in sub:
            low = sub["minimum"] if sub.get("exclusiveMinimum") else sub["minimum"] - 1
            yield f"{here}:minimum", with_value(here, low if kind == "integer" else float(low) - (0 if sub.get("exclusiveMinimum") else 0.5))
        if "maximum" in sub:
            yield f"{here}:maximum", with_value(here, sub["maximum"] + 1)
        if "enum" in sub:
            yield f"{here}:enum", with_value(here, "not-" + str(sub["enum"][0]))
        if "pattern" in sub:  # the names around the pattern's edges, refused and let through
            for value in ("-leading-dash", "trailing.", "Upper", "two words", "a/b", "a", "my_verifier.v2"):
                yield f"{here}:pattern:{value}", with_value(here, value)
        if "maxLength" in sub:
            yield f"{here}:maxLength", with_value(here, "x" * (sub["maxLength"] + 1))
        if kind == "object" and sub.get("properties"):
            yield from schema_cases(sub, here)


def rule_cases() -> Iterator[tuple[str, dict]]:
    gpu = {"nodes": 1, "gpusPerNode": 4}
    yield "cel:rollout-tp-exceeds-gpus", with_value("spec.rollout.tensorParallel", 8, with_value("spec.cluster", gpu))
    yield "cel:rollout-tp-divides-gpus", with_value("spec.rollout.tensorParallel", 3, with_value("spec.cluster", gpu))
    yield "cel:engines-times-tp", with_value("spec.rollout.enginesPerPod", 3, with_value("spec.rollout.tensorParallel", 2, with_value("spec.cluster", gpu)))
    yield "cel:trainer-tp-pp-divides", with_value("spec.trainer.tensorParallel", 3, with_value("spec.cluster", gpu))
    yield "cel:expert-parallel", with_value("spec.trainer.expertParallel", 8, with_value("spec.cluster", gpu))
    yield "cel:model-path-or-generate", with_value("spec.model", {"dtype": "float32"})
    yield "cel:replicas-need-mooncake", with_value("spec.rollout.replicas", 1, with_value("spec.weightSync.channel", "cuda-ipc"))
    torch = with_value("spec.trainer.backend", "torch", with_value("spec.cluster", gpu))
    yield "cel:torch-trainer-tp", with_value("spec.trainer.tensorParallel", 2, torch)
    yield "cel:torch-trainer-pp", with_value("spec.trainer.pipelineParallel", 2, torch)
    yield "cel:torch-trainer-ep", with_value("spec.trainer.expertParallel", 2, torch)
    yield "cel:name-too-long", with_value("metadata.name", "a" * 53)
    yield "cel:name-not-a-label", with_value("metadata.name", "Tiny_Reverse")
    # each rule barely satisfied: the edge a rule must let through
    yield "cel:ok-rollout-tp-equals-gpus", with_value("spec.rollout.tensorParallel", 4, with_value("spec.cluster", gpu))
    yield "cel:ok-rollout-tp-divides-gpus", with_value("spec.rollout.tensorParallel", 2, with_value("spec.cluster", gpu))
    yield "cel:ok-engines-times-tp-fill-the-gpus", with_value("spec.rollout.enginesPerPod", 2, with_value("spec.rollout.tensorParallel", 2, with_value("spec.cluster", gpu)))
    yield "cel:ok-trainer-tp-pp-equals-gpus", with_value("spec.trainer.pipelineParallel", 2, with_value("spec.trainer.tensorParallel", 2, with_value("spec.cluster", gpu)))
    yield "cel:ok-expert-parallel-equals-gpus", with_value("spec.trainer.expertParallel", 4, with_value("spec.cluster", gpu))
    yield "cel:ok-replicas-with-mooncake", with_value("spec.rollout.replicas", 1, with_value("spec.weightSync.channel", "mooncake-tcp"))
    yield "cel:ok-megatron-trainer-tp", with_value("spec.trainer.tensorParallel", 2, with_value("spec.trainer.backend", "megatron", with_value("spec.cluster", gpu)))
    yield "cel:ok-name-of-52", with_value("metadata.name", "a" * 52)
    yield "cel:ok-name-with-digits-and-dashes", with_value("metadata.name", "a-1-b2")


def other_cases() -> Iterator[tuple[str, dict]]:
    yield "ok:base", copy.deepcopy(BASE)
    yield "ok:null-is-dropped-then-defaulted", with_value("spec.rollout.temperature", None)
    yield "ok:integral-float", with_value("spec.rl.iterations", 60.0)
    yield "ok:status-on-create-is-discarded", with_value("status", {"phase": "Bogus"})
    yield "ok:empty-optional-object", with_value("spec.failurePolicy", {})
    yield "unknown:inside-spec", with_value("spec.rl.iteratons", 5)
    yield "unknown:outside-spec", with_value("specs", {"rl": {}})
    yield "unknown:deep-inside-spec", with_value("spec.rl.objective.weight", 1)
    yield "unknown:inside-rollout", with_value("spec.rollout.topp", 0.5)
    yield "unknown:next-to-a-known-one", with_value("spec.trainer.optimizer.lr", 0.1)
    yield "values:int64-overflow", with_value("spec.rl.seed", 2 ** 64)
    yield "values:required-model", {k: v for k, v in copy.deepcopy(BASE).items() if k != "spec"} | {"spec": {"cluster": {"nodes": 1}}}
    yield "values:fractional-integer", with_value("spec.rl.iterations", 2.5)
    yield "values:negative-zero-integer", with_value("spec.rl.iterations", -0.0)
    yield "values:list-for-object", with_value("spec.rl", [])


def metadata_cases() -> Iterator[tuple[str, dict]]:
    """ObjectMeta as the server checks it on create (seesaw/object_meta.py)."""
    def meta(**fields) -> dict:
        return with_value("metadata", fields)

    yield "metadata:name-with-a-trailing-newline", meta(name="tiny\n")
    yield "metadata:neither-name-nor-generate-name", meta()
    yield "metadata:no-metadata", {k: v for k, v in copy.deepcopy(BASE).items() if k != "metadata"}
    yield "ok:generate-name", meta(generateName="tiny-")
    yield "metadata:generate-name-not-a-label", meta(generateName="Tiny_")
    yield "metadata:generate-name-too-long", meta(generateName="a" * 50)
    yield "metadata:resource-version-on-create", meta(name="rv", resourceVersion="12")
    yield "metadata:unknown-field", meta(name="unknown-meta", nmae="x")
    yield "metadata:annotation-not-a-string", meta(name="ann", annotations={"seesaw.dev/note": 1})
    yield "metadata:annotation-key-invalid", meta(name="ann-key", annotations={"bad key": "x"})
    yield "ok:annotations", meta(name="ann-ok", annotations={"seesaw.dev/note": "a note", "plain": ""})
    yield "metadata:label-value-invalid", meta(name="lbl", labels={"kueue.x-k8s.io/queue-name": "bad value!"})
    yield "metadata:label-value-too-long", meta(name="lbl-long", labels={"team": "a" * 64})
    yield "metadata:label-key-invalid", meta(name="lbl-key", labels={"-team": "a"})
    yield "metadata:label-key-two-slashes", meta(name="lbl-slash", labels={"a/b/c": "a"})
    yield "metadata:label-not-a-string", meta(name="lbl-int", labels={"team": 7})
    yield "ok:labels", meta(name="lbl-ok", labels={"kueue.x-k8s.io/queue-name": "team-a", "tier": "", "a.b/c_d": "e.f"})


def yaml_cases() -> Iterator[tuple[str, str]]:
    """Plain scalars that PyYAML and kubectl read differently, in a field of the example, as YAML text."""
    for name, path, scalar in [
        ("exponent-learning-rate", "spec.trainer.optimizer.learningRate", "1e-6"),
        ("exponent-temperature", "spec.rollout.temperature", "1e0"),
        ("hex-iterations", "spec.rl.iterations", "0x10"),
        ("octal-seed", "spec.rl.seed", "0755"),
        ("zero-padded-iterations", "spec.rl.iterations", "08"),
        ("sexagesimal-iterations", "spec.rl.iterations", "1:30"),
        ("underscored-iterations", "spec.rl.iterations", "1_0"),
        ("y-for-suspend", "spec.suspend", "y"),
        ("yes-for-suspend", "spec.suspend", "yes"),
        ("n-for-a-string", "spec.prompts.systemPrompt", "n"),
        ("date-for-a-string", "spec.prompts.systemPrompt", "2026-12-01"),
        ("infinite-temperature", "spec.rollout.temperature", ".inf"),
        ("nan-learning-rate", "spec.trainer.optimizer.learningRate", ".nan"),
        ("big-integer-seed", "spec.rl.seed", "99999999999999999999"),
        ("binary-digits", "spec.prompts.digits", "0b11"),
    ]:
        text = yaml.safe_dump(with_value(path, "SCALAR-PLACEHOLDER"), sort_keys=False)
        yield f"yaml:{name}", text.replace("SCALAR-PLACEHOLDER", scalar)


CASES = dict(itertools.chain(
    ((name, yaml.safe_dump(manifest, sort_keys=False)) for name, manifest in itertools.chain(
        schema_cases(crd_version_schema()["properties"]["spec"], "spec"), rule_cases(), other_cases(), metadata_cases())),
    yaml_cases()))
FLOOR = 5  # cases per family at least


def family(case: str) -> str:
    """`cel`, `metadata`, `yaml`, ... for hand-written cases; `schema:<check>` for generated ones."""
    head, _, check = case.partition(":")
    return f"schema:{check.split(':')[0]}" if head.startswith("spec.") else head


def test_every_family_has_its_floor_of_cases():
    counts: dict[str, int] = {}
    for case in CASES:
        counts[family(case)] = counts.get(family(case), 0) + 1
    print("cases per family: " + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())))
    assert {"cel", "metadata", "yaml", "unknown", "values", "ok", "schema:type", "schema:enum"} <= set(counts)
    assert all(count >= FLOOR for count in counts.values()), counts


def kubectl_json(text: str) -> dict | None:
    """The JSON kubectl sends for this YAML (tools/yaml2json: sigs.k8s.io/yaml), or None where
    kubectl cannot convert it (it then sends nothing)."""
    converted = subprocess.run([str(binaries() / "yaml2json")], input=text, capture_output=True, text=True, timeout=30)
    return json.loads(converted.stdout) if converted.returncode == 0 else None


def server_verdict(server, text: str) -> tuple[bool, str]:
    """(accepted, what kubectl or the server said)."""
    manifest = kubectl_json(text)
    if manifest is None:
        return False, "kubectl could not convert it to JSON"
    if manifest.get("metadata", {}).get("name") == BASE["metadata"]["name"]:  # the name cases keep theirs
        manifest["metadata"]["name"] = f"case-{next(_names)}"
    status, body = server.call("POST", collection_path(c.RLJOB_API_VERSION, c.RLJOB_KIND, "differential"), manifest,
                               fieldValidation="Strict")
    if status == 201:
        return True, ""
    causes = [c.get("field", "") for c in (body.get("details") or {}).get("causes") or []]
    return False, f"{status} {body.get('message', '')} causes={causes}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_seesaw_validate_agrees_with_the_api_server(server, installed, case, tmp_path):
    text = CASES[case]
    accepted, said = server_verdict(server, text)
    job = tmp_path / "job.yaml"
    job.write_text(text)
    try:
        load_manifests(job)
        ours, field = True, ""
    except SpecError as err:
        ours, field = False, err.field
    assert ours == accepted, f"server {'accepted' if accepted else 'refused: ' + said}; seesaw {'accepted' if ours else 'refused ' + field}"
    if not accepted and "kubectl could not convert" not in said:
        assert field and any(name in said for name in server_names(field)), f"seesaw names {field!r}; the server said {said}"


def server_names(field: str) -> list[str]:
    """How the server may name a field seesaw names: whole; a metadata field by its last part too
    (its decoder says ObjectMeta.labels, its create check resourceVersion), and a generateName by
    the name it generated from it."""
    if not field.startswith("metadata."):
        return [field]
    return [field, field.rsplit(".", 1)[-1]] + (["metadata.name"] if field == "metadata.generateName" else [])
