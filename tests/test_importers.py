"""Importers of other groups' records: counts against ../shared/data/README.md, and refusals.

The shared-data tests read the real records (skipped in a clone without them); the synthetic ones build
tiny source folders so the refusal paths are tested everywhere.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from modsnet.data.bundle import Bundle, read_bundle
from modsnet.offline.importers import ImportReport
from modsnet.offline.importers.__main__ import main
from modsnet.offline.importers.oboe import import_oboe
from modsnet.offline.importers.transfergraph import import_transfergraph
from modsnet.runtime.errors import InvalidArgument

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
shared_data = pytest.mark.shared_data
_VIT = "corr_domain_similarity_google_vit_base_patch16_224_imagenet.csv"


@pytest.fixture(scope="module")
def data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data not found: other groups' records are not in this clone (see README)")
    return SHARED


@pytest.fixture(scope="module")
def imported(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ImportReport, Path]]:
    """Each library imported once (the determinism test imports a second time)."""
    out = tmp_path_factory.mktemp("bundles")
    return {
        "image": (import_transfergraph(data / "transfergraph/image", out / "image", "image"), out / "image"),
        "text": (import_transfergraph(data / "transfergraph/text", out / "text", "text"), out / "text"),
        "oboe": (import_oboe(data / "oboe", out / "oboe"), out / "oboe"),
    }


def _frame(folder: Path, file: str) -> pd.DataFrame:
    return pd.read_csv(folder / file, dtype=str, keep_default_na=False)


@shared_data
def test_transfergraph_text_counts_match_the_readme(imported: dict[str, tuple[ImportReport, Path]]) -> None:
    report, folder = imported["text"]
    assert report.library == "transfergraph-text"
    # 3,194 rows: 4 junk (dataset 0.1 / none / lora) and one line that lost its accuracy are refused.
    assert report.refused == {"junk_dataset": 4, "missing_accuracy": 1}
    # Of the 1,448 unique pairs, 1,439 have full fine-tuning: one interaction each (the best run).
    assert report.interactions == 1439
    assert report.excluded == {"peft_runs": 1433, "repeated_runs": 317}
    assert report.interactions + sum(report.excluded.values()) + sum(report.refused.values()) == 3194
    assert (report.scored_models, report.scored_datasets) == (164, 10)
    assert report.probes == 2510
    interactions = _frame(folder, "interactions.csv")
    assert interactions["runs"].astype(int).sum() == 1439 + 317
    # A pair run twice keeps its best run: Alassea/glue_sst_classifier on tweet_eval/hate (0.777 and 0.76).
    row = interactions[
        (interactions.model_id == "Alassea/glue_sst_classifier") & (interactions.dataset_id == "tweet_eval/hate")
    ]
    assert row[["score", "runs"]].values.tolist() == [["0.777", "2"]]


@shared_data
def test_transfergraph_image_counts_match_the_readme(imported: dict[str, tuple[ImportReport, Path]]) -> None:
    report, folder = imported["image"]
    assert report.library == "transfergraph-image"
    assert (report.interactions, report.scored_models, report.scored_datasets) == (2254, 180, 13)
    assert report.models == 185  # 5 configured models have no fine-tuning record
    assert report.refused == {"malformed_probe": 2}  # two broken lines in the probe records
    assert report.excluded == {"repeated_probes": 120}
    assert report.datasets == 69 and report.similarity_pairs == 69 * 68 // 2
    models = _frame(folder, "models.csv").set_index("model_id")
    assert models.at["Aftabhussain/Tomato_Leaf_Classifier", "pretrain_dataset"] == "hfpics:Bacterial_spot|Healthy"
    assert models.at["Aftabhussain/Tomato_Leaf_Classifier", "architecture"] == "ViTForImageClassification"


@shared_data
@pytest.mark.parametrize("library", ["image", "text", "oboe"])
def test_bundle_is_valid_and_closed(imported: dict[str, tuple[ImportReport, Path]], library: str) -> None:
    report, folder = imported[library]
    bundle: Bundle = read_bundle(folder)  # the reader an upload goes through
    models = set(bundle.models.column_values("model_id"))
    datasets = set(bundle.datasets.column_values("dataset_id"))
    assert len(models) == report.models and len(datasets) == report.datasets
    pairs = [(r["model_id"], r["dataset_id"]) for r in bundle.interactions.rows]
    assert len(pairs) == len(set(pairs)) == report.interactions
    assert {m for m, _ in pairs} <= models and {d for _, d in pairs} <= datasets
    scores = [float(r["score"]) for r in bundle.interactions.rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    seconds = [float(s) for s in bundle.interactions.column_values("train_seconds") if s]
    assert seconds and all(s > 0 for s in seconds)
    for probe in bundle.probes.rows if bundle.probes else []:
        assert probe["model_id"] in models and probe["dataset_id"] in datasets
        assert math.isfinite(float(probe["value"]))


@shared_data
@pytest.mark.parametrize(
    ("library", "matrix"),
    [("image", _VIT), ("text", "corr_domain_similarity_EleutherAI_gpt-neo-125m_gpt.csv")],
)
def test_similarity_follows_the_source_matrix(
    data: Path, imported: dict[str, tuple[ImportReport, Path]], library: str, matrix: str
) -> None:
    report, folder = imported[library]
    source = pd.read_csv(data / "transfergraph" / library / matrix, index_col=0)
    rows = _frame(folder, "dataset_similarity.csv")
    assert len(rows) == report.similarity_pairs
    assert (rows.dataset_a < rows.dataset_b).all()  # one row per unordered pair, no self-pairs
    checked = 0
    for a, b, distance in rows[["dataset_a", "dataset_b", "distance"]].itertuples(index=False):
        if a in source.index and b in source.index:
            assert float(distance) == pytest.approx(source.at[a, b], rel=1e-6)
            assert float(distance) == pytest.approx(source.at[b, a], rel=1e-6)  # source is symmetric
            checked += 1
    assert checked >= 45  # at least the 10 target datasets' pairs


@shared_data
def test_text_similarity_fills_gpt_neo_gaps_from_gpt2(imported: dict[str, tuple[ImportReport, Path]]) -> None:
    rows = _frame(imported["text"][1], "dataset_similarity.csv")
    dbpedia = rows[(rows.dataset_a == "dbpedia_14") | (rows.dataset_b == "dbpedia_14")]
    assert len(dbpedia) == 11 and (dbpedia.distance == dbpedia.distance_gpt2).all()
    assert "glue_cola" not in set(rows.dataset_a) | set(rows.dataset_b)  # GPT-2's alias of glue/cola


@shared_data
def test_oboe_matrix_shape(data: Path, imported: dict[str, tuple[ImportReport, Path]]) -> None:
    report, folder = imported["oboe"]
    errors = pd.read_csv(data / "oboe/error_matrix.csv", index_col=0)
    assert errors.shape == (418, 219)
    missing = int(errors.isna().sum().sum())
    assert (report.models, report.datasets) == (219, 418)
    assert report.interactions == 219 * 418 - missing
    assert report.refused == ({"missing_error": missing} if missing else {})
    interactions = _frame(folder, "interactions.csv").set_index(["model_id", "dataset_id"])
    setting = "{'algorithm': 'AB', 'hyperparameters': {'n_estimators': 50, 'learning_rate': 1}}"
    score = float(interactions.at[("AB-n_estimators=50-learning_rate=1", "openml-3"), "score"])
    assert score == pytest.approx(1 - errors.at[3, setting], rel=1e-7)
    models = _frame(folder, "models.csv").set_index("model_id")
    assert models.at["KNN-n_neighbors=5-p=1", "hyperparameters"] == '{"n_neighbors": 5, "p": 1}'


@shared_data
def test_imports_are_deterministic(data: Path, imported: dict[str, tuple[ImportReport, Path]], tmp_path: Path) -> None:
    again = {
        "image": import_transfergraph(data / "transfergraph/image", tmp_path / "image", "image"),
        "text": import_transfergraph(data / "transfergraph/text", tmp_path / "text", "text"),
        "oboe": import_oboe(data / "oboe", tmp_path / "oboe"),
    }
    for library, (report, first) in imported.items():
        assert again[library] == report
        files = sorted(str(p.relative_to(first)) for p in first.rglob("*") if p.is_file())
        assert files == sorted(
            str(p.relative_to(tmp_path / library)) for p in (tmp_path / library).rglob("*") if p.is_file()
        )
        for name in files:
            assert (first / name).read_bytes() == (tmp_path / library / name).read_bytes(), (library, name)


# --------------------------------------------------------------------------------------------------
# Synthetic sources: refusals, without the shared data.


def _write(path: Path, rows: Sequence[Sequence[object]]) -> None:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _tiny_transfergraph(folder: Path, records: Sequence[Sequence[object]]) -> Path:
    folder.mkdir()
    _write(folder / "records.csv", records)
    config = {
        "model": "a/vit",
        "input_shape": "224.0",
        "output_shape": "768.0",
        "architectures": "['ViTForImageClassification']",
        "dataset": "hfpics",
        "#labels": "2.0",
        "labels": "['beer', 'wine']",
        "accuracy": "0.9",
        "model_type": "vit",
        "number_of_parameters": "85800194.0",
    }
    _write(folder / "model_config_dataset.csv", [list(config), list(config.values())])
    _write(
        folder / "target_dataset_features.csv",
        [["finetune_dataset", "size", "number_of_classes"], ["pets", 3680, 37]],
    )
    _write(folder / _VIT, [["", "pets", "['beer', 'wine']"], ["pets", 0.0, 4.5], ["['beer', 'wine']", 4.5, 0.0]])
    _write(
        folder / "transferability_score_records.csv",
        [
            ["", "model", "target_dataset", "metric", "runtime", "score"],
            [0, "a/vit", "pets", "TransferabilityMethod.LOG_ME", 20.0, 0.9],
            [1, "s/vit", "pets", "", "", ""],  # a broken line
        ],
    )
    return folder


_HEADER = ["", "model", "finetuned_dataset", "epochs", "batch_size", "lr", "train_runtime", "eval_accuracy"]


def test_junk_rows_are_refused_and_counted(tmp_path: Path) -> None:
    src = _tiny_transfergraph(
        tmp_path / "src",
        [
            _HEADER,
            [0, "a/vit", "pets", 30, 16, 0.01, 100.0, 0.8],
            [1, "a/vit", "pets", 30, 16, 0.01, 90.0, 0.85],  # a re-run: the best is kept
            [2, "1.0", "0.1", "", "", "", "", ""],
            [3, "a/vit", "none", "", "", "", "", 0.5],
            [4, "b/vit", "pets", 30, 16, 0.01, 100.0, "n/a"],
            [5, "b/vit", "pets", 30, 16, 0.01, 100.0, 1.5],
        ],
    )
    report = import_transfergraph(src, tmp_path / "out", "image")
    assert report.refused == {
        "accuracy_out_of_range": 1,
        "junk_dataset": 2,
        "malformed_probe": 1,
        "non_numeric_accuracy": 1,
    }
    assert report.excluded == {"repeated_runs": 1}
    assert (report.interactions, report.models, report.datasets, report.similarity_pairs) == (1, 1, 2, 1)
    bundle = read_bundle(tmp_path / "out")
    assert bundle.interactions.rows == [
        {
            "model_id": "a/vit",
            "dataset_id": "pets",
            "score": "0.85",
            "train_seconds": "90",
            "epochs": "30",
            "batch_size": "16",
            "learning_rate": "0.01",
            "runs": "2",
        }
    ]
    assert bundle.models.rows[0]["pretrain_dataset"] == "hfpics:beer|wine"


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    src = _tiny_transfergraph(tmp_path / "src", [_HEADER[:-1], [0, "a/vit", "pets", 30, 16, 0.01, 100.0]])
    with pytest.raises(InvalidArgument, match=r"records\.csv: column 'eval_accuracy' is missing"):
        import_transfergraph(src, tmp_path / "out", "image")
    assert not (tmp_path / "out").exists()  # nothing partial is left
    assert main(["transfergraph", "--modality", "image", "--src", str(src), "--out", str(tmp_path / "o")]) == 2


def test_oboe_malformed_setting_column(tmp_path: Path) -> None:
    header = ["", "{'algorithm': 'GNB', 'hyperparameters': {}}", "__import__('os')"]
    _write(tmp_path / "error_matrix.csv", [header, ["00003", 0.1, 0.2]])
    _write(tmp_path / "runtime_matrix.csv", [header, ["00003", 1.0, 2.0]])
    _write(tmp_path / "dataset_sizes.csv", [["", 0, 1], [3, 3196, 36]])
    with pytest.raises(InvalidArgument, match=r"error_matrix\.csv: column \"__import__\('os'\)\" is not a setting"):
        import_oboe(tmp_path, tmp_path / "out")


def test_oboe_skips_and_counts_empty_cells(tmp_path: Path) -> None:
    header = [
        "",
        "{'algorithm': 'GNB', 'hyperparameters': {}}",
        "{'algorithm': 'KNN', 'hyperparameters': {'p': 1}}",
    ]
    _write(tmp_path / "error_matrix.csv", [header, ["00003", 0.25, ""], ["00011", "NaN", 1.5]])
    _write(tmp_path / "runtime_matrix.csv", [header, ["00003", 1.0, 2.0], ["00011", 3.0, 4.0]])
    _write(tmp_path / "dataset_sizes.csv", [["", 0, 1], [3, 3196, 36], [11, 625, 4]])
    report = import_oboe(tmp_path, tmp_path / "out", name="tiny-oboe")
    assert report.refused == {"error_out_of_range": 1, "missing_error": 2}
    bundle = read_bundle(tmp_path / "out")
    assert bundle.interactions.rows == [
        {"model_id": "GNB", "dataset_id": "openml-3", "score": "0.75", "train_seconds": "1"}
    ]
    assert bundle.datasets.rows[0] == {
        "dataset_id": "openml-11",
        "openml_id": "11",
        "n_rows": "625",
        "n_features": "4",
    }
