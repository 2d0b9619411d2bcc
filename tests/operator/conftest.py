"""The operator, unmodified (`kopf run`), against the fake API server in tests/fakes, or
against a real cluster when SEESAW_E2E_KUBECONFIG names a kubeconfig."""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.operator_env import Environment, start_environment, stop_environment  # noqa: E402

@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    environment = start_environment(tmp_path_factory.mktemp("operator"))
    yield environment
    stop_environment(environment)
    print(environment.operator.tail(200))


_namespaces = itertools.count()


@pytest.fixture
def ns(env: Environment, request: pytest.FixtureRequest):
    name = f"t{os.getpid() % 1000}-{next(_namespaces)}"
    if env.fake is None:
        env.cluster.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(env.operator.tail(80))
    if env.fake is None:
        env.cluster.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def kubelet(env: Environment):
    """The fake kubelet; tests that script pod outcomes need it."""
    if env.fake is None:
        pytest.skip("scripts pod outcomes through the fake kubelet; not available against SEESAW_E2E_KUBECONFIG")
    return env.fake.kubelet
