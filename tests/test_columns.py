"""The column profiler: which metadata columns the estimators ignore, and that ignoring them changes nothing."""

from __future__ import annotations

import csv
import functools
import shutil
from pathlib import Path

import pytest
from synthetic import write_library

from modsnet.data.bundle import Table, read_bundle
from modsnet.data.columns import column_junk, junk_columns
from modsnet.data.graph import DatasetNode
from modsnet.data.graph_build import metadata_warnings, model_metadata, raw_features, snapshot_from_bundle
from services.recommender.estimators.gnn.config import GnnConfig
from services.recommender.evaluation import Method, evaluate, modsnet_method


def _table(file: str, columns: dict[str, list[str]]) -> Table:
    names = list(columns)
    n = len(next(iter(columns.values())))
    return Table(file, names, [{c: columns[c][i] for c in names} for i in range(n)])


N = 12
JUNK = {
    "Unnamed: 0": [str(i) for i in range(N)],  # a pandas index
    "rank": [str(i + 1) for i in range(N)][::-1],  # 1..n, in any order
    "source_id": [str(100 + 7 * i) for i in range(N)],  # an id by its name
    "license": ["mit"] * N,
    "mostly_empty": ["x", *[""] * (N - 1)],
    "labels": [str([f"LABEL_{k}" for k in range(2 + i % 3)]) for i in range(N)],
    "scores": [f"[{i}, {i + 1}]" for i in range(N)],
    "sha": [f"{i * 2654435761 % 2**32:08x}" for i in range(N)],
    "repo": [f"someone/model-{i}" for i in range(N)],
    "readme": [f"a model fine tuned on set {i} for {i + 2} epochs" for i in range(N)],
}
KEPT = {
    "size_mb": [f"{12.5 + 3.17 * i**1.5:.3f}" for i in range(N)],  # unique per row, but a measurement
    "n_parameters": [str(1000 * (i + 3) ** 2) for i in range(N)],  # unique integers, not a row count
    "n_features": [str(2 + i) for i in range(N)],  # consecutive from 2: a count, not an index
    "n_classes": [str(2 + i % 3) for i in range(N)],
    "family": ["tree", "linear", "bayes"] * (N // 3),
    "params": [f'{{"depth": {i}, "lr": 0.1}}' for i in range(N)],  # settings: unique, made of shared keys
    "pretrain": [f"d{i % 6}" for i in range(N)],
    "partly_empty": ["", "0.5", "", "0.7", *[""] * (N - 4)],
}


def test_junk_columns_are_named_with_their_reason() -> None:
    rows = _table("models.csv", {"model_id": [f"m{i}" for i in range(N)], **JUNK, **KEPT}).rows
    junk = junk_columns(rows, key="model_id")
    assert list(junk) == list(JUNK)
    assert junk["Unnamed: 0"].startswith("an index")
    assert junk["rank"] == "an index (1..12, one per row)"
    assert junk["source_id"] == "an id (by its name)"
    assert junk["license"] == "constant (every filled cell is 'mit')"
    assert junk["mostly_empty"].startswith("constant")
    assert junk["labels"] == junk["scores"] == "a list in each cell (free text)"
    assert junk["sha"] == junk["repo"] == "a different name in nearly every row (an id)"
    assert junk["readme"].startswith("free text")


@pytest.mark.parametrize("column", list(KEPT))
def test_near_misses_stay_usable(column: str) -> None:
    assert column_junk(column, KEPT[column]) == ""


def test_an_integer_column_equal_to_the_row_index_is_junk_a_float_one_is_not() -> None:
    assert column_junk("position", [str(i) for i in range(N)]) != ""
    assert column_junk("position", [f"{i}.5" for i in range(N)]) == ""
    # An index with gaps (rows dropped before the file was written) and empty cells is still an index.
    assert column_junk("n", ["0", "1", "", "3", "4", "6", "7", "", "9"]) != ""
    # Distinct integers far from a row count are a count.
    assert column_junk("epochs", ["0", "5", "10", "20", "40"]) == ""
    # Under an index's name, any distinct integers.
    assert column_junk("", ["17", "3", "99"]) != ""
    assert column_junk("index", ["17", "3", "17"]) == ""


def test_a_column_naming_known_datasets_is_a_reference() -> None:
    sources = [f"hfpics:label-{i}" for i in range(N)]
    assert column_junk("pretrain_dataset", sources) != ""
    assert column_junk("pretrain_dataset", sources, references=set(sources)) == ""


def test_records_metadata_and_table_rows_profile_alike() -> None:
    """Metadata dicts (a snapshot's records, the key column removed, cells missing) decide as table rows do."""
    table = _table("datasets.csv", {"dataset_id": [f"d{i}" for i in range(N)], **JUNK, **KEPT})
    records = [{k: v for k, v in row.items() if k != "dataset_id" and v != ""} for row in table.rows]
    assert junk_columns(records) == junk_columns(table.rows, key="dataset_id")


def test_estimators_read_no_junk() -> None:
    datasets = [
        DatasetNode("lib", f"d{i}", {"Unnamed: 0": str(i), "n_rows": str(100 + 37 * i), "const": "4"}) for i in range(N)
    ]
    assert all(vec == {"n_rows": float(100 + 37 * i)} for i, vec in enumerate(raw_features(datasets).values()))


def _add_columns(path: Path, junk: dict[str, list[str]]) -> None:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, [*rows[0], *junk])
        writer.writeheader()
        writer.writerows({**row, **{c: cells[i] for c, cells in junk.items()}} for i, row in enumerate(rows))


