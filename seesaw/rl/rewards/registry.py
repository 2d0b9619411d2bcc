"""The registry of reward verifiers, keyed by an RLJob's spec.reward.type: the only way a task
gets its scorer.

Seesaw's own verifiers register when `seesaw.rl.rewards` is imported. A verifier of your own
registers from an installed package, without editing Seesaw, as vLLM's general plugins do: an
entry point in the group `seesaw.verifiers` names a function that calls `register_verifier`.
The entry points are loaded once, the first time the registry is asked for a type it lacks.

    # your package's pyproject.toml
    [project.entry-points."seesaw.verifiers"]
    regex = "my_rewards:register"
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Literal, Protocol, TypeVar

ENTRY_POINT_GROUP = "seesaw.verifiers"

# What a verifier compares a response with: the problem's reference answer (a string), or
# its test cases ({stdin, stdout} pairs): a prompt source must then carry tests.
Reference = Literal["answer", "tests"]


class Verifier(Protocol):
    def score(self, response: str, reference: Any) -> float:
        """The reward of one response: in [0, 1], 1 when it is right."""
        ...


class UnknownVerifier(LookupError):
    pass


@dataclass(frozen=True)
class VerifierEntry:
    factory: Callable[..., Verifier]  # (reward_spec, **options) -> Verifier
    reference: Reference


F = TypeVar("F", bound=Callable[..., Verifier])
_VERIFIERS: dict[str, VerifierEntry] = {}
_plugins_loaded = False


def register_verifier(reward_type: str, reference: Reference = "answer") -> Callable[[F], F]:
    """Decorator: a factory `(reward_spec, **options) -> Verifier` for spec.reward.type == reward_type."""
    if reference not in ("answer", "tests"):
        raise ValueError(f"reference: expected 'answer' or 'tests', got {reference!r}")

    def wrap(factory: F) -> F:
        _VERIFIERS[reward_type] = VerifierEntry(factory, reference)
        return factory

    return wrap


def load_plugins() -> None:
    """Call every installed `seesaw.verifiers` entry point once; each registers its verifiers."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()()
        except Exception as err:  # a broken plug-in is named, not mistaken for a missing type
            raise UnknownVerifier(f"spec.reward.type: the verifier plug-in {point.name!r} ({point.value}) "
                                  f"failed to load: {type(err).__name__}: {err}") from err


def _entry(reward_type: str) -> VerifierEntry:
    if reward_type not in _VERIFIERS:
        load_plugins()
    try:
        return _VERIFIERS[reward_type]
    except KeyError:
        raise UnknownVerifier(f"spec.reward.type: expected one of {verifier_types()} (the built-in verifiers and "
                              f"those installed under the entry-point group {ENTRY_POINT_GROUP!r}), "
                              f"got {reward_type!r}") from None


def verifier_types() -> list[str]:
    load_plugins()
    return sorted(_VERIFIERS)


def verifier_reference(reward_type: str) -> Reference:
    """What the verifier of this type compares responses with: 'answer' or 'tests'."""
    return _entry(reward_type).reference


def verifier_for(reward_spec: dict[str, Any], **options: Any) -> Verifier:
    """The verifier for a resolved spec.reward (its `type` and, for code, its `sandbox`)."""
    return _entry(reward_spec.get("type", "math")).factory(reward_spec, **options)
