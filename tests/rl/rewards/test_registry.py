"""Verifiers are found by spec.reward.type."""
import pytest

from seesaw.rl.rewards import UnknownVerifier, verifier_for, verifier_types
from seesaw.rl.rewards.code import CodeVerifier
from seesaw.rl.rewards.math import MathVerifier
from seesaw.rl.rewards.sandbox import SandboxLimits


def test_every_reward_type_of_the_schema_has_a_verifier():
    from seesaw.spec import crd_version_schema

    reward = crd_version_schema()["properties"]["spec"]["properties"]["reward"]["properties"]["type"]
    assert sorted(reward["enum"]) == verifier_types()


def test_the_code_verifier_takes_its_limits_from_the_spec():
    verifier = verifier_for({"type": "code", "sandbox": {"timeoutSeconds": 2, "memoryMiB": 128}})
    assert isinstance(verifier, CodeVerifier)
    assert verifier.limits == SandboxLimits(timeout_seconds=2.0, memory_mib=128)
    assert verifier_for({"type": "code"}, mode="fraction").mode == "fraction"


def test_math_is_the_default_and_unknown_types_are_named():
    assert isinstance(verifier_for({}), MathVerifier)
    with pytest.raises(UnknownVerifier, match=r"spec.reward.type: expected one of \['code', 'math'\], got 'vision'"):
        verifier_for({"type": "vision"})
