"""The sparse GNN (services/recommender/estimators/gnn/sparse.py): the dense GNN's arithmetic without (datasets x
models) arrays, trained on sampled neighbourhoods, and served past the recommender's cell limit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the GNN estimator needs torch (pip install torch==2.13.0)")
pytest.importorskip("torch_geometric", reason="the GNN estimator needs torch-geometric")

from modsnet.data.bundle import read_bundle  # noqa: E402
from modsnet.data.graph import Constraints  # noqa: E402
from modsnet.data.graph_build import dataset_raw_features  # noqa: E402
from services.recommender.core import RecommenderCore  # noqa: E402
from services.recommender.estimators.gnn import GnnConfig, GnnEstimator  # noqa: E402
from services.recommender.estimators.gnn.sparse import SamplingConfig, SparseGnnEstimator  # noqa: E402
from services.recommender.evaluation import ProbeRecord, evaluate, graph_from_bundle, served_predictions  # noqa: E402

SMALL = GnnConfig(steps=120, members=2, hidden=16, head=8)
# The dense GNN's `alike` relation is left out of the sparse one (sim_M is models²): off in both to compare them.
NO_ALIKE = replace(SMALL, use_alike=False)
SAMPLING = SamplingConfig(batch=2, labels=64, fanout=3)
TINY = GnnConfig(steps=10, members=1, hidden=8, head=4)  # for the core's wiring, not for what it learns


@pytest.fixture(scope="module")
def snapshot(synth_bundle: Path):  # type: ignore[no-untyped-def]
    return graph_from_bundle(read_bundle(synth_bundle))[0]


@pytest.fixture(scope="module")
def dense(snapshot) -> GnnEstimator:  # type: ignore[no-untyped-def]
    return GnnEstimator(snapshot, config=NO_ALIKE)


@pytest.fixture(scope="module")
def same_weights(snapshot, dense: GnnEstimator) -> SparseGnnEstimator:  # type: ignore[no-untyped-def]
    return SparseGnnEstimator(snapshot, config=NO_ALIKE, weights=dense.state())


def test_learns_the_planted_signal_better_than_popularity(synth_bundle: Path) -> None:
    # tests/synthetic.py: even models gain with a dataset's number of features, odd ones lose; popularity
    # cannot rank them, the features can. Fan-out 3 and two cold datasets a step: a sample, not the graph.
    report = evaluate(
        read_bundle(synth_bundle),
        methods=["sparse", "popularity"],
        targets=["d0", "d2", "d7", "d9"],
        extra_methods={
            "sparse": lambda fold: served_predictions(
                fold, SparseGnnEstimator(fold.snapshot, config=SMALL, sampling=SAMPLING)
            )
        },
    )
    sparse, popularity = (r.means["spearman"] for r in report.results)
    assert sparse is not None and popularity is not None
    assert sparse > popularity + 0.3, (sparse, popularity)
    assert sparse > 0.6


def test_the_library_side_and_queries_are_the_dense_computation(  # type: ignore[no-untyped-def]
    snapshot, dense: GnnEstimator, same_weights: SparseGnnEstimator
) -> None:
    """The same weights on the same graph: every query answers as the dense estimator's (library-side
    embeddings by sparse products, the prior from the neighbours' records instead of a dense z)."""
    rows = [dataset_raw_features(d) for d in snapshot.datasets[:3]] + [{}]
    probes = [ProbeRecord(m, "q", "score", v) for m, v in (("m0", 0.9), ("m1", 0.4), ("m3", 0.5), ("m4", 0.8))]
    for features in rows:
        for given in ([], probes):
            want = dense.score_all(features, probes=given)
            got = same_weights.score_all(features, probes=given)
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got.uncertainty, want.uncertainty, rtol=1e-4, atol=1e-6)
    for dataset in ("d0", "d3", "d8"):  # transductive: computed on demand, as the dense graph's answers
        want = dense.score_all({}, known_dataset=dataset)
        got = same_weights.score_all({}, known_dataset=dataset)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
        assert got.prediction(0) == want.prediction(0)
    np.testing.assert_allclose(same_weights.behaviour().toarray(), dense.behaviour())  # the probing policy's z
    # The selector's first pick is by Score alone; the later ones weigh redundancy by sim_M, the identity here.
    picked = same_weights.select_probes(rows[0], budget=3)
    assert len(set(picked)) == 3 and picked[0] == dense.select_probes(rows[0], budget=3)[0]


