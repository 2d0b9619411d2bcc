"""An edit checked before it is applied: the CRD's transition rules (its CEL rules on
`oldSelf`) evaluated on two manifests, with the server's words.

The rules are read from the CRD itself, so a new immutable block is checked as soon as it is
written there. They are all of two shapes, which this module evaluates: `self.P == oldSelf.P`
joined by `&&` (a whole block, or a block's fields but one: `rollout.replicas` is `kubectl
scale`'s), and the optional field compared with a default, `(has(self.P) ? self.P : D) ==
(has(oldSelf.P) ? oldSelf.P : D)`. A rule of another shape is an error here, not a silent pass.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

_MISSING = object()
EQUAL = re.compile(r"^self((?:\.\w+)*) == oldSelf\1$")
OPTIONAL = re.compile(r"^\(has\(self((?:\.\w+)+)\) \? self\1 : ('[^']*')\) == \(has\(oldSelf\1\) \? oldSelf\1 : \2\)$")


class UnknownRule(ValueError):
    """A transition rule this checker cannot evaluate (the CRD grew a new shape)."""


def _get(value: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def rule_holds(rule: str, new: dict[str, Any], old: dict[str, Any]) -> bool:
    """One transition rule on the spec objects `new` (self) and `old` (oldSelf)."""
    optional = OPTIONAL.match(rule)
    if optional:
        path, default = optional.group(1), optional.group(2).strip("'")
        ours, theirs = (default if v is _MISSING else v for v in (_get(new, path), _get(old, path)))
        return ours == theirs
    clauses = [clause.strip() for clause in rule.split("&&")]
    matched = [EQUAL.match(clause) for clause in clauses]
    if not all(matched):
        raise UnknownRule(f"cannot evaluate the transition rule {rule!r} (expected self.P == oldSelf.P clauses)")
    # a field's own rule runs only when both sides have it (the optional shape covers adding one)
    return all(_get(new, m.group(1)) == _get(old, m.group(1)) for m in matched)


def transition_rules(schema: dict[str, Any], path: str = "spec") -> Iterator[tuple[str, dict[str, Any], str]]:
    """(path of the object the rule sits on, the rule, its field path) for every rule using oldSelf."""
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            yield path, rule, path + rule.get("fieldPath", "")
    for name, sub in schema.get("properties", {}).items():
        yield from transition_rules(sub, f"{path}.{name}")


def broken_rules(schema: dict[str, Any], new_spec: dict[str, Any], old_spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, the rule's message) of every transition rule the edit breaks, in the CRD's order."""
    broken = []
    for path, rule, field in transition_rules(schema):
        relative = path.removeprefix("spec")
        new, old = (_get(side, relative) if relative else side for side in (new_spec, old_spec))
        if new is _MISSING or old is _MISSING:
            continue  # the server runs a rule only where both objects have its field
        if not rule_holds(rule["rule"], new, old):
            broken.append((field, rule.get("message", rule["rule"])))
    return broken
