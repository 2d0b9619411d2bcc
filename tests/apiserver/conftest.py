"""The upstream Kubernetes API server (apiextensions-apiserver on etcd), one per module,
with the RLJob CRD installed."""
from __future__ import annotations

import pytest

from real_apiserver import RealAPIServer
from seesaw.operator import constants as c
from seesaw.operator.kube import collection_path
from seesaw.spec import crd


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with RealAPIServer(tmp_path_factory.mktemp("apiserver")) as running:
        yield running


@pytest.fixture(scope="module")
def installed(server: RealAPIServer) -> dict[str, dict]:
    """The RLJob CRD's conditions once the server serves it."""
    return server.install_crd(crd(), collection_path(c.RLJOB_API_VERSION, c.RLJOB_KIND, "default"))
