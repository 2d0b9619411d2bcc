"""Load an RLJob manifest, validate it against the CRD's schema and fill in its defaults.

The CRD in crds/ is the one source of the job's configuration: this module applies its
openAPIV3Schema the way the API server does (structural defaults, then validation), so
`seesaw run`, the operator and the workers all see the same resolved spec.
"""
from __future__ import annotations

import copy
import functools
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from seesaw import manifest_yaml, spec_reads
from seesaw.checkpoint_engine.weights import channel_rules
from seesaw.object_meta import MetadataError, check_metadata

API_GROUP = "seesaw.dev"
API_VERSION = "v1alpha1"
KIND = "RLJob"
PLURAL = "rljobs"
CRD_FILE = "seesaw.dev_rljobs.yaml"


class SpecError(ValueError):
    """A manifest that does not match the RLJob schema; the message names the field."""

    def __init__(self, field: str, problem: str, source: str = "") -> None:
        self.field = field
        self.problem = problem
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {problem}")


@functools.cache
def crd() -> dict[str, Any]:
    text = resources.files("seesaw.crds").joinpath(CRD_FILE).read_text()
    return yaml.safe_load(text)


def crd_version_schema(version: str = API_VERSION) -> dict[str, Any]:
    for entry in crd()["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise KeyError(version)


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill `default`s into `value` recursively, as the API server does for structural schemas."""
    if not isinstance(value, dict) or schema.get("type") != "object":
        if isinstance(value, list) and "items" in schema:
            return [apply_defaults(schema["items"], item) for item in value]
        return value
    out = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        if name in out:
            out[name] = apply_defaults(sub, out[name])
    return out


def _field_path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "<root>"


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    field = _field_path(error)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        field = f"{field}.{missing}" if field != "<root>" else missing
        return field, "is required"
    if error.validator == "type":
        return field, f"expected {error.validator_value}, got {type(error.instance).__name__} {error.instance!r}"
    if error.validator == "enum":
        return field, f"expected one of {error.validator_value}, got {error.instance!r}"
    if error.validator in ("minimum", "maximum"):
        bound = "at least" if error.validator == "minimum" else "at most"
        if error.schema.get("exclusiveMinimum") and error.validator == "minimum":
            bound = "greater than"
        return field, f"expected {bound} {error.validator_value}, got {error.instance!r}"
    if error.validator == "pattern":
        return field, f"expected a name matching {error.validator_value}, got {error.instance!r}"
    if error.validator == "additionalProperties":
        return field, error.message
    return field, error.message


def _unknown_fields(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Fields the schema does not declare: the API server would prune them silently, so
    (like `kubectl apply --validate=strict`) we refuse them, naming each."""
    if isinstance(value, list) and "items" in schema:
        return [f for i, item in enumerate(value) for f in _unknown_fields(schema["items"], item, f"{path}[{i}]")]
    if not isinstance(value, dict) or "properties" not in schema:
        return []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    for name, item in value.items():
        sub = schema["properties"].get(name)
        if sub is None:
            found.append(f"{path}.{name}" if path else name)
        else:
            found.extend(_unknown_fields(sub, item, f"{path}.{name}" if path else name))
    return found


TOP_LEVEL = ("apiVersion", "kind", "metadata", "spec", "status")
INT64 = 2 ** 63


def _as_the_server_reads_it(schema: dict[str, Any], value: Any, path: str) -> Any:
    """What the API server makes of a value before validating it: a null is dropped (and
    then defaulted), an integral float in an integer field is that integer (60.0 is 60);
    an integer beyond 64 bits is refused."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: _as_the_server_reads_it(props.get(k, {}), v, f"{path}.{k}") for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_as_the_server_reads_it(schema.get("items") or {}, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if schema.get("type") == "integer" and isinstance(value, float) and value.is_integer():
        value = int(value)
    if schema.get("type") == "integer" and isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
        raise SpecError(path, f"expected an integer of at most 64 bits, got {value}")
    return value


def _check_rules(spec: dict[str, Any]) -> None:
    """Cross-field rules: the Python side of the CRD's x-kubernetes-validations (CEL)."""
    gpus = spec["cluster"]["gpusPerNode"]
    rollout_tp = spec["rollout"]["tensorParallel"]
    trainer = spec["trainer"]
    sources = [kind for kind in ("path", "hub", "package", "generate") if kind in spec["model"]]
    if len(sources) != 1:
        raise SpecError("spec.model", f"needs exactly one of path, hub, package or generate, got {sources or 'none'}")
    if spec["model"].get("pvc") and not {"path", "hub"} & set(sources):
        raise SpecError("spec.model.pvc", "holds a path or is the hub download cache: set path or hub with it")
    if spec["rl"]["partialRollout"]["enabled"] and spec["rl"]["truncated"] != "score":
        raise SpecError("spec.rl.truncated", "applies to responses cut at maxTokens; partial rollouts continue them "
                        f"instead: leave it at score, got {spec['rl']['truncated']!r}")
    if gpus and rollout_tp > gpus:
        raise SpecError("spec.rollout.tensorParallel", f"must not exceed cluster.gpusPerNode ({gpus}), got {rollout_tp}")
    if gpus and gpus % rollout_tp:
        raise SpecError("spec.rollout.tensorParallel", f"must divide cluster.gpusPerNode ({gpus}), got {rollout_tp}")
    engines = spec["rollout"]["enginesPerPod"]
    if gpus and engines * rollout_tp > gpus:
        raise SpecError("spec.rollout.enginesPerPod", f"{engines} engines x rollout.tensorParallel {rollout_tp} need "
                        f"{engines * rollout_tp} GPUs, more than cluster.gpusPerNode ({gpus})")
    channel = spec["weightSync"]["channel"]
    if spec["rollout"]["replicas"] and channel != "auto" and not channel_rules(channel).leaves_pod:
        raise SpecError("spec.rollout.replicas", "rollout replicas take their weights over the Mooncake transfer engine; "
                        f"weightSync.channel {channel} cannot leave the pod (use auto, mooncake-tcp or mooncake-rdma)")
    if spec["rl"]["objective"]["type"] != "mirror-descent" and spec["rl"]["partialRollout"]["enabled"]:
        raise SpecError("spec.rl.objective.type", f"{spec['rl']['objective']['type']} compares a prompt's whole "
                        "responses; turn rl.partialRollout off")
    check_torch_trainer_layout(trainer["backend"], trainer)
    model_parallel = trainer["tensorParallel"] * trainer["pipelineParallel"]
    total = gpus * spec["cluster"]["nodes"]
    if gpus and total % model_parallel:
        raise SpecError(
            "spec.trainer",
            f"tensorParallel * pipelineParallel ({model_parallel}) must divide the total GPU count ({total})",
        )
    if gpus and trainer["expertParallel"] > total:
        raise SpecError("spec.trainer.expertParallel", f"must not exceed the total GPU count ({total}), got {trainer['expertParallel']}")


def check_torch_trainer_layout(backend: str, trainer: dict[str, Any], resolved: str = "") -> None:
    """The torch trainer has no model parallelism: a layout asking for it would be silently
    ignored, so it is refused (for `auto`, once the backend is resolved on the hardware)."""
    if backend != "torch":
        return
    asked = {field: trainer.get(field, 1) for field in ("tensorParallel", "pipelineParallel", "expertParallel")}
    asked = {field: value for field, value in asked.items() if value != 1}
    if asked:
        shown = ", ".join(f"{field} {value}" for field, value in asked.items())
        raise SpecError("spec.trainer.backend", f"the torch trainer{resolved} is data parallel only, got {shown}: "
                        "set them to 1, or trainer.backend megatron (which also runs on the CPU)")


def validate_manifest(doc: Any, source: str = "", on_create: bool = True) -> dict[str, Any]:
    """Return the manifest with defaults applied; raise SpecError naming the first bad field.
    `on_create=False` checks an object the server holds already (its metadata has a resourceVersion)."""
    if not isinstance(doc, dict):
        raise SpecError("<root>", f"expected a mapping (an RLJob manifest), got {type(doc).__name__}", source)
    if doc.get("apiVersion") != f"{API_GROUP}/{API_VERSION}":
        raise SpecError("apiVersion", f"expected {API_GROUP}/{API_VERSION!s}, got {doc.get('apiVersion')!r}", source)
    if doc.get("kind") != KIND:
        raise SpecError("kind", f"expected {KIND}, got {doc.get('kind')!r}", source)
    doc = spec_reads.plain(doc)
    schema = crd_version_schema()
    try:
        unknown = [key for key in doc if key not in TOP_LEVEL]
        unknown += _unknown_fields(schema["properties"]["spec"], doc.get("spec"), "spec")
        if unknown:
            raise SpecError(unknown[0], "unknown field (not in the RLJob schema)")
        try:
            check_metadata(doc.get("metadata"), on_create)
        except MetadataError as err:
            raise SpecError(err.field, err.problem) from None
        # status belongs to the status subresource: the server discards it on create
        body = {k: v for k, v in doc.items() if k not in ("metadata", "status")}
        doc = {**_as_the_server_reads_it(schema, body, ""), **({"metadata": doc["metadata"]} if "metadata" in doc else {})}
    except SpecError as err:
        raise SpecError(err.field.lstrip("."), err.problem, source) from None
    resolved = apply_defaults(schema, doc)
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(resolved), key=lambda e: (len(e.absolute_path), _field_path(e)))
    if errors:
        field, problem = _describe(errors[0])
        raise SpecError(field, problem, source)
    try:
        _check_rules(resolved["spec"])
    except SpecError as err:
        raise SpecError(err.field, err.problem, source) from None
    resolved["spec"] = spec_reads.recording(resolved["spec"])
    return resolved


