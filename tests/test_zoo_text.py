"""TextZoo: the generator on two tiny tasks, a text search answered from it, probes, run and download."""

from __future__ import annotations

import gettext
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from modsnet.embedded import EmbeddedCluster
from modsnet.features.text import FEATURE_NAMES
from modsnet.models import text as text_models
from modsnet.models.runner import run_model
from modsnet.offline.zoo.text import DatasetSource, dataset_sources, generate
from modsnet.runtime.errors import InvalidArgument, NotFound

MODELS = ["glove50--centroid", "minilm-l3--logreg-c1", "tfidf-char--linsvm-c0.1", "tfidf-word--naive-bayes"]
TOPICS = {
    "weather": ["rain", "sun", "cloud", "storm", "wind", "snow", "forecast", "cold", "warm", "humid", "thunder", "fog"],
    "cooking": [
        "oven",
        "pan",
        "salt",
        "garlic",
        "onion",
        "bake",
        "roast",
        "recipe",
        "butter",
        "flour",
        "simmer",
        "spice",
    ],
    "football": [
        "goal",
        "match",
        "striker",
        "keeper",
        "league",
        "referee",
        "penalty",
        "pitch",
        "coach",
        "score",
        "team",
        "cup",
    ],
}
FILLER = ["the", "a", "today", "we", "it", "was", "very", "really", "and", "then", "so", "quite"]


def _corpus(topics: list[str], n: int, seed: int) -> pd.DataFrame:
    """Short texts whose topic words say their label, with filler: a task a good model gets mostly right."""
    rng = np.random.default_rng(seed)
    labels = [topics[i % len(topics)] for i in range(n)]
    texts = []
    for label in labels:
        words = list(rng.choice(TOPICS[label], 4)) + list(rng.choice(FILLER, 5))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return pd.DataFrame({"text": texts, "label": labels})


