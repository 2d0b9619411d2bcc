"""Status helpers: timestamps, conditions with honest transition times, merge-patch diffs."""
from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from seesaw.operator import constants as c

Status = dict[str, Any]


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def get_condition(status: Status, type_: str) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return None


def is_true(status: Status, type_: str) -> bool:
    cond = get_condition(status, type_)
    return bool(cond and cond.get("status") == "True")


def set_condition(status: Status, type_: str, true: bool, reason: str, message: str,
                  generation: int, now: dt.datetime) -> bool:
    """Set one condition in place, keeping the others; lastTransitionTime moves only when the
    status flips. Returns whether the status flipped."""
    conditions = status.setdefault("conditions", [])
    value = "True" if true else "False"
    current = get_condition(status, type_)
    flipped = current is None or current.get("status") != value
    entry = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:4096],
        "lastTransitionTime": iso(now) if flipped else current.get("lastTransitionTime", iso(now)),
        "observedGeneration": generation,
    }
    if current is None:
        conditions.append(entry)
    else:
        conditions[conditions.index(current)] = entry
    order = {t: i for i, t in enumerate(c.CONDITION_TYPES)}
    conditions.sort(key=lambda cond: order.get(cond["type"], len(order)))
    return flipped


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 merge patch that turns `old` into `new` (lists are replaced whole; the
    caller guards them with a resourceVersion precondition)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return copy.deepcopy(new)
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = copy.deepcopy(value)
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value) if isinstance(value, dict) and isinstance(old[key], dict) else copy.deepcopy(value)
    return patch
