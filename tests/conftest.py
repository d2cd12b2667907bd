"""Shared fixtures: an embedded cluster (all four services on loopback ports) with a synthetic library."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import write_library

from modsnet.embedded import EmbeddedCluster

pytest_plugins = ["web_cluster"]  # the cluster with the HTTP port, shared by the web tests

# Service tests train a smaller GNN (2 members of 40 steps, not 3 of 200): each fit with its calibration
# cross-fits is ~7x cheaper, and these tests check the service around the GNN, not what it learns. Tests of what
# the GNN learns ask for the full one (`full_gnn`); subprocesses inherit it.
SMALL_GNN = {"MODSNET_GNN_MEMBERS": "2", "MODSNET_GNN_STEPS": "40"}
for _name, _value in SMALL_GNN.items():
    os.environ.setdefault(_name, _value)
# CLI commands run their services in-process here (a search would otherwise start a daemon per data folder);
# tests/test_daemon.py turns the daemon on where it tests it.
os.environ.setdefault("MODSNET_DAEMON", "0")


@pytest.fixture(scope="session")
def synth_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_library(tmp_path_factory.mktemp("bundle") / "synth")


@pytest.fixture
def cluster(tmp_path: Path, synth_bundle: Path) -> Iterator[EmbeddedCluster]:
    """A fresh embedded cluster per test, holding the synthetic library."""
    with EmbeddedCluster(tmp_path / "home", import_builtins=False) as running:
        running.client.import_library(synth_bundle)
        yield running


@pytest.fixture
def full_gnn_cluster(tmp_path: Path, synth_bundle: Path) -> Iterator[EmbeddedCluster]:
    """As `cluster`, with the GNN's own defaults (for tests of what it learns)."""
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, gnn_members=0, gnn_steps=0) as running:
        running.client.import_library(synth_bundle)
        yield running


@pytest.fixture
def make_core(cluster: EmbeddedCluster) -> Iterator[Callable[..., Any]]:
    """Recommender cores over `cluster`'s knowledge and storage, with the service tests' small GNN and the given
    settings; closed after the test."""
    from modsnet.runtime.stubs import KnowledgeClient, StorageClient
    from services.recommender.core import RecommenderCore
    from services.recommender.estimators.gnn import GnnConfig

    small = GnnConfig(members=int(SMALL_GNN["MODSNET_GNN_MEMBERS"]), steps=int(SMALL_GNN["MODSNET_GNN_STEPS"]))
    made: list[RecommenderCore] = []

    def make(**settings: Any) -> RecommenderCore:
        core = RecommenderCore(
            KnowledgeClient(cluster.addresses["knowledge"]),
            StorageClient(cluster.addresses["storage"]),
            gnn_config=small,
            **settings,
        )
        made.append(core)
        return core

    yield make
    for core in made:
        core.close()
