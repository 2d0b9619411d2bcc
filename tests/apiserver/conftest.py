"""The upstream Kubernetes API server (apiextensions-apiserver on etcd), one per module."""
from __future__ import annotations

import pytest

from real_apiserver import RealAPIServer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with RealAPIServer(tmp_path_factory.mktemp("apiserver")) as running:
        yield running
