"""Searches never wait for the estimator's refresh after feedback (issue 13): the estimator of the graph before it
answers while one background job per library puts its weights on the new graph (coalesced, bounded in time);
a query of a known dataset, a zero bound and another import wait for the current graph."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from polling import eventually
from synthetic import make_table, write_library

from modsnet.data.graph import (
    Constraints,
    DatasetNode,
    GraphDelta,
    InteractionRecord,
    ProbeRecord,
    Snapshot,
    apply_delta,
)
from modsnet.embedded import EmbeddedCluster
from modsnet.features.tabular import tabular_features
from modsnet.runtime.errors import InvalidArgument
from modsnet.runtime.stubs import KnowledgeClient
from services.recommender.core import RecommenderCore, Served
from services.recommender.estimators.gnn import GnnConfig
from services.recommender.probes import MEASURED
from services.recommender.training import RefreshedGnn


class HeldRefresh:
    """Holds every refresh of `core` (the weights put on a newer graph) until released, and counts them."""

    def __init__(self, core: RecommenderCore):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls = 0
        original = core._refresh

        def held(snapshot, cached):  # type: ignore[no-untyped-def]
            self.calls += 1
            self.entered.set()
            assert self.release.wait(120), "the test never released the refresh"
            return original(snapshot, cached)

        core._refresh = held  # type: ignore[method-assign]


def refreshes_sent_back(core: RecommenderCore) -> list[RefreshedGnn]:
    """What `core`'s refresh worker sends back, each refresh appended as it comes (the refresh unchanged)."""
    sent: list[RefreshedGnn] = []
    original = core._refresh_in_worker

    def spied(*args: Any) -> RefreshedGnn:
        sent.append(original(*args))
        return sent[-1]

    core._refresh_in_worker = spied  # type: ignore[method-assign,assignment]
    return sent


def knn_choices_made(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every kNN fit that chooses on held-out datasets from now on (`KnnChoices`), appended as it starts choosing:
    its scored datasets' count (the choice itself unchanged)."""
    from services.recommender.estimators.knn import KnnPopularityEstimator

    choosing: list[int] = []
    original = KnnPopularityEstimator._conditioning_pays

    def counted(self: KnnPopularityEstimator, **settings: Any) -> Any:
        choosing.append(len(self.dataset_ids))
        return original(self, **settings)

    monkeypatch.setattr(KnnPopularityEstimator, "_conditioning_pays", counted)
    return choosing


def feedback(cluster: EmbeddedCluster, score: float = 0.7) -> int:
    """One plausible measured score on a known dataset, as feedback stores it; the new graph version."""
    response = cluster.client.knowledge.add_interactions(
        "synth", [], [InteractionRecord("m1", "d3", score, provenance="feedback")]
    )
    return int(response.graph_version)


QUERY = tabular_features(make_table(150, 6, 2, seed=99), "class")


def test_the_graph_version_comes_with_the_import_it_belongs_to(cluster: EmbeddedCluster) -> None:
    (info,) = cluster.client.knowledge.list_libraries()
    assert cluster.client.knowledge.graph_head("synth") == (info.graph_version, info.bundle_blob_id)
    version = feedback(cluster)
    assert cluster.client.knowledge.graph_head("synth") == (version, info.bundle_blob_id)


def test_a_search_after_feedback_is_answered_while_the_refresh_runs_and_the_refresh_lands(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore]
) -> None:
    core = make_core(max_staleness_seconds=600)
    first = core.fitted("synth")
    held = HeldRefresh(core)
    version = feedback(cluster)
    # Answered by the estimator of the graph before the feedback, and says so, while the refresh is held.
    answer = core.recommend("synth", QUERY, k=3, constraints=Constraints())
    assert answer.graph_version == first.graph_version < version
    assert held.entered.wait(60), "no refresh started"
    assert core.fitted("synth") is first
    assert core.staleness()["synth"] >= 0.0
    held.release.set()
    assert eventually(lambda: core.fitted("synth").graph_version == version, seconds=120)
    landed = core.fitted("synth")
    assert landed.origin == "refreshed" and landed.trained_version == first.graph_version
    assert core.recommend("synth", QUERY, k=3, constraints=Constraints()).graph_version == version
    assert "synth" not in core.staleness()


