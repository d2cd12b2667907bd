"""Conformance suite of the knowledge store. Every backend must pass it (today: the SQLite file)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from modsnet.bundle import canonical, read_bundle
from modsnet.errors import AlreadyExists, NotFound
from modsnet.graph import DatasetNode, InteractionRecord, QueryRecord
from services.knowledge.backends.sqlite import SqliteKnowledgeStore
from services.knowledge.store import KnowledgeStore

BLOB_A = "a" * 64
BLOB_B = "b" * 64


@pytest.fixture(params=["sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KnowledgeStore]:
    backend = SqliteKnowledgeStore(tmp_path / "k.sqlite3")
    yield backend
    backend.close()


def test_import_counts_and_snapshot(store: KnowledgeStore, synth_bundle: Path) -> None:
    info, unchanged = store.import_bundle(read_bundle(synth_bundle), blob_id=BLOB_A, replace=False, artifacts={})
    assert not unchanged
    assert (info.models, info.datasets, info.interactions, info.graph_version) == (6, 10, 60, 1)
    snap = store.snapshot("synth")
    assert snap.graph_version == 1 and len(snap.interactions) == 60
    d0 = next(d for d in snap.datasets if d.dataset_id == "d0")
    assert "log_rows" in d0.features and d0.interactions == 6
    m0 = next(m for m in snap.models if m.model_id == "m0")
    assert m0.cost.train_seconds == pytest.approx(0.1) and m0.metadata["family"] == "up"


def test_same_blob_again_is_unchanged_and_another_needs_replace(store: KnowledgeStore, synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    _, unchanged = store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    assert unchanged and store.graph_version("synth") == 1
    with pytest.raises(AlreadyExists, match="synth"):
        store.import_bundle(bundle, blob_id=BLOB_B, replace=False, artifacts={})
    info, _ = store.import_bundle(bundle, blob_id=BLOB_B, replace=True, artifacts={})
    assert info.graph_version == 2 and info.interactions == 60


def test_versions_only_increase_even_across_delete(store: KnowledgeStore, synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    store.delete_library("synth")
    with pytest.raises(NotFound):
        store.graph_version("synth")
    info, _ = store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    assert info.graph_version == 3


def test_export_round_trips(store: KnowledgeStore, synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    exported, artifacts = store.export_bundle("synth")
    assert canonical(exported) == canonical(bundle) and artifacts == {}


def test_add_interactions_is_all_or_nothing(store: KnowledgeStore, synth_bundle: Path) -> None:
    store.import_bundle(read_bundle(synth_bundle), blob_id=BLOB_A, replace=False, artifacts={})
    new = DatasetNode("synth", "q1", {"origin": "feedback"}, {"log_rows": 2.0}, "tabular/v1", "f" * 64)
    good = InteractionRecord("m1", "q1", 0.9, provenance="feedback")
    bad = InteractionRecord("ghost", "q1", 0.9, provenance="feedback")
    with pytest.raises(NotFound, match="ghost"):
        store.add_interactions("synth", [new], [good, bad])
    assert store.graph_version("synth") == 1
    with pytest.raises(NotFound):
        store.get_dataset("synth", "q1")
    version, added = store.add_interactions("synth", [new], [good])
    assert (version, added) == (2, 1)
    assert store.find_dataset("f" * 64).dataset_id == "q1"
    exported, _ = store.export_bundle("synth")
    assert "provenance" in exported.interactions.columns


def test_query_log(store: KnowledgeStore, synth_bundle: Path) -> None:
    store.import_bundle(read_bundle(synth_bundle), blob_id=BLOB_A, replace=False, artifacts={})
    record = QueryRecord("q-1", "synth", "c" * 64, "x.csv", "tabular/v1", {"log_rows": 1.0}, "tabular", ["m1"], 1)
    store.log_query(record)
    assert store.get_query("q-1").answer_model_ids == ["m1"]
    with pytest.raises(AlreadyExists):
        store.log_query(record)
    with pytest.raises(NotFound):
        store.get_query("q-2")


def test_readers_never_see_a_half_imported_library(store: KnowledgeStore, synth_bundle: Path) -> None:
    bundle = read_bundle(synth_bundle)
    store.import_bundle(bundle, blob_id=BLOB_A, replace=False, artifacts={})
    seen: set[int] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(len(store.snapshot("synth").interactions))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(10):
        store.import_bundle(bundle, blob_id=f"{i:064d}", replace=True, artifacts={})
    stop.set()
    reader.join()
    assert seen == {60}
