"""Columnar interactions: the same records as a list, in 41 bytes each, on the wire and in the estimators."""

from __future__ import annotations

import random

import numpy as np
import pytest

from modsnet.data.graph import Cost, InteractionColumns, InteractionRecord, pair_sums
from modsnet.data.graph_build import interaction_columns_from_rows
from modsnet.runtime.convert import interaction_columns, interactions_from_columns
from modsnet.runtime.errors import DataLoss


def _records(n: int = 200, seed: int = 0) -> list[InteractionRecord]:
    rng = random.Random(seed)
    return [
        InteractionRecord(
            f"m{rng.randrange(12)}",
            f"d{rng.randrange(9)}",
            rng.random(),
            Cost(rng.random(), rng.random() / 10, float(rng.randrange(10**6))),
            rng.choice(["imported", "feedback", "probe"]),
            f"r{k}" if k % 17 == 0 else "",
            "odd" if k % 23 == 0 else "",
        )
        for k in range(n)
    ]


def test_the_columns_are_the_records() -> None:
    records = _records()
    columns = InteractionColumns.from_records(records, ["m3", "m0"], [])
    assert len(columns) == len(records) and list(columns) == records and columns == records
    assert columns[0] == records[0] and columns[-1] == records[-1]
    assert list(columns[10:20]) == records[10:20]
    assert columns.model_ids[:2] == ["m3", "m0"]  # the given vocabulary first, then ids in order of appearance
    with pytest.raises(IndexError):
        columns[len(records)]


def test_filtering_reordering_and_joining_keep_every_field() -> None:
    records = _records()
    columns = InteractionColumns.from_records(records)
    hidden = {"d1", "d4"}
    assert list(columns.without_datasets(hidden)) == [r for r in records if r.dataset_id not in hidden]
    mask = columns.score > 0.5
    assert list(columns.take(mask)) == [r for r in records if r.score > 0.5]
    other = columns.over(sorted(columns.model_ids, reverse=True), ["d8", *sorted(columns.dataset_ids)])
    assert other.model_ids[0] == "m9" and other.dataset_ids[0] == "d8" and list(other) == records
    joined = InteractionColumns.concat([columns[:50], columns[50:]])
    assert list(joined) == records
    assert columns.rated_dataset_ids() == sorted({r.dataset_id for r in records})


def test_pair_sums_add_as_the_record_loop_did() -> None:
    records = _records(500, seed=1)
    models, datasets = [f"m{j}" for j in range(12)], [f"d{i}" for i in range(9)]
    total, count = pair_sums(InteractionColumns.from_records(records), models, datasets)
    loop_total, loop_count = np.zeros((9, 12)), np.zeros((9, 12))
    for r in records:
        loop_total[datasets.index(r.dataset_id), models.index(r.model_id)] += r.score
        loop_count[datasets.index(r.dataset_id), models.index(r.model_id)] += 1
    assert np.array_equal(total, loop_total) and np.array_equal(count, loop_count)  # same order, same floats


def test_the_wire_carries_positions_and_refuses_bad_ones() -> None:
    records = [r for r in _records() if not r.request_id and not r.quarantine]  # the wire carries neither
    columns = InteractionColumns.from_records(records)
    models, datasets = sorted(columns.model_ids), sorted(columns.dataset_ids)
    message = interaction_columns(columns, {m: j for j, m in enumerate(models)}, {d: i for i, d in enumerate(datasets)})
    back = interactions_from_columns(message, models, datasets)
    assert list(back) == records
    message.model_index[3] = len(models)
    with pytest.raises(DataLoss, match="model"):
        interactions_from_columns(message, models, datasets)


def test_bundle_rows_become_columns_with_empty_costs_as_zero() -> None:
    rows = [
        {"model_id": "a", "dataset_id": "x", "score": "0.5", "train_seconds": "", "provenance": ""},
        {"model_id": "b", "dataset_id": "x", "score": "1e-3", "train_seconds": "2.5", "request_id": "r1"},
    ]
    columns = interaction_columns_from_rows(rows, ["b", "a"], ["x"])
    assert list(columns) == [
        InteractionRecord("a", "x", 0.5, Cost(0.0, 0.0, 0.0), "imported"),
        InteractionRecord("b", "x", 0.001, Cost(2.5, 0.0, 0.0), "imported", "r1"),
    ]
