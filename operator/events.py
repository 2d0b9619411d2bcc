"""Kubernetes Events for an RLJob, rate-limited so that a long job does not flood the stream.

As client-go's EventCorrelator does: per object, a token bucket (a burst, then one event per
refill interval), and an identical (reason, message) pair is dropped within a window. What
is dropped is counted and said in the next event that goes out. Terminal events (failure,
completion, restart) skip the bucket: a user must see them.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable


@dataclasses.dataclass
class _Bucket:
    tokens: float
    updated: float
    suppressed: int = 0
    recent: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)


class EventLimiter:
    def __init__(self, burst: int = 20, refill_seconds: float = 30.0, repeat_window: float = 600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.refill_seconds, self.repeat_window, self.clock = burst, refill_seconds, repeat_window, clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, key: str, reason: str, message: str, important: bool = False) -> tuple[bool, int]:
        """(whether to post, how many events of this object were dropped since the last post)."""
        now = self.clock()
        bucket = self._buckets.setdefault(key, _Bucket(tokens=float(self.burst), updated=now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) / self.refill_seconds)
        bucket.updated = now
        bucket.recent = {k: t for k, t in bucket.recent.items() if now - t < self.repeat_window}
        if (reason, message) in bucket.recent or (bucket.tokens < 1 and not important):
            bucket.suppressed += 1
            return False, bucket.suppressed
        bucket.tokens = max(0.0, bucket.tokens - 1)
        bucket.recent[(reason, message)] = now
        dropped, bucket.suppressed = bucket.suppressed, 0
        return True, dropped

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)




class EventRecorder:
    """Posts through `post(obj, type, reason, message)` what the limiter admits."""

    def __init__(self, post: Callable[[dict[str, Any], str, str, str], Any], limiter: EventLimiter | None = None,
                 important: frozenset[str] = frozenset()) -> None:
        self.post, self.limiter, self.important = post, limiter or EventLimiter(), important

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> bool:
        meta = obj["metadata"]
        key = meta.get("uid") or f"{meta.get('namespace')}/{meta['name']}"
        allowed, dropped = self.limiter.admit(key, reason, message,
                                              important=type_ == "Warning" or reason in self.important)
        if not allowed:
            return False
        if dropped:
            message = f"{message} ({dropped} earlier event(s) suppressed by rate limiting)"
        self.post(obj, type_, reason, message)
        return True