def test_feedback_during_a_refresh_costs_at_most_one_more(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore]
) -> None:
    core = make_core(max_staleness_seconds=600)
    first = core.fitted("synth")
    held = HeldRefresh(core)
    feedback(cluster)
    assert core.fitted("synth") is first
    assert held.entered.wait(60)
    for i in range(6):  # each moves the graph and is followed by a search that finds the estimator behind
        version = feedback(cluster, 0.6 + 0.01 * i)
        assert core.fitted("synth").graph_version < version
    held.release.set()
    assert core.wait_for_refresh("synth", timeout=120)
    assert held.calls == 2  # the one held, and one more for everything that arrived during it
    assert core.fitted("synth").graph_version == version


def test_a_known_dataset_and_a_zero_bound_wait_for_the_current_graph(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore]
) -> None:
    core = make_core(max_staleness_seconds=600)
    core.fitted("synth")
    version = feedback(cluster)
    # A query of a dataset of the graph: its own records must be in its answer.
    answer = core.recommend("synth", {}, k=3, constraints=Constraints(), dataset_id="d3")
    assert answer.graph_version == version and answer.path == "transductive"
    inline = make_core(max_staleness_seconds=0)
    inline.fitted("synth")
    version = feedback(cluster)
    assert inline.fitted("synth").graph_version == version


def test_past_the_bound_a_search_waits_for_the_refresh(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore]
) -> None:
    core = make_core(max_staleness_seconds=0.3)
    first = core.fitted("synth")
    held = HeldRefresh(core)
    version = feedback(cluster)
    assert core.fitted("synth") is first
    assert held.entered.wait(60)
    time.sleep(0.5)  # the bound passes while the refresh is held
    got: list[Served] = []
    waiting = threading.Thread(target=lambda: got.append(core.fitted("synth")))
    waiting.start()
    waiting.join(2.0)
    assert waiting.is_alive() and not got  # no stale answer past the bound: it waits for the refresh
    held.release.set()
    waiting.join(120)
    assert got and got[0].graph_version == version


def test_another_import_is_never_answered_by_the_old_one(
    tmp_path: Path, cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore]
) -> None:
    core = make_core(max_staleness_seconds=600)
    old = core.fitted("synth")
    other = write_library(tmp_path / "other" / "synth", seed=5)
    imported = cluster.client.import_library(other, replace=True)
    served = core.fitted("synth")
    assert served.library.bundle_blob_id == imported.library.bundle_blob_id != old.library.bundle_blob_id
    assert served.graph_version == cluster.client.knowledge.graph_version("synth")


# -- the ONNX model of a newer graph, without exporting it again ------------------------------------------------


def test_weights_on_a_newer_graph_reuse_the_export_with_its_constants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    import numpy as np

    from modsnet.data.bundle import read_bundle
    from modsnet.data.graph import interaction_columns_of
    from services.recommender.estimators.gnn import GnnEstimator, serving
    from services.recommender.evaluation import graph_from_bundle

    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path / "synth")))
    config = GnnConfig(members=2, steps=20)
    old = GnnEstimator(snapshot, config=config)
    old.serve_onnx()
    # A newer graph: a feedback record on a new dataset node (one node more) and one on a known dataset.
    node = dataclasses.replace(snapshot.datasets[0], dataset_id="query-new")
    records = [
        *interaction_columns_of(snapshot),
        InteractionRecord("m1", "query-new", 0.3, provenance="feedback"),
        InteractionRecord("m2", "d3", 0.9, provenance="feedback"),
    ]
    newer = dataclasses.replace(snapshot, datasets=[*snapshot.datasets, node], interactions=records)
    exports = []
    original = serving.export_onnx
    monkeypatch.setattr(serving, "export_onnx", lambda *a, **k: exports.append(1) or original(*a, **k))
    reused = GnnEstimator(newer, config=config, weights=old.state())
    reused.serve_onnx(like=old)
    assert not exports  # the older model with new constants
    exported = GnnEstimator(newer, config=config, weights=old.state())
    exported.serve_onnx()
    assert exports == [1]
    for features in ({}, {"n_rows": 300.0, "n_features": 5.0}):
        inputs = reused.query(features).inputs
        np.testing.assert_allclose(reused.scorer.run(inputs)[0], exported.scorer.run(inputs)[0], atol=1e-6)
        np.testing.assert_allclose(reused.scorer.run(inputs)[1], exported.scorer.run(inputs)[1], atol=1e-6)
    assert not np.allclose(reused.scorer.run(inputs)[0], old.scorer.run(old.query(features).inputs)[0])
    # Other weights cannot take the older model: a new export.
    other = GnnEstimator(newer, config=dataclasses.replace(config, seed=config.seed + 1))
    other.serve_onnx(like=old)
    assert exports == [1, 1]


