"""The synthetic library generator: a valid bundle, deterministic, power-law shaped, with learnable scores."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modsnet.data.bundle import CsvRows, read_bundle
from modsnet.offline.synthetic_library import TABZOO_FEATURES, LibrarySpec, generate, main
from modsnet.runtime.errors import InvalidArgument
from services.knowledge.backends.sqlite import SqliteKnowledgeStore

SPEC = LibrarySpec(models=3000, datasets=300, interactions=24_000, seed=3)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(SPEC, tmp_path_factory.mktemp("synthetic") / "lib")


def test_it_is_a_valid_bundle_that_imports(library: Path, tmp_path: Path) -> None:
    bundle = read_bundle(library)  # every check an upload goes through
    assert (len(bundle.models.rows), len(bundle.datasets.rows), len(bundle.interactions.rows)) == (3000, 300, 24_000)
    pairs = {(r["model_id"], r["dataset_id"]) for r in bundle.interactions.rows}
    assert len(pairs) == 24_000
    assert {r["model_id"] for r in bundle.interactions.rows} == {r["model_id"] for r in bundle.models.rows}
    assert {r["dataset_id"] for r in bundle.interactions.rows} == {r["dataset_id"] for r in bundle.datasets.rows}
    keys = [(r["dataset_id"], r["model_id"]) for r in bundle.interactions.rows]
    assert keys == sorted(keys)  # the canonical order export writes
    store = SqliteKnowledgeStore(tmp_path / "k.sqlite3")
    info, _ = store.import_bundle(bundle, blob_id="a" * 64, replace=False, artifacts={})
    assert (info.models, info.datasets, info.interactions) == (3000, 300, 24_000)
    snap = store.snapshot(SPEC.library_name)
    assert all(0.5 <= r.score <= 1.0 and r.cost.train_seconds > 0 for r in snap.interactions)
    store.close()


def test_same_seed_same_bytes_other_seed_other_bytes(library: Path, tmp_path: Path) -> None:
    again = generate(SPEC, tmp_path / "again")
    other = generate(LibrarySpec(3000, 300, 24_000, seed=4), tmp_path / "other")
    for name in ("models.csv", "datasets.csv", "interactions.csv", "dataset_features/tabular.csv"):
        assert (library / name).read_bytes() == (again / name).read_bytes(), name
    assert (library / "interactions.csv").read_bytes() != (other / "interactions.csv").read_bytes()


def test_popularity_is_a_power_law_and_features_are_tabzoos(library: Path) -> None:
    rows = pd.read_csv(library / "interactions.csv")
    per_model = np.sort(np.array(list(Counter(rows["model_id"]).values())))[::-1]
    # A head of popular models and a long tail: a tenth of the models carry over 30% of the records.
    assert per_model[: len(per_model) // 10].sum() >= 0.3 * per_model.sum()
    assert per_model[0] >= 10 * np.median(per_model) and per_model[-1] >= 1
    per_dataset = np.sort(np.array(list(Counter(rows["dataset_id"]).values())))[::-1]
    assert per_dataset[: len(per_dataset) // 10].sum() >= per_dataset.sum() / 5
    features = pd.read_csv(library / "dataset_features" / "tabular.csv")
    real = pd.read_csv(TABZOO_FEATURES)
    assert list(features.columns) == list(real.columns)
    for column in ("log_rows", "class_entropy", "share_numeric"):  # the real tables' ranges
        assert (
            real[column].min() - 1e-9 <= features[column].min() <= features[column].max() <= real[column].max() + 1e-9
        )


def test_scores_carry_structure_an_estimator_can_learn(library: Path) -> None:
    rows = pd.read_csv(library / "interactions.csv")
    models = pd.read_csv(library / "models.csv").set_index("model_id")
    rows["family"] = models.loc[rows["model_id"], "family"].to_numpy()
    # Family x dataset means explain most of the variance: the planted low-rank part beats the noise.
    cell = rows.groupby(["family", "dataset_id"])["score"].transform("mean")
    counts = rows.groupby(["family", "dataset_id"])["score"].transform("size")
    crowded = counts >= 10
    explained = 1 - ((rows["score"] - cell)[crowded] ** 2).mean() / rows["score"][crowded].var()
    assert explained > 0.5


def test_refuses_impossible_sizes_and_a_full_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--models", "10", "--datasets", "10", "--interactions", "5", "--out", str(tmp_path / "x")])
    assert "at least max(models, datasets)" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(SystemExit):
        main(["--models", "10", "--datasets", "10", "--interactions", "20", "--out", str(tmp_path / "full")])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".synthetic-")]


def test_a_bad_row_at_the_end_is_refused_before_anything_is_stored(library: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(library, bad)
    with open(bad / "interactions.csv", "a", encoding="utf-8") as handle:
        handle.write("m0000,d000,0.7,-1,0,0\n")  # a negative cost on the last line
    with pytest.raises(InvalidArgument, match=r"interactions.csv line 24002, column 'train_seconds': '-1' is negative"):
        read_bundle(bad)
    bundle = read_bundle(library)
    rows = bundle.interactions.rows
    assert isinstance(rows, CsvRows) and len(rows) == 24_000  # streamed from the file, not kept
    assert list(rows)[:3] == list(rows)[:3] and rows[5]["model_id"] == list(rows)[5]["model_id"]
    store = SqliteKnowledgeStore(tmp_path / "k.sqlite3")
    assert store.list_libraries() == []
    store.close()
