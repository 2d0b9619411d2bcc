"""Verifiable rewards, keyed by `spec.reward.type`: math answers and code run in a sandbox."""
from seesaw.rl.rewards import code, math  # noqa: F401  (importing registers the verifiers)
from seesaw.rl.rewards.code import code_reward
from seesaw.rl.rewards.math import math_reward
from seesaw.rl.rewards.registry import (UnknownVerifier, Verifier, register_verifier, verifier_for,
                                        verifier_reference, verifier_types)

__all__ = ["UnknownVerifier", "Verifier", "code_reward", "math_reward", "register_verifier",
           "verifier_for", "verifier_reference", "verifier_types"]