def _junk_for(n: int, prefix: str) -> dict[str, list[str]]:
    return {
        "Unnamed: 0": [str(i) for i in range(n)],
        "license": ["cc-by-4.0"] * n,
        "labels": [str([f"{prefix}_{k}" for k in range(1 + i % 4)]) for i in range(n)],
        "uid": [f"{prefix}-{(i * 2654435761) % 2**32:08x}" for i in range(n)],
    }


@pytest.fixture(scope="module")
def clean_and_junk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic library whose datasets have no feature tables (the estimators read their metadata),
    and a copy with junk columns in models.csv and datasets.csv."""
    root = tmp_path_factory.mktemp("junk")
    clean = write_library(root / "clean", n_models=8, n_datasets=10, seed=4)
    shutil.rmtree(clean / "dataset_features")
    junk = root / "junk"
    shutil.copytree(clean, junk)
    _add_columns(junk / "models.csv", _junk_for(8, "m"))
    _add_columns(junk / "datasets.csv", _junk_for(10, "d"))
    return clean, junk


def test_import_warnings_name_every_junk_column(clean_and_junk: tuple[Path, Path]) -> None:
    clean, junk = clean_and_junk
    assert metadata_warnings(read_bundle(clean)) == []
    warnings = metadata_warnings(read_bundle(junk))
    assert len(warnings) == 8
    assert "models.csv column 'Unnamed: 0': an index (0..7, one per row), ignored by the estimators" in warnings
    assert any(w.startswith("datasets.csv column 'labels': a list") for w in warnings)


def test_the_estimators_see_the_same_metadata(clean_and_junk: tuple[Path, Path]) -> None:
    clean, junk = (snapshot_from_bundle(read_bundle(p)) for p in clean_and_junk)
    assert model_metadata(junk) == model_metadata(clean)
    assert raw_features(junk.datasets) == raw_features(clean.datasets)


def test_a_bundle_with_junk_columns_evaluates_the_same(clean_and_junk: tuple[Path, Path]) -> None:
    small = GnnConfig(steps=60, members=1, hidden=16, head=8)
    gnn: Method = functools.partial(modsnet_method, config=small)
    clean, junk = (
        {
            r.method: r.per_target
            for r in evaluate(
                read_bundle(path),
                methods=["knn", "gnn"],
                targets=["d1", "d5", "d8"],
                fold_size=3,  # one fit per bundle: the property is "the same", not how well
                extra_methods={"gnn": gnn},
            ).results
        }
        for path in clean_and_junk
    )
    for method, per_target in clean.items():
        for target, metrics in per_target.items():
            for metric, value in metrics.items():
                assert value is not None
                assert junk[method][target][metric] == pytest.approx(value, abs=1e-6), (method, target, metric)
