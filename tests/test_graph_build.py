"""The one bundle -> graph conversion: the evaluation's graph is the snapshot each knowledge store serves."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from knowledge_bundles import make_bundle
from redis_server import redis_server, redis_url  # noqa: F401 - fixtures used by name

from modsnet.data.bundle import Bundle, Table
from modsnet.data.graph import Cost, DatasetNode, LibraryInfo, Snapshot
from modsnet.data.graph_build import (
    GraphTally,
    dataset_raw_features,
    distance,
    interaction_record,
    snapshot_from_bundle,
)
from services.knowledge.backends.redis import RedisKnowledgeStore
from services.knowledge.backends.sqlite import SqliteKnowledgeStore
from services.knowledge.store import KnowledgeStore
from services.recommender.estimators.knn import KnnPopularityEstimator
from services.recommender.evaluation import graph_from_bundle


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KnowledgeStore]:
    backend: KnowledgeStore
    if request.param == "redis":
        backend = RedisKnowledgeStore(request.getfixturevalue("redis_url"))
    else:
        backend = SqliteKnowledgeStore(tmp_path / "k.sqlite3")
    yield backend
    backend.close()


def _bundle() -> Bundle:
    """make_bundle's extras (similarities, probes, two feature tables, empty cost cells) and a few more shapes."""
    bundle = make_bundle("built", interactions=60, models=6, seed=3)
    bundle.models.rows.append({"model_id": "m-unused", "family": "up"})  # no record: cost 0, count 0
    bundle.datasets.rows.append({"dataset_id": "d-bare", "n_rows": "7", "fingerprint": ""})  # no features
    for k, row in enumerate(bundle.interactions.rows):
        if row["model_id"] == "m1" and k % 4 == 1:
            row["train_seconds"] = ""  # m1: some records measured no train time
        if k % 9 == 0:
            row["memory_bytes"] = ""
    bundle.interactions.columns.append("provenance")
    for k, row in enumerate(bundle.interactions.rows):
        row["provenance"] = "feedback" if k % 7 == 0 else ""
    assert bundle.similarity is not None
    bundle.similarity.columns.append("similarity")
    for row in bundle.similarity.rows:
        row["similarity"] = ""
    bundle.similarity.rows.append({"dataset_a": "d0", "dataset_b": "d-bare", "distance": "", "similarity": "0.25"})
    return bundle


def _by_id(nodes: list, key: str) -> dict:  # type: ignore[type-arg]
    return {getattr(n, key): n for n in nodes}


def test_the_evaluation_graph_is_the_store_snapshot(store: KnowledgeStore) -> None:
    bundle = _bundle()
    store.import_bundle(bundle, blob_id="c" * 64, replace=False, artifacts={})
    served = store.snapshot("built")
    built, probes = graph_from_bundle(bundle)

    def library(info: LibraryInfo) -> tuple:  # type: ignore[type-arg]
        return info.name, info.meta, info.models, info.datasets, info.interactions

    assert library(built.library) == library(served.library)
    assert bundle.probes is not None and len(probes) == len(bundle.probes.rows)

    built_models, served_models = _by_id(built.models, "model_id"), _by_id(served.models, "model_id")
    assert sorted(built_models) == sorted(served_models)
    for model_id, model in built_models.items():
        other = served_models[model_id]
        assert (model.metadata, model.interactions, model.artifact_blob_id) == (
            other.metadata,
            other.interactions,
            other.artifact_blob_id,
        )
        assert model.cost.train_seconds == pytest.approx(other.cost.train_seconds, rel=1e-12)
        assert model.cost.inference_seconds == pytest.approx(other.cost.inference_seconds, rel=1e-12)
        assert model.cost.memory_bytes == pytest.approx(other.cost.memory_bytes, rel=1e-12)
    assert built_models["m-unused"].cost == Cost() and built_models["m-unused"].interactions == 0

    assert _by_id(built.datasets, "dataset_id") == _by_id(served.datasets, "dataset_id")
    assert built.interactions == served.interactions  # import order, costs and provenance included
    assert sorted(built.similarities, key=repr) == sorted(served.similarities, key=repr)
    bare = _by_id(built.datasets, "dataset_id")["d-bare"]
    assert (bare.features, bare.feature_set) == ({}, "")
    assert any(s.dataset_b == "d-bare" and s.distance == pytest.approx(0.75) for s in built.similarities)


def test_a_model_cost_is_the_mean_over_the_cells_that_have_one() -> None:
    rows = [
        {"model_id": "m", "dataset_id": "a", "score": "1", "train_seconds": "2", "memory_bytes": ""},
        {"model_id": "m", "dataset_id": "b", "score": "1", "train_seconds": "", "memory_bytes": ""},
        {"model_id": "m", "dataset_id": "b", "score": "1", "train_seconds": "4", "inference_seconds": "0.5"},
    ]
    tally = GraphTally()
    for row in rows:
        tally.add(row)
    counted = tally.model("m")
    assert counted.interactions == 3 and tally.datasets == {"a": 1, "b": 2}
    assert counted.cost == Cost(train_seconds=3.0, inference_seconds=0.5, memory_bytes=0.0)  # not 2.0 and 0.1667
    assert tally.model("nobody").cost == Cost() and tally.model("nobody").interactions == 0
    assert interaction_record(rows[1]).cost == Cost()  # in the record itself an empty cell is 0


def test_a_similarity_row_is_a_distance() -> None:
    assert distance({"distance": "0.2", "similarity": "0.1"}) == 0.2
    assert distance({"distance": "", "similarity": "0.1"}) == pytest.approx(0.9)
    assert distance({"similarity": "1"}) == 0.0


def test_raw_features_are_the_features_else_numeric_metadata_but_ids() -> None:
    metadata = {"openml_id": "31", "id": "4", "n_rows": "100", "name": "credit", "skew": "nan", "n_classes": "2"}
    bare = DatasetNode("lib", "d", metadata)
    assert dataset_raw_features(bare) == {"n_rows": 100.0, "n_classes": 2.0}
    featured = DatasetNode("lib", "d", metadata, features={"log_rows": math.log(100)})
    assert dataset_raw_features(featured) == {"log_rows": math.log(100)}


def test_knn_compares_datasets_by_the_shared_raw_features() -> None:
    rows = [{"dataset_id": f"d{i}", "openml_id": str(1000 + i), "n_rows": str(10 * (i + 1))} for i in range(4)]
    bundle = Bundle(
        {"name": "bare", "higher_is_better": True},
        Table("models.csv", ["model_id"], [{"model_id": "m0"}, {"model_id": "m1"}]),
        Table("datasets.csv", ["dataset_id", "openml_id", "n_rows"], rows),
        Table(
            "interactions.csv",
            ["model_id", "dataset_id", "score"],
            [{"model_id": m, "dataset_id": r["dataset_id"], "score": "0.5"} for m in ("m0", "m1") for r in rows],
        ),
    )
    snapshot: Snapshot = snapshot_from_bundle(bundle)
    assert KnnPopularityEstimator(snapshot).feature_names == ["n_rows"]  # an id is no magnitude to compare