def test_a_refresh_owed_again_is_paced_unless_a_search_waits_for_it(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steady feedback must not keep a refresh running back to back: one owed again waits (here, with the
    factor raised, the whole cap: a quarter of the staleness bound), and a query that must wait for the
    current graph cuts the pause short."""
    monkeypatch.setattr("services.recommender.core.REFRESH_PAUSE_FACTOR", 1000.0)
    core = make_core(max_staleness_seconds=600)  # the pause's cap: 150 s
    first = core.fitted("synth")
    held = HeldRefresh(core)
    landed = feedback(cluster)
    assert core.fitted("synth") is first and held.entered.wait(60)
    latest = feedback(cluster, 0.65)  # arrives during the refresh: one more is owed
    held.release.set()
    assert eventually(lambda: core.fitted("synth").graph_version >= landed, seconds=120)
    assert held.calls == 1  # the run owed waits in its pause
    got: list[Served] = []
    waiting = threading.Thread(target=lambda: got.append(core.fitted("synth", fresh=True)))
    waiting.start()
    waiting.join(60)
    assert not waiting.is_alive() and got[0].graph_version == latest
    assert held.calls == 2


def test_a_retraining_waits_its_turn_and_a_close_does_not_wait_for_it(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore]
) -> None:
    core = make_core()
    core.fitted("synth")
    trained: list[str] = []
    core._train = lambda snapshot: trained.append(snapshot.library.name)  # type: ignore[assignment,method-assign,return-value]
    core._retrained["synth"] = (time.monotonic(), 100.0)  # one just ended that took 100 s: the next in 300 s
    core._retrain_in_background("synth")
    (thread,) = core.training_threads()
    thread.join(0.5)
    assert thread.is_alive() and trained == []  # waiting its turn, nothing trained
    core.close()
    assert not thread.is_alive() and trained == []


class CountingKnowledge(KnowledgeClient):
    """The knowledge client, counting what the recommender asks of it."""

    def __init__(self, target: str):
        super().__init__(target)
        self.asked: list[str] = []

    def graph_head(self, library: str) -> tuple[int, str]:
        self.asked.append("graph_head")
        return super().graph_head(library)

    def snapshot(self, library: str) -> Snapshot:
        self.asked.append("snapshot")
        return super().snapshot(library)

    def snapshot_since(self, library: str, since_version: int) -> Snapshot | GraphDelta:
        got = super().snapshot_since(library, since_version)
        self.asked.append("delta" if isinstance(got, GraphDelta) else "snapshot")
        return got

    def take(self) -> list[str]:
        asked, self.asked = self.asked, []
        return asked


def test_a_caller_that_knows_the_version_costs_no_call_to_knowledge(cluster: EmbeddedCluster) -> None:
    """The query service passes the version it read during the search: one at most as new as the estimator's is
    answered without asking knowledge; a newer one (its own feedback) is asked for and answered at that version."""
    knowledge = CountingKnowledge(cluster.addresses["knowledge"])
    core = RecommenderCore(knowledge, estimator="knn")
    try:
        (info,) = cluster.client.knowledge.list_libraries()
        assert core.recommend("synth", QUERY, k=3, constraints=Constraints(), known_version=info.graph_version)
        assert knowledge.take() == ["graph_head", "snapshot"]
        for _ in range(3):
            answer = core.recommend("synth", QUERY, k=3, constraints=Constraints(), known_version=info.graph_version)
            assert answer.graph_version == info.graph_version
        assert knowledge.take() == []
        core.recommend("synth", QUERY, k=3, constraints=Constraints())  # a caller that knows none: asked, as before
        assert knowledge.take() == ["graph_head"]
        version = feedback(cluster)
        answer = core.recommend("synth", QUERY, k=3, constraints=Constraints(), known_version=version)
        assert answer.graph_version == version
        assert knowledge.take() == ["graph_head", "delta"]
        choice = core.select_probes("synth", QUERY, budget=2, known_version=version)
        assert choice.graph_version == version and knowledge.take() == []
        with pytest.raises(InvalidArgument, match="graph_version"):
            core.recommend("synth", QUERY, k=3, constraints=Constraints(), known_version=-1)
    finally:
        core.close()


def test_each_refresh_reads_the_change_and_a_retraction_the_whole_graph(cluster: EmbeddedCluster) -> None:
    """After feedback the recommender reads only what was added and puts it on the graph it holds, which is then
    the whole graph as knowledge has it; after a retraction (not only additions) it reads the whole graph."""
    knowledge = CountingKnowledge(cluster.addresses["knowledge"])
    core = RecommenderCore(knowledge, estimator="knn")
    try:
        core.fitted("synth")
        assert knowledge.take()[-1] == "snapshot"
        written = []
        for i in range(4):
            new = DatasetNode("synth", f"fed-{i}", {"origin": "feedback"}, dict(QUERY), "tabular/v1", f"{i:064x}")
            response = cluster.client.knowledge.add_interactions(
                "synth", [new], [InteractionRecord(f"m{i}", f"fed-{i}", 0.6 + 0.05 * i, provenance="feedback")]
            )
            written.append(response.request_id)
            served = core.fitted("synth", fresh=True)
            assert served.graph_version == response.graph_version
            assert knowledge.take()[-1] == "delta"
            assert core._graphs["synth"] == cluster.client.knowledge.snapshot("synth")
        assert "fed-3" in served.estimator.dataset_ids
        version = cluster.client.knowledge.retract("synth", written[0]).graph_version
        assert core.fitted("synth", fresh=True).graph_version == version
        assert knowledge.take()[-1] == "snapshot"
        assert core._graphs["synth"] == cluster.client.knowledge.snapshot("synth")
    finally:
        core.close()


def test_a_search_after_a_reported_score_sees_it(cluster: EmbeddedCluster, tmp_path: Path) -> None:
    """Read-your-writes through the query service: the search after a feedback is answered at the feedback's
    graph version or later, its dataset now a known one of the graph."""
    path = tmp_path / "query.csv"
    make_table(300, 9, 2, 99).to_csv(path, index=False)
    first = cluster.client.search(path, k=3)
    reported = cluster.client.report_performance(first.query_id, "m3", 0.9)
    again = cluster.client.search(path, k=3)
    assert again.graph_version >= reported.graph_version > first.graph_version
    assert again.path == "transductive" and again.dataset.known_dataset_id == reported.dataset_id


def test_knowledge_streams_the_change_since_a_version(cluster: EmbeddedCluster) -> None:
    """GraphSnapshot with since_version: the change, which put on the graph at that version is the whole graph
    now; a version before a retraction gets the whole graph; a negative one is refused."""
    client = cluster.client.knowledge
    before = client.snapshot("synth")
    version = feedback(cluster)
    delta = client.snapshot_since("synth", before.graph_version)
    assert isinstance(delta, GraphDelta) and delta.graph_version == version and len(delta.interactions) == 1
    assert apply_delta(before, delta) == client.snapshot("synth")
    request_id = client.add_interactions("synth", [], [InteractionRecord("m2", "d1", 0.5, provenance="feedback")])
    client.retract("synth", request_id.request_id)
    whole = client.snapshot_since("synth", before.graph_version)
    assert isinstance(whole, Snapshot) and whole == client.snapshot("synth")
    with pytest.raises(InvalidArgument, match="since_version"):
        client.snapshot_since("synth", -1)


def test_a_refresh_in_the_worker_answers_exactly_what_one_in_this_process_does(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore]
) -> None:
    """The refresh after feedback runs in the refresh worker (off the serving process's GIL, issue 13): what it
    sends back serves exactly what the same refresh made here serves, the ONNX model with the new constants too.
    Both keep the served kNN's choices (`KnnChoices`): the contract is worker = this process, not = a fit from
    scratch of the new graph (which may choose otherwise: the test below)."""
    import numpy as np

    core = make_core(max_staleness_seconds=600)
    first = core.fitted("synth")
    sent = refreshes_sent_back(core)
    version = feedback(cluster)
    # A new dataset node with its record, as the feedback on a search of a new file adds.
    knowledge = cluster.client.knowledge
    assert knowledge is not None
    node = dataclasses.replace(knowledge.snapshot("synth").datasets[0], dataset_id="query-new")
    knowledge.add_interactions("synth", [node], [InteractionRecord("m2", "query-new", 0.4)])
    refreshed = core.fitted("synth", fresh=True)  # waits for the current graph: refreshed on this call
    assert refreshed.origin == "refreshed" and refreshed.graph_version > version
    (worker,) = sent
    assert worker.pid != os.getpid() and worker.estimator is not None
    assert refreshed.estimator.primary.onnx_model is worker.onnx_model  # type: ignore[union-attr]  # served as sent
    # The same refresh in this process (no refresh worker), on the same graph and the same served weights.
    core._refresh_pool = None
    local = core._refresh(core._graphs["synth"], first)
    assert local is not None and local.graph_version == refreshed.graph_version
    assert local.estimator.primary.onnx_model == worker.onnx_model  # type: ignore[union-attr]
    probe = [ProbeRecord("m1", "q", MEASURED, 0.8)]
    for features, known, probes in ((QUERY, None, []), ({}, "d3", []), ({}, "query-new", []), (QUERY, None, probe)):
        ours, theirs = (s.estimator.score_all(features, known_dataset=known, probes=probes) for s in (local, refreshed))
        np.testing.assert_array_equal(theirs.scores, ours.scores)
        np.testing.assert_array_equal(theirs.uncertainty, ours.uncertainty)
    assert local.estimator.blend == refreshed.estimator.blend


def test_a_refresh_keeps_the_knns_choices_and_a_training_makes_them_afresh(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the kNN member chose on held-out datasets (conditioning on probes, the latent rank: three quarters of a
    refresh's CPU, docs/benchmarks-concurrency.md "Run 9") stays the last training's until the next one: a refresh
    refits only the rest on the new records; a training chooses again. (In this process, where the spy sees it;
    the worker runs the same `on_graph` with the same choices, as the test above shows.)"""
    import numpy as np

    core = make_core(max_staleness_seconds=600, training_processes=-1)
    first = core.fitted("synth")
    assert core._refresh_pool is None
    chosen = first.estimator.knn.choices
    choosing = knn_choices_made(monkeypatch)
    feedback(cluster)
    refreshed = core.fitted("synth", fresh=True)
    assert refreshed.origin == "refreshed" and choosing == []
    assert refreshed.estimator.knn.choices == chosen
    # Only the choices are kept: the records' z and popularity are the new graph's.
    assert not np.array_equal(refreshed.estimator.knn.popularity, first.estimator.knn.popularity)
    core.train("synth")
    assert choosing  # the calibration fits' kNNs and the served one chose on the graph they were fitted on
    assert core._cache["synth"].origin == "trained"


def test_a_replica_restoring_the_checkpoint_serves_exactly_what_the_replica_that_trained_serves(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another recommender replica restores the checkpoint with the kNN's choices of the training (`KnnChoices`),
    without choosing again: on the training's graph and on a newer one (where the replica that trained refreshed
    with the same choices) it answers exactly as the replica that trained does."""
    import numpy as np

    trainer = make_core(max_staleness_seconds=600, training_processes=-1)
    trained = trainer.fitted("synth")
    assert trained.origin == "trained"
    choosing = knn_choices_made(monkeypatch)

    def same_answers(ours: Served, theirs: Served) -> None:
        assert ours.graph_version == theirs.graph_version
        assert ours.estimator.knn.choices == theirs.estimator.knn.choices
        assert ours.estimator.blend == theirs.estimator.blend
        probe = [ProbeRecord("m1", "q", MEASURED, 0.8)]
        for features, known, probes in ((QUERY, None, []), ({}, "d3", []), ({}, None, probe), (QUERY, None, probe)):
            a, b = (s.estimator.score_all(features, known_dataset=known, probes=probes) for s in (ours, theirs))
            np.testing.assert_array_equal(a.scores, b.scores)
            np.testing.assert_array_equal(a.uncertainty, b.uncertainty)

    restored = make_core(training_processes=-1).fitted("synth")
    assert restored.origin == "checkpoint" and choosing == []
    same_answers(restored, trained)
    feedback(cluster)
    refreshed = trainer.fitted("synth", fresh=True)
    assert refreshed.origin == "refreshed" and refreshed.estimator.knn.choices == trained.estimator.knn.choices
    restored = make_core(training_processes=-1).fitted("synth")
    assert restored.origin == "refreshed" and choosing == []
    same_answers(restored, refreshed)


def test_the_estimator_sent_back_leaves_out_what_is_rebuilt_and_loads_back_whole(tmp_path: Path) -> None:
    """What the refresh worker sends back (`pickled_by_value`): tensors as numpy arrays (torch's own reducer
    loaded each through its serialization, most of the serving process's cost), no dense static adjacency, no
    record list, no kNN caches, the distance matrix as its finite cells; loaded, it scores exactly as sent."""
    import pickle

    import numpy as np
    import torch

    from modsnet.data.bundle import read_bundle
    from modsnet.data.graph import SimilarityRecord
    from services.recommender.estimators.blend import BlendWeights
    from services.recommender.estimators.gnn import GnnEstimator
    from services.recommender.evaluation import graph_from_bundle
    from services.recommender.training import as_numpy, on_graph, pickled_by_value

    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path / "synth")))
    ids = [d.dataset_id for d in snapshot.datasets]
    similar = [SimilarityRecord(ids[0], ids[1], 0.25), SimilarityRecord(ids[2], ids[0], 0.5)]
    snapshot = dataclasses.replace(snapshot, similarities=similar)
    config = GnnConfig(members=2, steps=5)
    weights = as_numpy(GnnEstimator(snapshot, config=config).state())
    blend = BlendWeights.primary_only(("gnn", "knn", "popularity")).to_dict()
    sent = on_graph(snapshot, config, weights, blend, neighbours=8)
    probe = [ProbeRecord("m1", "q", MEASURED, 0.8)]
    queries = ((QUERY, None, []), ({}, "d3", []), (QUERY, None, probe), ({}, None, probe))
    before = [sent.score_all(f, known_dataset=k, probes=p) for f, k, p in queries]  # (the kNN's caches filled)
    # The one path from weights to an estimator takes them as tensors too (a served estimator's `state()`, a
    # checkpoint's: the refresh in the serving process) and the blend as `BlendWeights`: the same estimator.
    tensors = [{name: torch.from_numpy(array.copy()) for name, array in member.items()} for member in weights]
    same = on_graph(snapshot, config, tensors, BlendWeights.from_dict(blend), neighbours=8)
    for (features, known, probes), ours in zip(queries, before, strict=True):
        theirs = same.score_all(features, known_dataset=known, probes=probes)
        np.testing.assert_array_equal(theirs.scores, ours.scores)
        np.testing.assert_array_equal(theirs.uncertainty, ours.uncertainty)
    payload = pickled_by_value(sent)
    assert b"_rebuild_tensor" not in payload and b"_rebuild_parameter" not in payload  # torch's reducers
    loaded = pickle.loads(payload)
    gnn, knn = loaded.primary, loaded.knn
    assert gnn._static_tensors == {} and "_interactions" not in vars(gnn)
    assert "_behaviour" not in vars(knn) and "_identity" not in vars(knn)
    assert np.isfinite(gnn.distance).sum() == 4 and gnn.distance[0, 1] == gnn.distance[1, 0] == 0.25
    np.testing.assert_array_equal(gnn.distance, sent.primary.distance)
    for name, tensor in gnn.query_module.state_dict().items():
        assert np.array_equal(tensor.numpy(), sent.primary.query_module.state_dict()[name].numpy()), name
    for (features, known, probes), ours in zip(queries, before, strict=True):
        theirs = loaded.score_all(features, known_dataset=known, probes=probes)
        np.testing.assert_array_equal(theirs.scores, ours.scores)
        np.testing.assert_array_equal(theirs.uncertainty, ours.uncertainty)
    for mine, rebuilt in zip(sent.primary._interactions, gnn._interactions, strict=True):  # rebuilt on use
        np.testing.assert_array_equal(mine, rebuilt)


def test_weights_that_do_not_fit_come_back_refused_from_the_worker(tmp_path: Path) -> None:
    from modsnet.data.bundle import read_bundle
    from services.recommender.core import refresh_pool
    from services.recommender.estimators.gnn import GnnEstimator
    from services.recommender.evaluation import graph_from_bundle
    from services.recommender.training import as_numpy, refresh_in_worker

    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path / "synth")))
    config = GnnConfig(members=2, steps=5)
    weights = as_numpy(GnnEstimator(snapshot, config=config).state())
    other = dataclasses.replace(config, hidden=config.hidden + 8)  # another shape of the same members
    refused = refresh_pool().run(refresh_in_worker, snapshot, other, weights, {}, 8, None, timeout=300)
    assert refused.estimator is None and "do not fit" in refused.refused


def test_a_refresh_whose_worker_fails_is_made_in_this_process(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh worker that dies does not fail the search waiting for the refresh: it is refreshed here."""
    from modsnet.runtime.workers import WorkerFailed

    core = make_core(max_staleness_seconds=600)
    core.fitted("synth")
    assert core._refresh_pool is not None

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise WorkerFailed("refreshing the GNN of synth: its worker process died (exit code -9)")

    monkeypatch.setattr(core._refresh_pool, "run", dies)
    version = feedback(cluster)
    refreshed = core.fitted("synth", fresh=True)
    assert refreshed.origin == "refreshed" and refreshed.graph_version == version


def test_a_sparse_gnn_is_refreshed_in_the_worker_as_in_this_process(
    cluster: EmbeddedCluster, make_core: Callable[..., RecommenderCore]
) -> None:
    """Past the cell limit the sparse GNN serves, from ONNX as the dense one: its refresh in the worker sends back
    the served model with the new graph's constants and serves what the same refresh here serves."""
    import numpy as np

    from services.recommender.estimators.gnn.sparse import SparseGnnEstimator

    core = make_core(max_staleness_seconds=600, gnn_max_cells=1)
    first = core.fitted("synth")
    assert isinstance(first.estimator.primary, SparseGnnEstimator) and first.backend.startswith("onnxruntime")
    sent = refreshes_sent_back(core)
    feedback(cluster)
    refreshed = core.fitted("synth", fresh=True)
    (worker,) = sent
    assert refreshed.origin == "refreshed" and worker.pid != os.getpid() and worker.onnx_model is not None
    assert isinstance(refreshed.estimator.primary, SparseGnnEstimator) and refreshed.backend.startswith("onnxruntime")
    assert refreshed.estimator.primary.onnx_model == worker.onnx_model  # the worker's, not a new export here
    core._refresh_pool = None
    local = core._refresh(core._graphs["synth"], first)
    assert local is not None
    for features, known in ((QUERY, None), ({}, "d3")):
        ours, theirs = (s.estimator.score_all(features, known_dataset=known) for s in (local, refreshed))
        np.testing.assert_array_equal(theirs.scores, ours.scores)
