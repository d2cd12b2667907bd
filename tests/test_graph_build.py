"""The one bundle -> graph conversion's rules (the whole graph against each store: tests/test_knowledge_store.py)."""

from __future__ import annotations

import math

import pytest

from modsnet.data.bundle import Bundle, Table
from modsnet.data.graph import Cost, DatasetNode, Snapshot
from modsnet.data.graph_build import (
    GraphTally,
    dataset_raw_features,
    distance,
    interaction_record,
    snapshot_from_bundle,
)
from services.recommender.estimators.knn import KnnPopularityEstimator


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
