"""Property tests of the knowledge store: after any sequence of imports, replaces, feedback and deletes,

- every interaction's model and dataset exist, and a library's counts are those of its snapshot;
- a library's graph version goes up by exactly one with every change, never down, even across a delete;
- export then import gives the same canonical bundle back;
- each operation succeeds or fails as a simple model of the contract says (AlreadyExists, NotFound, no-op).

Hypothesis drives a state machine over two library names. On the Redis backend every operation also runs
on a SQLite store beside it, and the two must agree on every outcome and every observable state: the
embedded store is the reference the production one may not drift from.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from knowledge_bundles import make_bundle
from redis_server import redis_server, redis_url  # noqa: F401 - fixtures used by name

from modsnet.data.bundle import canonical
from modsnet.data.graph import Cost, DatasetNode, InteractionRecord
from modsnet.runtime.errors import AlreadyExists, ModsnetError, NotFound
from services.knowledge.backends.redis import RedisKnowledgeStore
from services.knowledge.backends.sqlite import SqliteKnowledgeStore
from services.knowledge.store import KnowledgeStore

NAMES = ("alpha", "beta")
SIZES = (6, 12, 20)
SETTINGS = settings(
    max_examples=40,
    stateful_step_count=12,
    deadline=None,
    database=None,  # no .hypothesis folder in the repository
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Library:
    """What the model of the contract knows about one live library."""

    blob_id: str
    models: list[str]
    datasets: list[str]
    interactions: int


@dataclass
class Outcome:
    """What one operation did on every store: a value, or an error class and message."""

    value: Any = None
    error: type[ModsnetError] | None = None
    message: str = ""


class KnowledgeMachine(RuleBasedStateMachine):
    """Drives the store under test (and, when set, the reference store beside it) through random operations."""

    open_stores: Callable[[], list[KnowledgeStore]]

    def __init__(self) -> None:
        super().__init__()
        self.stores = type(self).open_stores()
        self.libraries: dict[str, Library] = {}
        self.versions: dict[str, int] = {}  # the last graph version seen of every name ever imported
        self.serial = 0

    def teardown(self) -> None:
        for store in self.stores:
            store.close()

    def _on_all(self, call: Callable[[KnowledgeStore], Any]) -> Outcome:
        outcomes = []
        for store in self.stores:
            try:
                outcomes.append(Outcome(value=call(store)))
            except ModsnetError as exc:
                outcomes.append(Outcome(error=type(exc), message=str(exc)))
        first = outcomes[0]
        for other in outcomes[1:]:  # the backends agree on what happened (values are compared by the callers)
            assert (other.error, other.message) == (first.error, first.message)
        return first

    def _next(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def _bumped(self, name: str, version: int) -> None:
        assert version == self.versions.get(name, 0) + 1, (name, version, self.versions)
        self.versions[name] = version

    # -- operations ---------------------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES), variant=st.integers(0, 3), replace=st.booleans())
    def import_bundle(self, name: str, variant: int, replace: bool) -> None:
        bundle = make_bundle(name, interactions=SIZES[variant % len(SIZES)], seed=variant, extras=variant % 2 == 0)
        blob_id = hashlib.sha256(f"{name}/{variant}".encode()).hexdigest()
        outcome = self._on_all(lambda s: s.import_bundle(bundle, blob_id=blob_id, replace=replace, artifacts={}))
        known = self.libraries.get(name)
        if known is not None and known.blob_id == blob_id:
            assert outcome.error is None and outcome.value[1], "the same blob again is a no-op"
            assert outcome.value[0].graph_version == self.versions[name]
            return
        if known is not None and not replace:
            assert outcome.error is AlreadyExists
            return
        assert outcome.error is None and not outcome.value[1]
        self._bumped(name, outcome.value[0].graph_version)
        self.libraries[name] = Library(
            blob_id,
            [r["model_id"] for r in bundle.models.rows],
            [r["dataset_id"] for r in bundle.datasets.rows],
            len(bundle.interactions.rows),
        )

    @rule(
        name=st.sampled_from(NAMES),
        model=st.integers(0, 50),
        dataset=st.integers(0, 50),
        new_dataset=st.booleans(),
        ghost=st.sampled_from(["", "", "model", "dataset"]),
        score=st.floats(-1.0, 2.0, allow_nan=False),
        train=st.sampled_from([0.0, 0.5, 3.0]),
    )
    def feedback(
        self, name: str, model: int, dataset: int, new_dataset: bool, ghost: str, score: float, train: float
    ) -> None:
        known = self.libraries.get(name)
        model_id = "ghost" if ghost == "model" or known is None else known.models[model % len(known.models)]
        new = []
        if new_dataset:
            dataset_id = self._next("q")
            fingerprint = hashlib.sha256(dataset_id.encode()).hexdigest()
            new = [DatasetNode(name, dataset_id, {"origin": "feedback"}, {"log_rows": 1.0}, "tabular/v1", fingerprint)]
        else:
            dataset_id = (
                "ghost" if ghost == "dataset" or known is None else known.datasets[dataset % len(known.datasets)]
            )
        records = [InteractionRecord(model_id, dataset_id, score, Cost(train_seconds=train), "feedback")]
        outcome = self._on_all(lambda s: s.add_interactions(name, new, records))
        if "ghost" in (model_id, dataset_id) or known is None:
            assert outcome.error is NotFound
            return
        assert outcome.error is None and outcome.value[1] == 1
        self._bumped(name, outcome.value[0])
        known.interactions += 1
        if new_dataset:
            known.datasets.append(dataset_id)

    @rule(name=st.sampled_from(NAMES))
    def delete(self, name: str) -> None:
        outcome = self._on_all(lambda s: s.delete_library(name))
        if name not in self.libraries:
            assert outcome.error is NotFound
            return
        assert outcome.error is None
        del self.libraries[name]
        self.versions[name] += 1  # checked by the next import: versions survive a delete
        outcome = self._on_all(lambda s: s.graph_version(name))
        assert outcome.error is NotFound

    @rule(name=st.sampled_from(NAMES))
    def export_then_import(self, name: str) -> None:
        known = self.libraries.get(name)
        outcome = self._on_all(lambda s: canonical(s.export_bundle(name)[0]))
        if known is None:
            assert outcome.error is NotFound
            return
        blob_id = self._next("round-trip-")
        for store in self.stores:
            exported, artifacts = store.export_bundle(name)
            info, unchanged = store.import_bundle(exported, blob_id=blob_id, replace=True, artifacts=artifacts)
            assert not unchanged and info.interactions == known.interactions
            assert canonical(store.export_bundle(name)[0]) == outcome.value
        self._bumped(name, info.graph_version)
        known.blob_id = blob_id

    # -- invariants ---------------------------------------------------------------------------------

    @invariant()
    def graph_is_whole_and_agrees(self) -> None:
        listed = self._on_all(lambda s: [(i.name, i.graph_version, i.interactions) for i in s.list_libraries()])
        assert listed.value == [(n, self.versions[n], self.libraries[n].interactions) for n in sorted(self.libraries)]
        for name, known in self.libraries.items():
            snapshots = [store.snapshot(name) for store in self.stores]
            for snap in snapshots:
                models = {m.model_id for m in snap.models}
                datasets = {d.dataset_id for d in snap.datasets}
                assert all(i.model_id in models and i.dataset_id in datasets for i in snap.interactions)
                info = snap.library
                assert (info.models, info.datasets, info.interactions) == (
                    len(snap.models),
                    len(snap.datasets),
                    len(snap.interactions),
                )
                assert snap.graph_version == self.versions[name] and info.bundle_blob_id == known.blob_id
                assert sorted(datasets) == sorted(known.datasets)
            reference = snapshots[0]
            for snap in snapshots[1:]:
                assert snap.interactions == reference.interactions
                assert snap.similarities == reference.similarities
                assert snap.datasets == reference.datasets
                assert [(m.model_id, m.metadata, m.interactions) for m in snap.models] == [
                    (m.model_id, m.metadata, m.interactions) for m in reference.models
                ]
            exports = [canonical(store.export_bundle(name)[0]) for store in self.stores]
            assert all(e == exports[0] for e in exports)


def _sqlite(root: Path) -> SqliteKnowledgeStore:
    return SqliteKnowledgeStore(Path(tempfile.mkdtemp(dir=root)) / "k.sqlite3")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def test_invariants_hold_after_any_sequence(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("properties")
    url = request.getfixturevalue("redis_url") if backend == "redis" else ""

    def open_stores() -> list[KnowledgeStore]:
        if not url:
            return [_sqlite(root)]
        with redis.Redis.from_url(url) as client:
            client.flushall()
        return [RedisKnowledgeStore(url), _sqlite(root)]

    machine = type("Machine", (KnowledgeMachine,), {"open_stores": staticmethod(open_stores)})
    run_state_machine_as_test(machine, settings=SETTINGS)
