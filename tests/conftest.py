"""Shared fixtures: an embedded cluster (all four services on loopback ports) with a synthetic library."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import write_library

from modsnet.embedded import EmbeddedCluster


@pytest.fixture(scope="session")
def synth_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_library(tmp_path_factory.mktemp("bundle") / "synth")


@pytest.fixture
def cluster(tmp_path: Path, synth_bundle: Path) -> Iterator[EmbeddedCluster]:
    """A fresh embedded cluster per test, holding the synthetic library."""
    with EmbeddedCluster(tmp_path / "home", import_builtins=False) as running:
        running.client.import_library(synth_bundle)
        yield running
