"""Which fields of a resolved RLJob spec the code actually reads (a test of the CRD's honesty).

With SEESAW_SPEC_READS=FILE in the environment, every resolved spec that `validate_manifest`
hands out is a mapping that appends the dotted path of each field read (`[]` or `.get`,
present or not) to FILE, once per process. Iterating or serialising the spec is not reading
a field, so passing it along whole does not count. A test then fails for a leaf of the
schema that nothing read: a field that takes no effect must be refused, not accepted.
"""
from __future__ import annotations

import os
from typing import Any

import yaml

ENV = "SEESAW_SPEC_READS"


class _Recorder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: set[str] = set()

    def __call__(self, field: str) -> None:
        if field not in self.seen:
            self.seen.add(field)
            with open(self.path, "a") as out:  # one short line per write: safe across processes
                out.write(field + "\n")


class ReadRecordingSpec(dict):
    """A dict that reports the path of every key read through [] or get()."""

    def __init__(self, data: dict[str, Any], path: str, record: _Recorder) -> None:
        super().__init__({k: ReadRecordingSpec(v, f"{path}.{k}", record) if isinstance(v, dict) else v
                          for k, v in data.items()})
        self._path = path
        self._record = record

    def __getitem__(self, key: str) -> Any:
        self._record(f"{self._path}.{key}")
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._record(f"{self._path}.{key}")
        return super().get(key, default)


def recording(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec itself, or a recording view of it when SEESAW_SPEC_READS is set."""
    path = os.environ.get(ENV)
    if not path:
        return spec
    yaml.SafeDumper.add_representer(ReadRecordingSpec, yaml.representer.SafeRepresenter.represent_dict)
    return ReadRecordingSpec(spec, "spec", _Recorder(path))


def schema_leaves(schema: dict[str, Any], path: str = "spec") -> set[str]:
    """Dotted paths of the schema's leaves: fields with no declared sub-fields."""
    properties = schema.get("properties")
    if not properties:
        return {path}
    leaves: set[str] = set()
    for name, sub in properties.items():
        leaves |= schema_leaves(sub, f"{path}.{name}")
    return leaves


def plain(value: Any) -> Any:
    """A plain copy, read without recording (validation is not the code taking a field into effect)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in dict.items(value)}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
