"""What the two local runtimes (processes, Docker containers) share about a pod: how it is named,
when a container's end ends the gang's attempt, and how a failed start is said."""
from __future__ import annotations


def died(container: str, code: int | None, follower: bool) -> bool:
    """Whether a pod's container that ended (`code`) ends the gang's attempt: a worker's any
    exit (workers serve until stopped), a follower's checkpoint engine's failure; pod 0's
    checkpoint engine is watched by the runner."""
    return code is not None and (container != "sidecar" or (follower and code != 0))


def pod_title(index: int, replica: bool) -> str:
    """How messages name a pod."""
    return f"rollout replica {index}" if replica else f"pod {index}"


def log_prefix(index: int, replica: bool) -> str:
    """Of a pod's log files in the run directory (pod 0's have none)."""
    return f"replica-{index}-" if replica else (f"pod-{index}-" if index else "")


class StartFailed(Exception):
    """A pod could not be started (its image, a startup probe): the attempt failed, saying why."""