def test_the_onnx_export_scores_as_torch_and_takes_a_newer_graphs_constants(  # type: ignore[no-untyped-def]
    snapshot, same_weights: SparseGnnEstimator
) -> None:
    """On ONNX Runtime (the prior an input, the library side constants) a query answers as under torch; a newer
    graph under the same weights serves the older model with its own constants, no new export."""
    gnn = SparseGnnEstimator(snapshot, config=NO_ALIKE, weights=same_weights.state())
    rows = [dataset_raw_features(d) for d in snapshot.datasets[:3]] + [{}]
    probes = [ProbeRecord(m, "q", "score", v) for m, v in (("m0", 0.9), ("m1", 0.4), ("m3", 0.5), ("m4", 0.8))]
    asked = [(features, given) for features in rows for given in ([], probes)]
    want = [gnn.score_all(features, probes=given) for features, given in asked]
    scorer = gnn.serve_onnx()
    assert gnn.scorer is scorer and scorer.inputs[-1] == "prior"
    for (features, given), torch_answer in zip(asked, want, strict=True):
        got = gnn.score_all(features, probes=given)
        np.testing.assert_allclose(got.scores, torch_answer.scores, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got.uncertainty, torch_answer.uncertainty, rtol=1e-5, atol=1e-6)
    records = snapshot.interactions
    newer_graph = replace(snapshot, interactions=records.take(np.arange(len(records) - 5)))
    newer = SparseGnnEstimator(newer_graph, config=NO_ALIKE, weights=gnn.state())
    on_torch = newer.score_all(rows[0])
    newer.serve_onnx(like=gnn)
    assert newer.onnx_model is not None and newer.onnx_model != gnn.onnx_model
    assert len(newer.onnx_model) == len(gnn.onnx_model)  # the same graph of nodes, other initializer values
    np.testing.assert_allclose(newer.score_all(rows[0]).scores, on_torch.scores, rtol=1e-5, atol=1e-6)


def test_popularity_and_prior_from_records_equal_the_dense_arrays(
    dense: GnnEstimator, same_weights: SparseGnnEstimator
) -> None:
    hidden = dense.rated[[1, 4]]
    visible = np.setdiff1d(dense.rated, hidden)
    np.testing.assert_allclose(same_weights._summaries(hidden), dense._popularity(visible), atol=1e-9)
    popularity = dense._popularity(visible)[:, 0]
    targets = np.array([0, 2, 5])
    want = dense._prior(hidden, visible, popularity)[:, targets]
    got = same_weights._prior_of(hidden, visible, popularity, targets)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)


