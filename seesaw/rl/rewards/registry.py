"""The registry of reward verifiers, keyed by an RLJob's spec.reward.type."""
from __future__ import annotations

from typing import Any, Callable, Protocol, TypeVar


class Verifier(Protocol):
    def score(self, response: str, reference: Any) -> float:
        """The reward of one response: in [0, 1], 1 when it is right."""
        ...


class UnknownVerifier(LookupError):
    pass


F = TypeVar("F", bound=Callable[..., Verifier])
_VERIFIERS: dict[str, Callable[..., Verifier]] = {}


def register_verifier(reward_type: str) -> Callable[[F], F]:
    """Decorator: a factory `(reward_spec, **options) -> Verifier` for spec.reward.type == reward_type."""

    def wrap(factory: F) -> F:
        _VERIFIERS[reward_type] = factory
        return factory

    return wrap


def verifier_types() -> list[str]:
    return sorted(_VERIFIERS)


def verifier_for(reward_spec: dict[str, Any], **options: Any) -> Verifier:
    """The verifier for a resolved spec.reward (its `type` and, for code, its `sandbox`)."""
    reward_type = reward_spec.get("type", "math")
    try:
        factory = _VERIFIERS[reward_type]
    except KeyError:
        raise UnknownVerifier(f"spec.reward.type: expected one of {verifier_types()}, got {reward_type!r}") from None
    return factory(reward_spec, **options)