STDIN = "-"  # as kubectl's `-f -`


def _read_documents(path: str | Path, as_kubectl: bool) -> list[Any]:
    """The non-empty documents of a YAML or JSON file (or of stdin, `-`)."""
    try:
        text = sys.stdin.read() if str(path) == STDIN else Path(path).read_text()
        docs = manifest_yaml.load_all(text) if as_kubectl else yaml.safe_load_all(text)
        return [d for d in docs if d is not None]
    except FileNotFoundError:
        raise SpecError("<file>", "no such file", str(path)) from None
    except yaml.YAMLError as err:
        raise SpecError("<file>", f"not valid YAML: {err}", str(path)) from None
    except manifest_yaml.ManifestYAMLError as err:
        raise SpecError("<file>", str(err), str(path)) from None


def _document_source(path: str | Path, index: int, count: int) -> str:
    where = "<stdin>" if str(path) == STDIN else str(path)
    return f"{where} (document {index + 1} of {count})" if count > 1 else where


def load_manifests(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """Every RLJob document of a file (or stdin), validated, with the name of each (file and
    document number, as errors give them); another kind is refused, naming `kind`."""
    docs = _read_documents(path, as_kubectl=True)
    if not docs:
        raise SpecError("<file>", "no documents", str(path))
    out = []
    for index, doc in enumerate(docs):
        source = _document_source(path, index, len(docs))
        if not isinstance(doc, dict):
            raise SpecError("<document>", f"expected a mapping (an RLJob), got {type(doc).__name__}", source)
        if doc.get("kind") != KIND:
            raise SpecError("kind", f"expected {KIND} (apiVersion {API_GROUP}/{API_VERSION}), got {doc.get('kind')!r}", source)
        out.append((source, validate_manifest(doc, source)))
    return out


def check_edit(new: dict[str, Any], old: dict[str, Any], source: str = "") -> None:
    """Refuse an edit of `old` into `new` (both validated) as the server would: the name stays,
    and every transition rule of the CRD holds (the immutable blocks; rollout.replicas may change)."""
    from seesaw.transitions import broken_rules

    new_name, old_name = (m["metadata"].get("name") for m in (new, old))
    if new_name != old_name:
        raise SpecError("metadata.name", f"field is immutable: an edit keeps the name ({old_name!r}), got {new_name!r}", source)
    broken = broken_rules(crd_version_schema()["properties"]["spec"], spec_reads.plain(new["spec"]), spec_reads.plain(old["spec"]))
    if broken:
        field, message = broken[0]
        raise SpecError(field, message, source)


def load_manifest(path: str | Path, as_kubectl: bool = True) -> dict[str, Any]:
    """The file's one RLJob, validated. A user's manifest is read as kubectl sends it to the
    server (seesaw.manifest_yaml); `as_kubectl=False` reads a file Seesaw itself wrote with
    PyYAML (a pod's job.yaml), by PyYAML's rules, so what it wrote reads back unchanged."""
    if as_kubectl:
        jobs = load_manifests(path)
        if len(jobs) != 1:
            raise SpecError("<file>", f"expected exactly one RLJob document, found {len(jobs)} ({', '.join(s for s, _ in jobs)})",
                            str(path))
        return jobs[0][1]
    docs = _read_documents(path, as_kubectl=False)
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if len(jobs) != 1:
        raise SpecError("<file>", f"expected exactly one RLJob document, found {len(jobs)}", str(path))
    return validate_manifest(jobs[0], str(path))


MAX_RESTART_BACKOFF_SECONDS = 600.0


def restart_backoff_seconds(failure_policy: dict[str, Any], restarts: int) -> float:
    """How long the gang waits before its `restarts`-th restart: spec.failurePolicy.backoffSeconds,
    doubled per restart, at most ten minutes (the operator and `seesaw run` alike)."""
    if restarts <= 0:
        return 0.0
    return min(MAX_RESTART_BACKOFF_SECONDS, float(failure_policy["backoffSeconds"]) * 2 ** (restarts - 1))


def trainer_processes_per_pod(spec: dict[str, Any]) -> int:
    """Trainer ranks in each pod: one per GPU (Megatron's TP x PP x DP covers nodes x
    gpusPerNode), one on the CPU."""
    return max(1, int(spec["cluster"]["gpusPerNode"]))


def rollout_engines_per_pod(spec: dict[str, Any]) -> int:
    """vLLM engines in each pod: spec.rollout.enginesPerPod, or one per tensor-parallel group
    of the pod's GPUs (so every GPU serves rollouts), or one on the CPU."""
    rollout, gpus = spec["rollout"], spec["cluster"]["gpusPerNode"]
    if rollout["enginesPerPod"]:
        return int(rollout["enginesPerPod"])
    return max(1, gpus // rollout["tensorParallel"]) if gpus else 1


def _merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


def job_spec(patch: dict[str, Any] | None = None, name: str = "job") -> dict[str, Any]:
    """A whole spec from a fragment, defaulted and checked as the CRD does.

    Benchmarks and tests build their trainers and engines from this, never from a spec
    written by hand, so none misses a field the code reads. The model source is a
    placeholder path: the callers hand the model's directory to the backend themselves.
    """
    spec = _merged({"model": {"path": "model"}}, patch or {})
    return validate_manifest({"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND,
                              "metadata": {"name": name}, "spec": spec})["spec"]