def test_a_sparse_episode_with_full_fanout_is_the_dense_step(snapshot) -> None:  # type: ignore[no-untyped-def]
    """With fan-outs past every degree and every model labelled, a training step's loss is the dense step's."""
    config = replace(NO_ALIKE, probes=False, dropout=0.0)
    dense = GnnEstimator(snapshot, config=replace(config, steps=0))
    sparse = SparseGnnEstimator(
        snapshot, config=replace(config, steps=0), sampling=SamplingConfig(batch=2, labels=10**6, fanout=10**6)
    )
    net = dense.members[0]
    hidden = np.sort(dense.rated[[2, 6]])
    visible = np.setdiff1d(dense.rated, hidden)
    from services.recommender.estimators.gnn.config import DATA, MODEL
    from services.recommender.estimators.gnn.graph import _tensor
    from services.recommender.estimators.gnn.sampling import NeighbourhoodSampler
    from services.recommender.estimators.gnn.training import _loss

    summaries = dense._popularity(visible)
    x_data, x_model, index, weight = dense._inputs(visible, [], summaries)
    with torch.no_grad():
        layers = net.embed(x_data, x_model, index, weight)
        side = net.model_side(layers[-1][MODEL], _tensor(summaries[:, 0]))
        prior = dense._prior(hidden, visible, summaries[:, 0])
        predicted = net.score(layers[-1][DATA][torch.from_numpy(hidden)], side, prior)
        labels = _tensor(np.where(dense.has, dense._z_filled, 0.0))[hidden]
        observed = torch.from_numpy(dense.has[hidden])
        # The sparse step's loss is over the models the cold datasets scored.
        has = torch.from_numpy(dense.has[hidden].any(axis=0))
        want = _loss(predicted[:, has], labels[:, has], observed[:, has], config.rank_weight)
        relations = [sparse._rated_in, sparse._rates_in, *sparse._static_in_edges()]
        sizes = {DATA: len(sparse.nodes), MODEL: len(sparse.model_ids)}
        sampler = NeighbourhoodSampler(
            relations, sizes, [10**6] * config.layers, labels=10**6, label_edges=sparse._rated_in
        )
        got = sparse._step(net, sampler, hidden, np.random.default_rng(0))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_a_library_past_the_cell_limit_is_served_by_the_sparse_gnn(snapshot) -> None:  # type: ignore[no-untyped-def]
    from test_knn_sparse import _Knowledge

    cells = len(snapshot.datasets) * len(snapshot.models)
    knowledge: Any = _Knowledge(snapshot)  # the core's view of knowledge, over one snapshot
    core = RecommenderCore(
        knowledge, None, gnn_max_cells=cells - 1, device="cpu", gnn_config=TINY, training_processes=-1
    )
    try:
        served = core.fitted(snapshot.library.name)
        assert isinstance(served.estimator.primary, SparseGnnEstimator)
        assert served.backend.startswith("onnxruntime") and served.origin == "trained"
        features = dataset_raw_features(snapshot.datasets[7])
        answer = core.recommend(snapshot.library.name, features, k=3, constraints=Constraints())
        assert answer.estimator == "gnn/v1" and len(answer.models) == 3
    finally:
        core.close()
    below = RecommenderCore(knowledge, None, device="cpu", gnn_config=TINY, training_processes=-1)
    try:  # under the limit: the dense GNN, as before
        served = below.fitted(snapshot.library.name)
        assert type(served.estimator.primary) is GnnEstimator and served.backend.startswith("onnxruntime")
    finally:
        below.close()


def test_a_querys_prior_is_the_neighbour_prior_over_every_model(  # type: ignore[no-untyped-def]
    snapshot, dense: GnnEstimator, same_weights: SparseGnnEstimator
) -> None:
    """The query's prior computed on the models its neighbours scored (the rest their popularity) is the dense
    query module's `_neighbour_prior` over every model: (Σ w z + c · pop) / (Σ w [scored] + c)."""
    rows = [dataset_raw_features(d) for d in snapshot.datasets[:4]] + [{}]
    for features in rows:
        weights = same_weights.query(features).inputs["dataset_weights"]
        got = same_weights._query_prior(weights)
        assert got.shape == (1, len(same_weights.model_ids)) and got.dtype == np.float32
        with torch.no_grad():
            want = dense.query_module.prior(torch.from_numpy(weights)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    none = np.zeros_like(weights)  # no edge: every model's prior is its popularity
    np.testing.assert_array_equal(same_weights._query_prior(none)[0], same_weights.popularity.astype(np.float32))


def test_the_members_mean_and_spread_and_the_ranking_are_the_stacked_ones(  # type: ignore[no-untyped-def]
    snapshot, same_weights: SparseGnnEstimator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ensemble's mean and spread as sums of the members' vectors (`_mean_and_spread`) answer as the stacked
    (members x models) mean and deviation did: scores and σ to float32 rounding, the same ranking."""
    from services.recommender.estimators.gnn import network

    rows = [dataset_raw_features(d) for d in snapshot.datasets[:4]] + [{}]
    probes = [ProbeRecord(m, "q", "score", v) for m, v in (("m0", 0.9), ("m1", 0.4), ("m3", 0.5))]
    asked = [(features, given) for features in rows for given in ([], probes)]
    now = [same_weights.score_all(features, probes=given) for features, given in asked]

    def stacked(scores):  # type: ignore[no-untyped-def]  # the code before
        together = torch.stack(list(scores))
        mean = together.mean(dim=0)
        return mean, torch.sqrt(((together - mean) ** 2).mean(dim=0))

    monkeypatch.setattr(network, "_mean_and_spread", stacked)
    for (features, given), got in zip(asked, now, strict=True):
        want = same_weights.score_all(features, probes=given)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got.uncertainty, want.uncertainty, rtol=1e-5, atol=1e-7)
        assert list(np.argsort(-got.scores, kind="stable")[:10]) == list(np.argsort(-want.scores, kind="stable")[:10])
