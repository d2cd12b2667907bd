"""One embedded cluster with the query service's HTTP port open, shared by the HTTP API, schemathesis and
browser tests (a pytest plugin: `conftest.py` names it): the synthetic tabular library and the built-in XRD
library, whose finders are runnable artifacts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from synthetic import write_library

from modsnet.embedded import BUILTIN_LIBRARIES, EmbeddedCluster


@pytest.fixture(scope="session")
def web_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    home = tmp_path_factory.mktemp("web")
    # The kNN estimator answers at once; the GNN's first fit (tens of seconds) is tested elsewhere.
    with EmbeddedCluster(home / "home", import_builtins=False, estimator="knn", http_port=0) as cluster:
        cluster.client.import_library(write_library(home / "synth"))
        cluster.client.import_library(BUILTIN_LIBRARIES / "xrdzoo")
        yield cluster


@pytest.fixture(scope="session")
def web_url(web_cluster: EmbeddedCluster) -> str:
    return f"http://{web_cluster.addresses['http']}"


@pytest.fixture(scope="session")
def xrd_scan() -> Path:
    """A real powder pattern: pypowder's ASG1_1.xy (from its source distribution, cached under .cache/testdata)."""
    from test_exemplars import _sdist

    return _sdist("pypowder", "1.0") / "tests" / "ASG1_1.xy"
