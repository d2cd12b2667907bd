"""XRDZoo: the generator gives a valid bundle, deterministically and resumably; every artifact kind finds peaks."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from modsnet.data.bundle import read_bundle
from modsnet.data.exemplar import load_exemplar
from modsnet.features.xrd import FEATURE_NAMES
from modsnet.models.peaks import (
    ClassicalFinder,
    NeuralFinder,
    f1_at_tolerance,
    load_finder,
    match_peaks,
    mean_position_error,
)
from modsnet.offline.zoo.xrd import Generated, generate

STRUCTURES = ["Silicon", "ZnO"]
MODELS = ["cnn-all-fold0", "deriv-g2-c0.01", "fp-g1.5-nobg-p3sd-w0"]  # one of each runnable kind, a tiny CNN
TIMING = ["inference_seconds", "train_seconds"]
LIBRARY = Path(__file__).resolve().parents[1] / "modsnet" / "libraries" / "xrdzoo"


def _generate(out: Path, work: Path) -> Generated:
    return generate(
        out,
        work,
        jobs=1,
        seed=0,
        structures=STRUCTURES,
        conditions=2,
        patterns=3,
        models=MODELS,
        train_steps=20,
        progress=None,
    )


def _files(bundle: Path) -> dict[str, bytes]:
    return {str(p.relative_to(bundle)): p.read_bytes() for p in sorted(bundle.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("xrdzoo")
    done = _generate(root / "lib", root / "work")
    datasets = pd.read_csv(root / "lib" / "datasets.csv")
    cnn_pairs = int((datasets["fold"] == 0).sum())  # the CNN of fold 0 is scored on fold 0's datasets only
    assert (done.models, done.datasets, done.trained) == (3, 4, 1)
    assert (done.interactions, done.measured, done.reused) == (8 + cnn_pairs, 8 + cnn_pairs, 0)
    return root / "lib", root / "work"


def test_bundle_is_valid_and_every_model_is_runnable(built: tuple[Path, Path]) -> None:
    bundle, _ = built
    parsed = read_bundle(bundle)
    assert parsed.meta["modality"] == "xrd" and parsed.meta["metric"] == "peak_f1"
    assert sorted(parsed.artifacts) == ["cnn-all-fold0.onnx", "deriv-g2-c0.01.json", "fp-g1.5-nobg-p3sd-w0.json"]
    assert yaml.safe_load((bundle / "library.yaml").read_text())["higher_is_better"] is True

    models = pd.read_csv(bundle / "models.csv").set_index("model_id")
    assert models.loc["cnn-all-fold0", "kind"] == "neural" and models.loc["deriv-g2-c0.01", "kind"] == "classical"
    assert json.loads(models.loc["fp-g1.5-nobg-p3sd-w0", "params"])["smooth"] == "gaussian"
    assert len((bundle / "artifacts" / "cnn-all-fold0.onnx").read_bytes()) < 200_000

    datasets = pd.read_csv(bundle / "datasets.csv").set_index("dataset_id")
    assert set(datasets["structure"]) == set(STRUCTURES)
    assert {"wavelength", "two_theta_min", "two_theta_max", "step", "noise_level", "background", "broadening"} <= set(
        datasets.columns
    )
    assert all(i.startswith(f"{s}-") for i, s in datasets["structure"].items())

    interactions = pd.read_csv(bundle / "interactions.csv")
    assert interactions["score"].between(0, 1).all() and (interactions["inference_seconds"] > 0).all()
    cnn = interactions[interactions["model_id"] == "cnn-all-fold0"]
    seen = set(models.loc["cnn-all-fold0", "trained_on_structures"].split(";"))
    assert not seen & set(datasets.loc[cnn["dataset_id"], "structure"])  # never scored on a structure it saw
    classical = interactions[interactions["model_id"] != "cnn-all-fold0"]
    assert (cnn["train_seconds"] > 0).all() and (classical["train_seconds"] == 0).all()

    features = pd.read_csv(bundle / "dataset_features" / "xrd.csv")
    assert features.columns.tolist() == ["dataset_id", *FEATURE_NAMES] and features.notna().all().all()


def test_rerun_reuses_work_and_writes_identical_files(built: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, work = built
    lines = (work / "results.jsonl").read_text().count("\n")
    done = _generate(tmp_path / "again", work)
    assert (done.measured, done.trained) == (0, 0) and done.reused == done.interactions
    assert (work / "results.jsonl").read_text().count("\n") == lines
    assert _files(tmp_path / "again") == _files(bundle)


def test_fresh_run_is_deterministic_but_for_timings(built: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, _ = built
    _generate(tmp_path / "lib", tmp_path / "work")
    fresh, first = _files(tmp_path / "lib"), _files(bundle)
    del fresh["interactions.csv"], first["interactions.csv"]
    assert fresh == first  # the retrained network's ONNX bytes included
    again, before = (pd.read_csv(path / "interactions.csv").drop(columns=TIMING) for path in (tmp_path / "lib", bundle))
    pd.testing.assert_frame_equal(again, before)


def test_resume_measures_only_what_is_missing(built: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, work = built
    copy = shutil.copytree(work, tmp_path / "work")
    lines = (work / "results.jsonl").read_text().splitlines()
    (copy / "results.jsonl").write_text("\n".join(lines[:-2]) + "\n" + lines[-2][:30])  # a torn last line
    done = _generate(tmp_path / "lib", copy)
    assert (done.measured, done.trained) == (2, 0)
    records = [json.loads(line) for line in (copy / "results.jsonl").read_text().splitlines() if line.endswith("}")]
    assert len({r["key"] for r in records}) == len(lines)
    kept = ["model_id", "dataset_id", "score", "precision", "recall"]
    resumed, whole = (pd.read_csv(path / "interactions.csv")[kept] for path in (tmp_path / "lib", bundle))
    pd.testing.assert_frame_equal(resumed, whole)


# ----------------------------------------------------------------------------------------------- finders

PLANTED = np.array([15.3, 21.7, 28.2, 33.9, 38.45, 44.1, 50.6, 55.25, 61.8, 67.3, 72.9, 77.05])


@pytest.fixture(scope="module")
def planted_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Cu Kα scan with twelve Gaussian peaks on a sloping background, counted with Poisson noise, as .xy."""
    rng = np.random.default_rng(7)
    x = np.round(np.arange(10.0, 80.0 + 1e-9, 0.02), 4)
    heights = rng.uniform(300, 3000, len(PLANTED))
    expected = 60 + 30 * (x - 10) / 70
    for centre, height in zip(PLANTED, heights, strict=True):
        expected = expected + height * np.exp(-4 * math.log(2) * ((x - centre) / 0.15) ** 2)
    path = tmp_path_factory.mktemp("scan") / "planted.xy"
    rows = "\n".join(f"{a:.4f} {b}" for a, b in zip(x, rng.poisson(expected), strict=True))
    path.write_text("# wavelength = 1.5406 Angstrom\n" + rows + "\n")
    return path


