"""Every field of the RLJob CRD says what it is: `kubectl explain rljob.spec...` shows it.

The walk covers `spec` and `status` of the v1alpha1 openAPIV3Schema: the two roots, every
property below them (objects and leaves alike), and the `items` of an array whose items are
objects (`spec.cluster.tolerations[]`, `status.conditions[]`) with their properties. Each
needs a non-empty `description`.

A field with a `default` must also name that default in its description, written as YAML
writes it, after the word "Default" (either case; the value may sit in backticks or quotes)
and followed by the end of the text, a space or punctuation (so "Default 1" does not pass
for a default of 10):
- a boolean: `true` or `false` ("Default false.");
- a string: the string itself ("Default auto: ...", "Default 256Gi.");
- a number: the number, an integral float also as the integer ("Default 0.8.", "Default 1.0."
  or "Default 1.");
- an empty list: `[]` ("Default []: none.");
- a non-empty list: "Default" and every item of it, each as above;
- an empty object (`default: {}` on a block): nothing more. It only makes the API server
  create the block so that its fields get their own defaults, which each of those fields'
  descriptions states; so the block's description has no default of its own to name;
- a non-empty object: "Default" and every key of it.

Every additional printer column (`kubectl get rlj`) needs a description too.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from seesaw.spec import CRD_FILE, crd, crd_version_schema

VERSION = "v1alpha1"
CHECKOUT_CRD = Path(__file__).resolve().parents[1] / "crds" / CRD_FILE


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    items = node.get("items")
    if isinstance(items, dict) and items.get("type") == "object":
        yield from _walk(items, f"{path}[]")


def fields(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted path, schema node) of spec, status and everything below them."""
    for root in ("spec", "status"):
        yield from _walk(schema["properties"][root], root)


def yaml_scalar(value: Any) -> list[str]:
    """The ways a default scalar may be written in a description."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, float):
        return [repr(value)] + ([str(int(value))] if value.is_integer() else [])
    return [str(value)]


def names_value(description: str, value: Any) -> bool:
    """Whether `description` says "Default <value>" for one scalar."""
    for written in yaml_scalar(value):
        quoted = re.escape(written)
        pattern = rf"\b[Dd]efault:?\s+(?:`{quoted}`|\"{quoted}\"|'{quoted}'|{quoted})(?=$|[\s,;:)]|\.(?!\w))"
        if re.search(pattern, description):
            return True
    return False


def default_problem(description: str, default: Any) -> str | None:
    """Why `description` does not name `default`, or None when it does."""
    if isinstance(default, dict):
        if not default:
            return None
        missing = [key for key in default if key not in description]
        if "default" not in description.lower() or missing:
            return f"does not name its default {default!r} (missing: {missing or 'the word Default'})"
        return None
    if isinstance(default, list):
        if not default:
            return None if re.search(r"\b[Dd]efault:?\s+`?\[\]", description) else "does not say 'Default []'"
        missing = [item for item in default if not any(w in description for w in yaml_scalar(item))]
        if "default" not in description.lower() or missing:
            return f"does not name its default {default!r} (missing: {missing or 'the word Default'})"
        return None
    if names_value(description, default):
        return None
    return f"does not say 'Default {yaml_scalar(default)[0]}'"


def problems(schema: dict[str, Any]) -> list[str]:
    found = []
    for path, node in fields(schema):
        description = node.get("description")
        if not isinstance(description, str) or not description.strip():
            found.append(f"{path}: no description")
            continue
        if "default" in node:
            problem = default_problem(description, node["default"])
            if problem:
                found.append(f"{path}: {problem}")
    return found


def column_problems(version: dict[str, Any]) -> list[str]:
    return [f"printer column {column['name']!r}: no description"
            for column in version.get("additionalPrinterColumns") or []
            if not str(column.get("description") or "").strip()]


def _version(doc: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in doc["spec"]["versions"] if v["name"] == VERSION)


def test_the_crd_under_test_is_this_checkouts():
    # seesaw.crds is mapped by the installed package: an editable install made from another
    # checkout (a git worktree sharing a virtual environment) would test that one's CRD
    assert crd() == yaml.safe_load(CHECKOUT_CRD.read_text()), (
        f"seesaw.spec.crd() does not read {CHECKOUT_CRD}: the seesaw.crds package is imported from "
        "another checkout (an editable install made there): put this checkout's packages first on the import path")


def test_every_field_has_a_description_that_names_its_default():
    found = problems(crd_version_schema(VERSION))
    assert not found, f"{len(found)} field(s) of the RLJob CRD lack a description or its default:\n" + "\n".join(found)


def test_every_printer_column_has_a_description():
    found = column_problems(_version(crd()))
    assert not found, "\n".join(found)


def test_the_walk_reaches_every_level():
    paths = {path for path, _ in fields(crd_version_schema(VERSION))}
    assert {"spec", "status", "spec.model.hub.repo", "spec.cluster.tolerations[]", "status.conditions[].type",
            "status.metrics.meanReward"} <= paths
    assert len(paths) > 200


def test_the_rule_refuses_what_it_should():
    assert names_value("Default 0.8.", 0.8) and names_value("Default auto: picks.", "auto")
    assert names_value("Default 1.0: off.", 1.0) and names_value("Default 1.", 1.0)
    assert names_value("Unset, it is off. Default false.", False) and names_value("Default `IfNotPresent`.", "IfNotPresent")
    assert not names_value("Default 10.", 1) and not names_value("Default 1.5.", 1)
    assert not names_value("0.8 of the memory.", 0.8) and not names_value("Default true.", False)
    assert default_problem("Default []: none.", []) is None and default_problem("Strings.", []) is not None
    assert default_problem("Default: a, b.", ["a", "b"]) is None and default_problem("Default: a.", ["a", "b"]) is not None
    schema = {"properties": {"spec": {"type": "object", "description": "s", "properties": {
        "bare": {"type": "integer", "default": 3},
        "vague": {"type": "integer", "default": 3, "description": "A number."},
        "good": {"type": "integer", "default": 3, "description": "A number. Default 3."},
    }}, "status": {"type": "object", "properties": {"x": {"type": "string"}}}}}
    assert problems(schema) == ["spec.bare: no description", "spec.vague: does not say 'Default 3'",
                                "status: no description", "status.x: no description"]
