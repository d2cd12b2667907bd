"""How the recommender serves the GNN: trained on first use, checkpointed in storage, refreshed on a new graph
version, retrained in the background and swapped in, and probes measured on the query's data."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from synthetic import make_table, write_library

from modsnet.data.bundle import read_bundle
from modsnet.embedded import EmbeddedCluster
from modsnet.runtime import deadline
from services.recommender import checkpoints
from services.recommender.core import RecommenderCore
from services.recommender.estimators.blend import BlendWeights
from services.recommender.estimators.gnn import GnnConfig, GnnEstimator
from services.recommender.estimators.knn import KnnChoices
from services.recommender.evaluation import graph_from_bundle

# TabZoo settings the probes can rebuild and fit: a small library named tabzoo, in TabZoo's metric.
TABZOO_IDS = ["logreg-c1", "tree-d1", "knn-k5", "rf-n30-d8", "gaussian-nb", "tree-dfull"]


@pytest.fixture
def query_csv(tmp_path: Path) -> Path:
    path = tmp_path / "query.csv"
    make_table(150, 6, 2, seed=99).to_csv(path, index=False)
    return path


def _wait_for(predicate, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_searches_use_the_gnn_through_onnx_runtime(cluster: EmbeddedCluster, query_csv: Path) -> None:
    # A first search waits for the first training up to 3/4 of its time: give it enough for a loaded machine.
    response = cluster.client.search(query_csv, library="synth", k=3, timeout=600)
    assert response.estimator == "gnn/v1"
    assert [m.rank for m in response.models] == [1, 2, 3]
    assert all(m.uncertainty > 0 and m.explanation for m in response.models)
    info = cluster.client.estimator_info("synth")
    assert info.origin == "trained" and info.trained_version == info.graph_version == response.graph_version
    assert info.backend == "onnxruntime:CPUExecutionProvider"
    assert info.train_seconds > 0


def test_a_first_training_that_outlasts_the_request_leaves_knn_answering_until_it_is_done(
    cluster: EmbeddedCluster,
) -> None:
    # The request's whole time is reserved for answering: it cannot wait for the GNN at all.
    core = RecommenderCore(cluster.client.knowledge, cluster.client.storage, answer_reserve_seconds=1e6)
    token = deadline.set_deadline(60.0)
    try:
        first = core.fitted("synth")
    finally:
        deadline.reset_deadline(token)
    assert first.origin == "interim" and first.estimator.name.startswith("knn")
    assert core.wait_for_retraining("synth", timeout=120)
    served = core.fitted("synth")
    assert served.origin == "trained" and served.estimator.name == "gnn/v1"
    # The late training was checkpointed: a new recommender loads it instead of training.
    again = RecommenderCore(cluster.client.knowledge, cluster.client.storage)
    assert again.fitted("synth").origin == "checkpoint"
    core.close()
    again.close()


def test_a_restart_loads_the_checkpoint_instead_of_training(
    tmp_path: Path, synth_bundle: Path, query_csv: Path
) -> None:
    home = tmp_path / "home"
    with EmbeddedCluster(home, import_builtins=False) as first:
        first.client.import_library(synth_bundle)
        before = first.client.search(query_csv, library="synth", k=6)
        trained = first.client.estimator_info("synth")
    with EmbeddedCluster(home, import_builtins=False) as second:
        after = second.client.search(query_csv, library="synth", k=6)
        info = second.client.estimator_info("synth")
    assert info.origin == "checkpoint"
    assert info.train_seconds == pytest.approx(trained.train_seconds)
    assert [m.model_id for m in after.models] == [m.model_id for m in before.models]
    np.testing.assert_allclose(
        [m.predicted_score for m in after.models], [m.predicted_score for m in before.models], rtol=1e-5
    )


def test_a_version_bump_drops_the_cached_estimator(cluster: EmbeddedCluster, query_csv: Path) -> None:
    first = cluster.client.search(query_csv, library="synth", k=6)
    report = cluster.client.report_performance(first.query_id, "m3", 0.97)
    assert report.graph_version == first.graph_version + 1
    second = cluster.client.search(query_csv, library="synth", k=6)
    # Served at the new version, not from the cache of the old one: the feedback is in the answer.
    assert second.graph_version == report.graph_version
    assert second.path == "transductive" and second.dataset.known_dataset_id == report.dataset_id
    assert {m.model_id: m.predicted_score for m in second.models}["m3"] == pytest.approx(0.97)
    info = cluster.client.estimator_info("synth")
    assert info.origin == "refreshed"  # the trained weights on the new graph, no refit on the request path
    assert info.trained_version == first.graph_version and info.graph_version == report.graph_version


def test_enough_feedback_retrains_in_the_background_and_hot_swaps(
    tmp_path: Path, synth_bundle: Path, query_csv: Path
) -> None:
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, retrain_after=1) as running:
        client = running.client
        client.import_library(synth_bundle)
        first = client.search(query_csv, library="synth")
        report = client.report_performance(first.query_id, "m0", 0.5)
        answered = client.search(query_csv, library="synth")  # answered at once by the refreshed estimator
        assert answered.graph_version == report.graph_version

        def swapped():  # type: ignore[no-untyped-def]
            info = client.estimator_info("synth")
            return info if info.origin == "trained" and info.trained_version == report.graph_version else None

        info = _wait_for(swapped)
        assert info, "the background retraining never swapped in"
        # The retrained weights were checkpointed: they are what a restart would load.
        storage = running.client.storage
        checkpoint = checkpoints.load(storage, "synth", "gnn/v1")
        assert checkpoint is not None and checkpoint.graph_version == report.graph_version


def test_the_knn_estimator_can_be_chosen(tmp_path: Path, synth_bundle: Path, query_csv: Path) -> None:
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, estimator="knn") as running:
        running.client.import_library(synth_bundle)
        response = running.client.search(query_csv, library="synth")
        assert response.estimator.startswith("knn")
        assert response.probes_used == 0 and not response.probes


def test_probes_measure_settings_on_the_upload_and_become_probe_edges(tmp_path: Path, query_csv: Path) -> None:
    bundle = write_library(tmp_path / "zoo", name="tabzoo", model_ids=TABZOO_IDS, metric="balanced_accuracy")
    with EmbeddedCluster(tmp_path / "home", import_builtins=False) as running:
        running.client.import_library(bundle)
        probed = running.client.search(query_csv, library="tabzoo", k=6, probe_budget=3)
        plain = running.client.search(query_csv, library="tabzoo", k=6, probe_budget=0)
    assert 1 <= len(probed.probes) <= 3
    assert probed.probes_used == len(probed.probes)
    by_id = {m.model_id: m for m in probed.models}
    for probe in probed.probes:
        assert probe.kind == "score" and 0.0 <= probe.value <= 1.0 and probe.seconds > 0 and probe.detail
        # A measured probe is the model's score on this data, reported as such.
        assert by_id[probe.model_id].predicted_score == pytest.approx(probe.value)
        # The upload is under TabZoo's row cap: probed whole, as the library measures such a table.
        words = "measured on the whole table" if probe.whole else "probed on a sample"
        assert by_id[probe.model_id].explanation.startswith(words)
    assert not plain.probes and plain.probes_used == 0


def test_models_that_cannot_run_here_are_not_probed(cluster: EmbeddedCluster, query_csv: Path) -> None:
    response = cluster.client.search(query_csv, library="synth", probe_budget=5)
    assert not response.probes and response.probes_used == 0  # m0..m5 are no runnable settings


# -- checkpoints and weights, without services -----------------------------------------------------------


@pytest.fixture(scope="module")
def synth_graph(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path_factory.mktemp("g") / "synth")))
    return snapshot


def test_weights_put_on_the_same_graph_give_the_same_predictions(synth_graph) -> None:  # type: ignore[no-untyped-def]
    config = GnnConfig(steps=20)
    trained = GnnEstimator(synth_graph, config=config)
    restored = GnnEstimator(synth_graph, config=config, weights=trained.state())
    features = {"n_rows": 300.0, "n_features": 5.0}
    a = [p.score for p in trained.predict(features)]
    b = [p.score for p in restored.predict(features)]
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_weights_of_another_shape_are_refused(synth_graph) -> None:  # type: ignore[no-untyped-def]
    trained = GnnEstimator(synth_graph, config=GnnConfig(steps=2))
    with pytest.raises(ValueError, match=r"do not fit|members"):
        GnnEstimator(synth_graph, config=GnnConfig(steps=2, hidden=16), weights=trained.state())


def test_checkpoint_round_trip_and_garbage(synth_graph) -> None:  # type: ignore[no-untyped-def]
    trained = GnnEstimator(synth_graph, config=GnnConfig(steps=2))
    checkpoint = checkpoints.Checkpoint(
        library="synth",
        estimator="gnn/v1",
        bundle_blob_id="ab" * 32,
        models_digest=checkpoints.models_digest(trained.model_ids),
        graph_version=3,
        interactions=60,
        trained_unix=1.0,
        train_seconds=2.0,
        config={"steps": 2},
        weights=trained.state(),
        blend=BlendWeights(("gnn", "knn", "popularity"), (0.6, 0.3, 0.1), (0.2, 0.4, 0.4), (0.5, 0.5, 0.0),
                           threshold=0.7, interval_scale=1.4, targets=12, validation={"gnn": 0.5}).to_dict(),
        knn_choices=KnnChoices(True, 2, "popular", 0.25, {"knn": 0.4, "rank2-popular": 0.5}).to_dict(),
    )  # fmt: skip
    back = checkpoints.Checkpoint.from_bytes(checkpoint.to_bytes())
    assert back.choices == KnnChoices(True, 2, "popular", 0.25, {"knn": 0.4, "rank2-popular": 0.5})
    assert back.graph_version == 3 and back.models_digest == checkpoint.models_digest
    assert BlendWeights.from_dict(back.blend) == BlendWeights.from_dict(checkpoint.blend)
    assert BlendWeights.from_dict(back.blend).far == (0.2, 0.4, 0.4)
    for a, b in zip(back.weights, checkpoint.weights, strict=True):
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as nothing runs
        checkpoints.Checkpoint.from_bytes(b"not a checkpoint")


def test_a_checkpoint_of_format_3_loads_without_the_knns_choices_and_bad_choices_are_refused(
    synth_graph,  # type: ignore[no-untyped-def]
) -> None:
    import io

    import torch

    trained = GnnEstimator(synth_graph, config=GnnConfig(steps=2))
    checkpoint = checkpoints.Checkpoint(
        library="synth", estimator="gnn/v1", bundle_blob_id="ab" * 32, models_digest="00", graph_version=1,
        interactions=1, trained_unix=1.0, train_seconds=1.0, config={}, weights=trained.state(),
        blend=BlendWeights.primary_only(("gnn", "knn", "popularity")).to_dict(),
    )  # fmt: skip
    # Format 3, as written before the kNN's choices were kept: no such field. It loads, with no choices (the kNN
    # then chooses on the graph it is put on).
    old = {"format": "modsnet-estimator-checkpoint/3", **checkpoint.__dict__}
    del old["knn_choices"]
    buffer = io.BytesIO()
    torch.save(old, buffer)
    back = checkpoints.Checkpoint.from_bytes(buffer.getvalue())
    assert back.knn_choices is None and back.choices is None
    good = KnnChoices(False, 4, "informative", 0.3).to_dict()
    for broken in (
        {**good, "latent_rank": 3},
        {**good, "latent_rule": "random"},
        {**good, "latent_noise": -1.0},
        {**good, "condition": "yes"},
        {"condition": False},
        {**good, "validation": {"knn": "high"}},
    ):
        with pytest.raises(ValueError, match="kNN"):
            checkpoints.Checkpoint.from_bytes(dataclasses.replace(checkpoint, knn_choices=broken).to_bytes())


def test_an_unreadable_checkpoint_means_training_anew(cluster: EmbeddedCluster, query_csv: Path) -> None:
    storage = cluster.client.storage
    blob = storage.put_bytes(b"garbage, not a checkpoint")
    storage.set_pointer(checkpoints.pointer_name("synth", "gnn/v1"), blob.blob_id)
    assert checkpoints.load(storage, "synth", "gnn/v1") is None
    response = cluster.client.search(query_csv, library="synth")
    assert response.estimator == "gnn/v1"
    assert cluster.client.estimator_info("synth").origin == "trained"
    assert checkpoints.load(storage, "synth", "gnn/v1") is not None  # replaced by a good one


def test_a_large_library_is_trained_in_the_background_while_knn_answers(
    tmp_path: Path, synth_bundle: Path, query_csv: Path
) -> None:
    # The synthetic library's 60 interactions are "large" here: its first GNN is not trained on the request.
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, train_inline_limit=10) as running:
        client = running.client
        client.import_library(synth_bundle)
        first = client.search(query_csv, library="synth")
        assert first.estimator.startswith("knn")  # answered at once, by the stand-in
        info = _wait_for(lambda: (i := client.estimator_info("synth")).estimator == "gnn/v1" and i)
        assert info and info.origin == "trained"
        assert client.search(query_csv, library="synth").estimator == "gnn/v1"