def _best_of(family: str) -> Path:
    """The artifact of the committed library's best finder (mean score) of a family."""
    models = pd.read_csv(LIBRARY / "models.csv").set_index("model_id")
    scores = pd.read_csv(LIBRARY / "interactions.csv").groupby("model_id")["score"].mean()
    best = scores[models.loc[scores.index, "family"] == family].idxmax()
    return LIBRARY / "artifacts" / models.loc[best, "artifact"]


@pytest.mark.parametrize("family", ["find_peaks", "derivative", "cwt", "cnn"])
def test_each_artifact_kind_finds_planted_peaks(planted_scan: Path, family: str) -> None:
    """The committed library's artifacts run as `modsnet run` will run them: an uploaded file, then load_finder."""
    (scan,) = load_exemplar(planted_scan, name="planted.xy").scans
    artifact = _best_of(family)
    finder = load_finder(artifact)
    assert isinstance(finder, NeuralFinder if artifact.suffix == ".onnx" else ClassicalFinder)
    found = finder.find(scan.two_theta, scan.intensity)
    assert f1_at_tolerance(found, PLANTED, 0.1) >= 0.8
    assert mean_position_error(found, PLANTED, 0.1) < 0.05


@pytest.mark.parametrize("artifact", ["deriv-g2-c5sd.json", "cnn-all-fold0.onnx"])
def test_a_suffixless_blob_or_bytes_load_as_the_file_does(planted_scan: Path, tmp_path: Path, artifact: str) -> None:
    """Storage hands back content-addressed blobs: the kind is read from the content."""
    (scan,) = load_exemplar(planted_scan, name="planted.xy").scans
    data = (LIBRARY / "artifacts" / artifact).read_bytes()
    blob = tmp_path / hashlib.sha256(data).hexdigest()
    blob.write_bytes(data)
    expected = load_finder(LIBRARY / "artifacts" / artifact).find(scan.two_theta, scan.intensity)
    for source in (blob, data):
        np.testing.assert_array_equal(load_finder(source).find(scan.two_theta, scan.intensity), expected)
    with pytest.raises(ValueError, match="not an ONNX model"):
        load_finder(b"\x00 not a model")


def test_a_spec_dict_and_its_file_are_the_same_finder(planted_scan: Path) -> None:
    (scan,) = load_exemplar(planted_scan, name="planted.xy").scans
    spec = json.loads((LIBRARY / "artifacts" / "fp-sg7-bg2-p5sd-w3.json").read_text())
    from_file = load_finder(LIBRARY / "artifacts" / "fp-sg7-bg2-p5sd-w3.json").find(scan.two_theta, scan.intensity)
    np.testing.assert_array_equal(load_finder(spec).find(scan.two_theta, scan.intensity), from_file)
    with pytest.raises(ValueError, match="unknown keys"):
        load_finder({**spec, "promience": 0.1})
    with pytest.raises(ValueError, match="unknown peak finder kind"):
        load_finder({"kind": "magic"})


def test_f1_and_position_error_by_hand() -> None:
    found = np.array([10.0, 20.05, 30.3, 40.0])
    true = np.array([10.02, 20.0, 30.0, 50.0])
    match = match_peaks(found, true, 0.1)
    assert (match.matched, match.precision, match.recall) == (2, 0.5, 0.5)
    assert f1_at_tolerance(found, true) == pytest.approx(0.5)  # 2·2 / (4 + 4)
    assert mean_position_error(found, true) == pytest.approx(0.035)  # (0.02 + 0.05) / 2
    # Nearest-first matching would pair 0.2 with 0.12 and strand both others; a maximum matching pairs all.
    assert f1_at_tolerance(np.array([0.05, 0.2]), np.array([0.12, 0.3])) == pytest.approx(1.0)
    assert f1_at_tolerance(np.array([]), np.array([])) == 1.0
    assert f1_at_tolerance(np.array([]), np.array([1.0])) == 0.0
    assert math.isnan(mean_position_error(np.array([5.0]), np.array([1.0])))
