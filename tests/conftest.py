"""Fixtures shared by the suite (helpers live in tests/support, on pytest's pythonpath)."""
import pytest

from pod_helpers import make_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory)
