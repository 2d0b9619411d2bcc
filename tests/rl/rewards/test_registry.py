"""Verifiers are found by spec.reward.type, Seesaw's own and those installed as plug-ins."""
import re

import pytest

from seesaw.rl.rewards import UnknownVerifier, verifier_for, verifier_reference, verifier_types
from seesaw.rl.rewards.code import CodeVerifier
from seesaw.rl.rewards.math import MathVerifier
from seesaw.rl.rewards.sandbox import SandboxLimits


def test_the_schema_names_a_verifier_by_a_name_every_registered_one_has():
    from seesaw.spec import crd_version_schema

    reward = crd_version_schema()["properties"]["spec"]["properties"]["reward"]["properties"]["type"]
    assert reward["default"] in verifier_types()
    assert all(re.fullmatch(reward["pattern"], name) for name in verifier_types())


def test_the_code_verifier_takes_its_limits_from_the_spec():
    verifier = verifier_for({"type": "code", "sandbox": {"timeoutSeconds": 2, "memoryMiB": 128}})
    assert isinstance(verifier, CodeVerifier)
    assert verifier.limits == SandboxLimits(timeout_seconds=2.0, memory_mib=128)
    assert verifier_for({"type": "code"}, mode="fraction").mode == "fraction"
    assert (verifier_reference("code"), verifier_reference("math")) == ("tests", "answer")


def test_math_is_the_default_and_unknown_types_are_named():
    assert isinstance(verifier_for({}), MathVerifier)
    with pytest.raises(UnknownVerifier, match=r"spec.reward.type: expected one of \['code', 'math'\] \(the built-in "
                                              r"verifiers and those installed under the entry-point group "
                                              r"'seesaw.verifiers'\), got 'vision'"):
        verifier_for({"type": "vision"})