SOURCES = [
    DatasetSource("tiny-weather-cooking", "tiny-a", "made here", lambda: _corpus(["weather", "cooking"], 60, 1)),
    DatasetSource("tiny-three-topics", "tiny-b", "made here", lambda: _corpus(list(TOPICS), 60, 2)),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("textzoo")
    done = generate(root / "textzoo", root / "work", jobs=1, seed=0, models=MODELS, sources=SOURCES, progress=None)
    assert (done.models, done.datasets, done.interactions, done.measured, done.reused) == (4, 2, 8, 8, 0)
    return root / "textzoo", root / "work"


def test_bundle_is_valid_with_a_spec_per_model(built: tuple[Path, Path]) -> None:
    bundle, _ = built
    manifest = yaml.safe_load((bundle / "library.yaml").read_text())
    assert manifest["name"] == "textzoo" and manifest["modality"] == "text"
    assert manifest["metric"] == "balanced_accuracy" and manifest["higher_is_better"] is True
    interactions = pd.read_csv(bundle / "interactions.csv")
    assert (interactions["status"] == "ok").all() and interactions["score"].between(0, 1).all()
    # The topic words give the label away: every model beats chance (0.5 and 0.33) clearly.
    chance = interactions["dataset_id"].map({"tiny-weather-cooking": 0.5, "tiny-three-topics": 1 / 3})
    assert (interactions["score"] > chance + 0.2).all(), interactions
    assert (interactions["memory_bytes"] > 0).all() and (interactions["inference_seconds"] > 0).all()
    features = pd.read_csv(bundle / "dataset_features" / "text.csv")
    assert list(features.columns) == ["dataset_id", *FEATURE_NAMES] and len(features) == 2
    models = pd.read_csv(bundle / "models.csv")
    for row in models.itertuples():
        spec = json.loads((bundle / "artifacts" / row.artifact).read_text())
        assert spec["model_id"] == row.model_id and spec["head"]["estimator"] == row.estimator
        if row.encoder.startswith("minilm"):
            assert spec["encoder"]["format"] == "onnx" and len(spec["encoder"]["sha256"]) == 64
    assert set(pd.read_csv(bundle / "datasets.csv")["source_group"]) == {"tiny-a", "tiny-b"}


def test_rerun_reuses_every_measurement(built: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, work = built
    again = generate(tmp_path / "again", work, jobs=1, seed=0, models=MODELS, sources=SOURCES, progress=None)
    assert (again.measured, again.reused) == (0, 8)
    for name in ("interactions.csv", "datasets.csv", "models.csv", "dataset_features/text.csv"):
        assert (tmp_path / "again" / name).read_bytes() == (bundle / name).read_bytes(), name


def test_a_text_csv_is_answered_from_the_text_library_then_run_and_downloaded(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, _ = built
    upload = tmp_path / "mine.csv"
    _corpus(["weather", "football"], 90, 7).to_csv(upload, index=False)
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, gnn_members=1, gnn_steps=50) as cluster:
        client = cluster.client
        client.import_library(bundle)
        answer = client.search(upload, k=4, probe_budget=2)  # no library named: the one text library answers
        assert answer.library == "textzoo" and answer.dataset.modality == "text"
        assert {m.model_id for m in answer.models} == set(MODELS)
        evidence = {e.dataset_id for m in answer.models for e in m.evidence}
        assert evidence and evidence <= {s.dataset_id for s in SOURCES}
        # Probes fitted heads on the upload's own texts and scored them as the library did.
        assert answer.probes and all(p.kind == "score" and 0 <= p.value <= 1 for p in answer.probes)
        assert all(p.whole and "CV on 90 of 90 texts, as the library measures" in p.detail for p in answer.probes)
        model = client.find_model("tfidf-word--naive-bayes", "textzoo")
        library = next(lib for lib in client.list_libraries() if lib.name == "textzoo")
        spec = json.loads(client.download_model(model.model_id, tmp_path).read_text())
        assert spec["head"] == {"estimator": "NaiveBayes", "id": "naive-bayes", "params": {}}
    head = tmp_path / "head.npz"
    printed = run_model(model, "text", None, upload, library=library, save=head)
    assert "tfidf-word--naive-bayes on mine.csv (labels 'label', 90 of 90 texts, 3-fold stratified CV)" in printed
    score = float(printed.split("balanced accuracy ")[1].split(",")[0])
    assert score > 0.8, printed
    with np.load(head, allow_pickle=False) as saved:  # a safe format: no pickle inside
        assert json.loads(str(saved["header"]))["model_id"] == "tfidf-word--naive-bayes"
        assert sorted(saved["complementnb.classes"].tolist()) == ["football", "weather"]
    unlabelled = tmp_path / "unlabelled.csv"
    texts = ["one text here about it", "another text there about that", "a third text about nothing"]
    pd.DataFrame({"id": [1, 2, 3], "text": texts}).to_csv(unlabelled, index=False)
    with pytest.raises(InvalidArgument, match="no label column"):
        run_model(model, "text", None, unlabelled, library=library)


def test_a_probe_reads_what_the_library_recorded_for_the_same_texts(built: tuple[Path, Path], tmp_path: Path) -> None:
    """A library dataset's own texts uploaded: each probe reads the library's record for it, as the same protocol
    (sample, folds, seed) measured it, whatever the search's seed; the probes come back in the order asked."""
    from modsnet.data.exemplar import load_exemplar
    from modsnet.data.graph import LibraryInfo, ModelNode
    from modsnet.models.textprobe import measure_text

    bundle, _ = built
    source = SOURCES[1]
    upload = tmp_path / "tiny.csv"
    source.load().to_csv(upload, index=False)
    library = LibraryInfo("textzoo", {"modality": "text", "metric": "balanced_accuracy"}, 4, 2, 8, 1, "", 0.0)
    exemplar = load_exemplar(upload, name="tiny.csv", modality="text")
    asked = list(reversed(MODELS))  # a transformer first: it is run last, the cheap encoders cannot wait for it
    probes = measure_text(library, exemplar, [(ModelNode("textzoo", m, {}), None) for m in asked], float("inf"), 7)
    assert [p.model_id for p in probes] == asked
    assert all(p.whole and p.detail.endswith("on 60 of 60 texts, as the library measures") for p in probes)
    records = pd.read_csv(bundle / "interactions.csv").query("dataset_id == @source.dataset_id")
    recorded = dict(zip(records["model_id"], records["score"], strict=True))
    assert {p.model_id: p.value for p in probes} == pytest.approx(recorded, abs=1e-6)


def test_a_transformer_that_cannot_embed_the_sample_in_time_costs_a_chunk_and_no_other_probe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`embed_by` gives an embedding up as soon as its pace says it cannot finish: a transformer made to take
    20 ms a text (20 s for the 1,000-text sample) is dropped after its first chunk, and the probes of the cheap
    encoders asked after it are still measured, in time. With time enough, `embed_by` is `embed`."""
    import time

    from modsnet.data.exemplar import load_exemplar
    from modsnet.data.graph import LibraryInfo, ModelNode
    from modsnet.models.textprobe import measure_text

    upload = tmp_path / "many.csv"
    _corpus(["weather", "cooking"], 1_500, 3).to_csv(upload, index=False)
    exemplar = load_exemplar(upload, name="many.csv", modality="text")
    texts = list(exemplar.texts[:300])
    assert np.array_equal(text_models.embed_by("glove50", texts, float("inf"))[0], text_models.embed("glove50", texts))
    real = text_models.embed
    slow: list[int] = []

    def paced(encoder_id: str, chunk: Any) -> np.ndarray:
        if encoder_id in text_models.TRANSFORMERS:
            slow.append(len(chunk))
            time.sleep(0.02 * len(chunk))
            return np.zeros((len(chunk), 384), dtype=np.float32)
        return real(encoder_id, chunk)

    monkeypatch.setattr(text_models, "embed", paced)
    library = LibraryInfo("textzoo", {"modality": "text", "metric": "balanced_accuracy"}, 4, 2, 8, 1, "", 0.0)
    started = time.perf_counter()
    probes = measure_text(
        library, exemplar, [(ModelNode("textzoo", m, {}), None) for m in reversed(MODELS)], started + 8.0, 0
    )
    assert time.perf_counter() - started < 8.0
    assert [p.model_id for p in probes] == ["tfidf-word--naive-bayes", "tfidf-char--linsvm-c0.1", "glove50--centroid"]
    assert all(p.detail.endswith("on 1000 of 1500 texts, as the library measures") for p in probes)
    assert slow == [1, 32]  # the weights' load, then one chunk: its pace said 1,000 texts would not fit
    # The next round of the search, with less time: the transformer is skipped at once, the kept embedding reused.
    monkeypatch.setattr(text_models, "embed", lambda *args: pytest.fail("embedded again"))
    again = measure_text(
        library,
        exemplar,
        [(ModelNode("textzoo", MODELS[1], {}), None), (ModelNode("textzoo", MODELS[0], {}), None)],
        time.perf_counter() + 7.0,
        0,
    )
    assert [p.model_id for p in again] == ["glove50--centroid"] and again[0].value == probes[-1].value


def test_every_model_id_round_trips_and_the_library_is_large_enough() -> None:
    models = text_models.text_models()
    assert len(models) >= 80 and all(text_models.text_model(m.model_id) == m for m in models)
    assert text_models.text_model("minilm-l6--no-such-head") is None
    sources = dataset_sources()
    assert len(sources) >= 45 and len({s.dataset_id for s in sources}) == len(sources)


@pytest.fixture
def locale_packages(monkeypatch: pytest.MonkeyPatch) -> object:
    """`text.LOCALE_PACKAGES` to patch, with the catalogue list read again before and after."""
    from modsnet.offline.zoo import text as text_zoo

    if shutil.which("dpkg") is None:
        pytest.skip("the translations tasks read Debian packages")
    text_zoo._locale_catalogues.cache_clear()
    yield lambda packages: monkeypatch.setattr(text_zoo, "LOCALE_PACKAGES", packages)
    text_zoo._locale_catalogues.cache_clear()


def test_translations_read_only_the_catalogues_of_the_named_packages(locale_packages: Any) -> None:
    from modsnet.offline.zoo import text as text_zoo

    assert set(text_zoo.LOCALE_PACKAGES) <= set(text_zoo.DEBIAN_PACKAGES)  # setup_debian installs them
    notes = [s.source for s in dataset_sources() if s.dataset_id.startswith("translations-")]
    assert len(notes) == 4 and all(f"{p} " in n and "absent" not in n for n in notes for p in text_zoo.LOCALE_PACKAGES)
    # With sed alone, a task holds sed's messages only, not those of the other catalogues the host has.
    locale_packages(("sed",))
    assert {p.name for paths in text_zoo._locale_catalogues().values() for p in paths} == {"sed.mo"}
    expected = set()
    for language in ("de", "fr"):
        with open(f"/usr/share/locale/{language}/LC_MESSAGES/sed.mo", "rb") as handle:
            catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
        expected |= {
            " ".join(m.split()) for k, m in catalog.items() if isinstance(k, str) and k and len(m.split()) >= 3
        }
    frame = text_zoo._translations(["de", "fr"])
    assert set(frame["label"]) == {"de", "fr"} and set(frame["text"]) == expected


def test_translations_name_a_missing_package(locale_packages: Any) -> None:
    from modsnet.offline.zoo import text as text_zoo

    locale_packages(("no-such-package-here",))
    with pytest.raises(RuntimeError, match="Debian package no-such-package-here is not installed"):
        text_zoo._translations(["de"])


# ----------------------------------------------------------------------------------------------- transfer models

TRANSFER = "glove50--mlp128-on-tiny-three-topics--logreg-c1"
TRANSFER_MODELS = ["glove50--centroid", TRANSFER]


@pytest.fixture(scope="module")
def transfer_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("textzoo-transfer")
    done = generate(
        root / "textzoo",
        root / "work",
        jobs=1,
        seed=0,
        models=TRANSFER_MODELS,
        sources=SOURCES,
        trunk_sources=["tiny-three-topics"],
        progress=None,
    )
    assert (done.models, done.interactions, done.measured) == (2, 4, 4)
    return root / "textzoo"


def test_a_trunk_is_deterministic_and_its_npz_round_trips() -> None:
    from modsnet.models.heads import TrunkSpec, load_trunk, train_trunk, trunk_npz

    frame = _corpus(list(TOPICS), 60, 3)
    vectors = text_models.embed("glove50", frame["text"].tolist())
    spec = TrunkSpec("tiny")
    first, second = train_trunk(vectors, frame["label"], spec), train_trunk(vectors, frame["label"], spec)
    assert first.coef.shape == (50, 128) and first.features(vectors).shape == (60, 128)
    assert all(np.array_equal(a, b) for a, b in zip(first.arrays().values(), second.arrays().values(), strict=True))
    data = trunk_npz({"model_id": "m"}, first)
    assert data == trunk_npz({"model_id": "m"}, second)  # byte for byte: the bundle is deterministic
    with np.load(io.BytesIO(data), allow_pickle=False) as saved:
        assert sorted(saved.files) == ["header", "trunk.coef", "trunk.intercept", "trunk.mean", "trunk.scale"]
    loaded = load_trunk(data, "m")
    assert np.array_equal(loaded.features(vectors), first.features(vectors))
    with pytest.raises(InvalidArgument, match="holds the trunk of 'm'"):
        load_trunk(data, "other")
    with pytest.raises(InvalidArgument, match="not a trunk"):
        load_trunk(b"not a zip", "m")


def test_transfer_model_ids_name_encoder_source_and_head() -> None:
    model = text_models.text_model(TRANSFER)
    assert model is not None and model.trunk is not None
    assert (model.encoder.encoder_id, model.trunk.source, model.trunk.hidden, model.head.head_id) == (
        "glove50",
        "tiny-three-topics",
        128,
        "logreg-c1",
    )
    assert text_models.text_model("tfidf-word--mlp128-on-x--logreg-c1") is None  # a trunk needs dense embeddings
    assert text_models.text_model("glove50--mlp128-on-x--knn-5") is None  # transfer models fit logistic regression
    with pytest.raises(ValueError, match="give its trunk"):
        text_models.evaluate(model, ["a b"] * 6, ["x", "y"] * 3, seed=0)
    from modsnet.offline.zoo.text import TRUNK_SOURCES, library_models

    transfer = [m for m in library_models() if m.trunk is not None]
    assert len(transfer) >= 30 and {m.trunk.source for m in transfer if m.trunk} == set(TRUNK_SOURCES)
    assert set(TRUNK_SOURCES) <= {s.dataset_id for s in dataset_sources()}


def test_a_transfer_model_ships_its_trunk_and_is_measured_honestly_on_its_source(transfer_built: Path) -> None:
    models = pd.read_csv(transfer_built / "models.csv", keep_default_na=False).set_index("model_id")
    assert models.loc[TRANSFER, "trunk"] == "mlp128-on-tiny-three-topics"
    assert models.loc[TRANSFER, "trunk_source_dataset"] == "tiny-three-topics"
    assert models.loc[TRANSFER, "artifact"] == f"{TRANSFER}.npz" and models.loc["glove50--centroid", "trunk"] == ""
    with np.load(transfer_built / "artifacts" / f"{TRANSFER}.npz", allow_pickle=False) as saved:
        header = json.loads(str(saved["header"]))
        assert header["trunk"]["source_dataset"] == "tiny-three-topics" and saved["trunk.coef"].shape == (50, 128)
        assert header["trunk_training"]["classes"] == sorted(TOPICS)
    scores = pd.read_csv(transfer_built / "interactions.csv").set_index(["model_id", "dataset_id"])["score"]
    # The trunk transfers: the two-topic task is read off the three-topic trunk's features.
    assert scores[(TRANSFER, "tiny-weather-cooking")] > 0.8
    assert scores[(TRANSFER, "tiny-three-topics")] > 0.6  # a trunk trained inside each fold: no row seen twice
    assert "transfer models" in yaml.safe_load((transfer_built / "library.yaml").read_text())["description"]


def test_growing_a_bundle_measures_only_the_new_models_and_equals_a_fresh_build(
    transfer_built: Path, tmp_path: Path
) -> None:
    kwargs = {"jobs": 1, "seed": 0, "sources": SOURCES, "trunk_sources": ["tiny-three-topics"], "progress": None}
    first = generate(tmp_path / "zoo", tmp_path / "work-a", models=TRANSFER_MODELS[:1], **kwargs)
    assert (first.measured, first.reused) == (2, 0)
    # Another work folder: what is reused comes from the bundle, not from the results log.
    grown = generate(tmp_path / "zoo", tmp_path / "work-b", models=TRANSFER_MODELS, reuse=tmp_path / "zoo", **kwargs)
    assert (grown.measured, grown.reused) == (2, 2)
    columns = ["model_id", "dataset_id", "score", "accuracy", "status"]
    fresh = pd.read_csv(transfer_built / "interactions.csv")[columns]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "zoo" / "interactions.csv")[columns], fresh)
    for name in ("models.csv", "datasets.csv", "dataset_features/text.csv", f"artifacts/{TRANSFER}.npz"):
        assert (tmp_path / "zoo" / name).read_bytes() == (transfer_built / name).read_bytes(), name
    # A bundle of another protocol (here: another seed) is not reused.
    other = generate(
        tmp_path / "other",
        tmp_path / "work-c",
        models=TRANSFER_MODELS[:1],
        reuse=tmp_path / "zoo",
        **kwargs | {"seed": 1},
    )
    assert other.reused == 0


def test_a_transfer_model_is_probed_and_run_with_the_trunk_of_its_artifact(
    transfer_built: Path, tmp_path: Path
) -> None:
    from modsnet.data.exemplar import load_exemplar
    from modsnet.data.graph import LibraryInfo, ModelNode
    from modsnet.models.probing import can_probe, measure

    library = LibraryInfo("textzoo", yaml.safe_load((transfer_built / "library.yaml").read_text()), 2, 2, 4, 1, "", 0.0)
    metadata = pd.read_csv(transfer_built / "models.csv", dtype=str, keep_default_na=False).set_index("model_id")
    node = ModelNode("textzoo", TRANSFER, dict(metadata.loc[TRANSFER]), artifact_blob_id="blob")
    artifact = (transfer_built / "artifacts" / f"{TRANSFER}.npz").read_bytes()
    assert can_probe(library, node)
    assert not can_probe(library, ModelNode("textzoo", TRANSFER, {**metadata.loc[TRANSFER], "artifact": ""}))
    upload = tmp_path / "mine.csv"
    _corpus(["cooking", "football"], 60, 9).to_csv(upload, index=False)
    exemplar = load_exemplar(upload, name=upload.name, modality="text", target="label")
    probes = measure(library, exemplar, [(node, artifact)], budget_seconds=60)
    assert [p.model_id for p in probes] == [TRANSFER] and probes[0].value > 0.8
    assert measure(library, exemplar, [(node, None)], budget_seconds=60) == []  # no trunk, no probe
    head = tmp_path / "head.npz"
    printed = run_model(node, "text", artifact, upload, library=library, save=head)
    assert f"{TRANSFER} on mine.csv" in printed and float(printed.split("balanced accuracy ")[1].split(",")[0]) > 0.8
    with np.load(head, allow_pickle=False) as saved:  # the fitted model: the trunk it ran with, then the head
        assert np.array_equal(saved["trunkfeatures.coef"], load_trunk_coef(artifact))
    with pytest.raises(NotFound, match="trunk"):
        run_model(node, "text", None, upload, library=library)


def load_trunk_coef(artifact: bytes) -> np.ndarray:
    with np.load(io.BytesIO(artifact), allow_pickle=False) as saved:
        return np.asarray(saved["trunk.coef"])


def _noise(n: int) -> pd.DataFrame:
    """Texts of random words with random labels: nothing to learn, only to memorise."""
    rng = np.random.default_rng(5)
    words = [w for topic in TOPICS.values() for w in topic] + FILLER
    texts = [" ".join(rng.choice(words, 6)) for _ in range(n)]
    labels = [["x", "y", "z"][i % 3] for i in range(n)]
    rng.shuffle(labels)
    return pd.DataFrame({"text": texts, "label": labels})


def test_a_trunk_never_scores_texts_it_was_trained_on(tmp_path: Path) -> None:
    """A task sharing texts with a trunk's source (here: a subset with the same random labels) is scored with
    a trunk trained, fold by fold, without the held-out texts; the shipped trunk has memorised them."""
    from modsnet.models.heads import TrunkSource, load_trunk, train_trunk

    noise = DatasetSource("tiny-noise", "noise", "made here", lambda: _noise(90))
    subset = DatasetSource("tiny-noise-subset", "noise", "made here", lambda: _noise(90).iloc[:60])
    model_id = "glove50--mlp128-on-tiny-noise--logreg-c1"
    bundle = tmp_path / "zoo"
    generate(
        bundle, tmp_path / "work", jobs=1, seed=0, models=[model_id], sources=[noise, subset],
        trunk_sources=["tiny-noise"], progress=None,
    )  # fmt: skip
    scores = pd.read_csv(bundle / "interactions.csv").set_index("dataset_id")["score"]
    assert scores["tiny-noise-subset"] < 0.6 and scores["tiny-noise"] < 0.6, scores  # chance is 1/3
    # The shipped trunk, frozen, would have read the labels it memorised: that is what is avoided.
    frame = _noise(90).iloc[:60]
    texts, labels = frame["text"].tolist(), frame["label"].tolist()
    model = text_models.text_model(model_id)
    vectors = text_models.embed("glove50", texts)
    shipped = load_trunk((bundle / "artifacts" / f"{model_id}.npz").read_bytes(), model_id)
    assert text_models.evaluate(model, texts, labels, seed=0, embeddings=vectors, trunk=shipped)["score"] > 0.7
    # TrunkSource trains on the source's rows less the held-out keys, nothing else.
    source = TrunkSource(vectors, tuple(labels), tuple(texts), tuple(texts[:30]))
    expected = train_trunk(vectors[5:], labels[5:], model.trunk)
    got = source.without(np.arange(5), model.trunk)
    assert all(np.array_equal(a, b) for a, b in zip(got.arrays().values(), expected.arrays().values(), strict=True))
