"""TextZoo: the generator on two tiny tasks, a text search answered from it, probes, run and download."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from modsnet.embedded import EmbeddedCluster
from modsnet.features.text import FEATURE_NAMES
from modsnet.models import text as text_models
from modsnet.models.runner import run_model
from modsnet.offline.zoo.text import DatasetSource, dataset_sources, generate
from modsnet.runtime.errors import InvalidArgument

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
        assert all("3-fold CV" in p.detail for p in answer.probes)
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


def test_every_model_id_round_trips_and_the_library_is_large_enough() -> None:
    models = text_models.text_models()
    assert len(models) >= 80 and all(text_models.text_model(m.model_id) == m for m in models)
    assert text_models.text_model("minilm-l6--no-such-head") is None
    sources = dataset_sources()
    assert len(sources) >= 45 and len({s.dataset_id for s in sources}) == len(sources)
