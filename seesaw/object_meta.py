"""An RLJob's metadata as the API server checks it on create: apimachinery's ValidateObjectMeta
(names, generateName, label and annotation syntax), strict decoding of ObjectMeta's fields,
and resourceVersion refused on create; plus Seesaw's own name rule (pods are named
<name>-<index>), which the CRD's CEL rule applies to the generated name too."""
from __future__ import annotations

import re
from typing import Any

OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers",
    "managedFields"})
NAME_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # Seesaw's: a DNS label starting with a letter
MAX_NAME = 52  # pods are named <name>-<index>, replicas <name>-rollout-<r>
GENERATED_SUFFIX = 5  # the server appends five random characters to generateName
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
MAX_ANNOTATIONS_BYTES = 256 * 1024


class MetadataError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


def _qualified_name_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return "has more than one '/'"
    if "/" in key and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return "its prefix must be a DNS subdomain (lower-case letters, digits, '-', '.'), at most 253 characters"
    if not name or len(name) > 63 or not QUALIFIED_NAME_PART.fullmatch(name):
        return "must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    return None


def _string_map(metadata: dict[str, Any], field: str) -> dict[str, str]:
    value = metadata.get(field) or {}
    if not isinstance(value, dict):
        raise MetadataError(f"metadata.{field}", f"expected a map of strings, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(item, str):
            raise MetadataError(f"metadata.{field}", f"the value of {key!r} must be a string, got {type(item).__name__} {item!r}")
        problem = _qualified_name_problem(key)
        if problem:
            raise MetadataError(f"metadata.{field}", f"key {key!r} {problem}")
    return value


def name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        return (f"must be a DNS label of at most {MAX_NAME} characters (lower-case letters, digits, '-', starting with "
                f"a letter): pods are named <name>-<index>, got {name!r}")
    return None


def check_metadata(metadata: Any, on_create: bool = True) -> None:
    """Raise MetadataError naming the field the server would refuse."""
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise MetadataError("metadata", f"expected an object, got {type(metadata).__name__}")
    unknown = sorted(set(metadata) - OBJECT_META_FIELDS)
    if unknown:
        raise MetadataError(f"metadata.{unknown[0]}", "unknown field (not in ObjectMeta)")
    name, generate = metadata.get("name"), metadata.get("generateName")
    if not name and not generate:
        raise MetadataError("metadata.name", "name or generateName is required")
    if name:
        problem = name_problem(name)
        if problem:
            raise MetadataError("metadata.name", problem)
    elif not isinstance(generate, str) or name_problem(generate + "x" * GENERATED_SUFFIX):
        raise MetadataError("metadata.generateName", f"with the server's {GENERATED_SUFFIX} random characters it must make a "
                            f"name of at most {MAX_NAME} lower-case letters, digits and '-', starting with a letter, "
                            f"got {generate!r}")
    if on_create and metadata.get("resourceVersion"):
        raise MetadataError("metadata.resourceVersion", "resourceVersion should not be set on objects to be created")
    labels = _string_map(metadata, "labels")
    for key, value in labels.items():
        if len(value) > 63 or not LABEL_VALUE.fullmatch(value):
            raise MetadataError("metadata.labels", f"the value of {key!r} must be at most 63 letters, digits, '-', '_' or "
                                f"'.', starting and ending with a letter or digit, got {value!r}")
    annotations = _string_map(metadata, "annotations")
    if sum(len(k) + len(v) for k, v in annotations.items()) > MAX_ANNOTATIONS_BYTES:
        raise MetadataError("metadata.annotations", f"may hold at most {MAX_ANNOTATIONS_BYTES} bytes in all")
