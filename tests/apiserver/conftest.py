"""The upstream Kubernetes API server (apiextensions-apiserver on etcd), one per module,
with the RLJob CRD installed."""
from __future__ import annotations

import pytest

from real_apiserver import RealAPIServer
from seesaw.spec import API_GROUP, API_VERSION, PLURAL, crd


def jobs(namespace: str) -> str:
    return f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{PLURAL}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with RealAPIServer(tmp_path_factory.mktemp("apiserver")) as running:
        yield running


@pytest.fixture(scope="module")
def installed(server: RealAPIServer) -> dict[str, dict]:
    """The RLJob CRD's conditions once the server serves it."""
    return server.install_crd(crd(), jobs("default"))
