"""The GNN estimator: a planted signal, the inductive path, ONNX agreement, uncertainty."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the GNN estimator needs torch (pip install torch==2.13.0)")
pytest.importorskip("torch_geometric", reason="the GNN estimator needs torch-geometric")

from modsnet.data.bundle import read_bundle  # noqa: E402
from services.recommender.estimators.gnn import (  # noqa: E402
    DATA,
    INPUTS,
    GnnConfig,
    GnnEstimator,
    OnnxScorer,
    QueryScorer,
)
from services.recommender.estimators.gnn.network import _neighbour_prior  # noqa: E402
from services.recommender.evaluation import ProbeRecord, evaluate, graph_from_bundle, served_predictions  # noqa: E402

SMALL = GnnConfig(steps=120, members=2, hidden=16, head=8)


@pytest.fixture(scope="module")
def fitted(synth_bundle: Path) -> GnnEstimator:
    snapshot, _ = graph_from_bundle(read_bundle(synth_bundle))
    return GnnEstimator(snapshot, config=SMALL)


def test_learns_the_planted_signal_better_than_popularity(synth_bundle: Path) -> None:
    # tests/synthetic.py: even models gain with a dataset's number of features, odd ones lose, so
    # popularity (a model's mean) cannot rank them; the dataset features can.
    report = evaluate(
        read_bundle(synth_bundle),
        methods=["gnn", "popularity"],
        targets=["d0", "d2", "d7", "d9"],
        # The GNN alone, one fit per target (the served blend adds three calibration fits to each: test_blend.py)
        extra_methods={
            "gnn": lambda fold: served_predictions(fold, GnnEstimator(fold.snapshot, probes=fold.probes, config=SMALL))
        },
    )
    gnn, popularity = (r.means["spearman"] for r in report.results)
    assert gnn is not None and popularity is not None
    assert gnn > popularity + 0.3, (gnn, popularity)
    assert gnn > 0.6


def test_inductive_prediction_for_an_unseen_dataset(synth_bundle: Path, fitted: GnnEstimator) -> None:
    bundle = read_bundle(synth_bundle)
    rows = {r["dataset_id"]: r for r in bundle.features["tabular"].rows}
    wide = {k: float(v) for k, v in rows["d7"].items() if k != "dataset_id"}  # 9 features: even models win there
    snapshot, _ = graph_from_bundle(bundle)
    without = replace(
        snapshot,
        datasets=[d for d in snapshot.datasets if d.dataset_id != "d7"],
        interactions=[i for i in snapshot.interactions if i.dataset_id != "d7"],
    )
    estimator = GnnEstimator(without, config=SMALL)
    assert "d7" not in estimator.node_index
    predictions = estimator.predict(wide)
    assert [p.model_id for p in predictions] == estimator.model_ids
    scores = {p.model_id: p.score for p in predictions}
    assert all(np.isfinite(list(scores.values())))
    even = np.mean([scores[f"m{j}"] for j in (0, 2, 4)])
    odd = np.mean([scores[f"m{j}"] for j in (1, 3, 5)])
    assert even > odd
    assert all(p.uncertainty > 0 for p in predictions)  # the ensemble's members disagree somewhat
    assert all(0.0 < p.score < 1.5 for p in predictions)  # back in the metric's units


def test_transductive_path_returns_the_records(fitted: GnnEstimator) -> None:
    predictions = fitted.predict({}, known_dataset="d3")
    measured = {i.model_id: i.value for i in fitted_interactions(fitted, "d3")}
    for p in predictions:
        assert p.score == pytest.approx(measured[p.model_id]) and p.uncertainty == 0.0


def fitted_interactions(estimator: GnnEstimator, dataset: str) -> list[ProbeRecord]:
    i = estimator.node_index[dataset]
    return [
        ProbeRecord(m, dataset, "score", float(estimator.scores[i, j]))
        for j, m in enumerate(estimator.model_ids)
        if estimator.has[i, j]
    ]


def test_query_module_is_the_graph_computation(fitted: GnnEstimator) -> None:
    """A node that only receives messages, added to the graph, gets exactly the query module's scores."""
    query = fitted.query({}, known_dataset="d4")
    assert not query.inputs["model_weights"].any()  # no source or probe edges in this library
    net = fitted.members[0]
    summaries = fitted._popularity(fitted.rated)
    x_data, x_model, index, weight = fitted._inputs(fitted.rated, [], summaries)
    assert not weight  # every relation of this small library is held densely
    n = x_data.shape[0]
    data_relations = fitted.query_module.data_relations
    rows = {rel: torch.from_numpy(query.inputs["dataset_weights"][r]) for r, rel in enumerate(data_relations)}
    grown = {}
    for rel, adjacency in index.items():
        if rel[2] == DATA and rel[0] == DATA:  # dataset -> dataset: a new row and a new (silent) column
            bigger = torch.zeros(n + 1, n + 1)
            bigger[:n, :n] = adjacency
            bigger[n, :n] = rows.get(rel, torch.zeros(n))
        elif rel[2] == DATA:  # model -> dataset: a new, empty row
            bigger = torch.cat([adjacency, torch.zeros(1, adjacency.shape[1])])
        elif rel[0] == DATA:  # dataset -> model: a new, empty column
            bigger = torch.cat([adjacency, torch.zeros(adjacency.shape[0], 1)], dim=1)
        else:
            bigger = adjacency
        grown[rel] = bigger
    x_grown = torch.cat([x_data, torch.from_numpy(query.inputs["features"])])
    c = fitted.constants
    popularity = torch.from_numpy(summaries[:, 0].astype(np.float32))
    with torch.no_grad():
        layers = net.embed(x_grown, x_model, grown, {})
        prior = _neighbour_prior(sum(rows.values())[None, :], c.z, c.has, c.popularity, c.strength)
        side = net.model_side(layers[-1]["model"], popularity)
        graph_scores = net.score(layers[-1][DATA][n:], side, prior)[0]
        single = QueryScorer([net], replace(c, members=c.members[:1]))
        mean, _ = single(*(torch.from_numpy(query.inputs[k]) for k in INPUTS))
    np.testing.assert_allclose(mean.numpy(), graph_scores.numpy(), atol=1e-5)


def test_onnx_matches_torch(fitted: GnnEstimator, tmp_path: Path) -> None:
    path = tmp_path / "estimator.onnx"
    fitted.export_onnx(path)
    scorer = OnnxScorer(path)
    assert scorer.providers[-1] == "CPUExecutionProvider"
    probes = [ProbeRecord("m1", "q", fitted.probe_kind, 0.7), ProbeRecord("m4", "q", fitted.probe_kind, 0.9)]
    for query in (fitted.query({}, known_dataset="d2"), fitted.query({"n_features": 5.0}, probes=probes)):
        torch_mean, torch_std = fitted.run(query.inputs)
        onnx_mean, onnx_std = scorer.run(query.inputs)
        np.testing.assert_allclose(onnx_mean, torch_mean, atol=1e-5)
        np.testing.assert_allclose(onnx_std, torch_std, atol=1e-5)
    before = [p.score for p in fitted.predict({}, known_dataset="d2")]
    fitted.serve_onnx()
    try:
        after = [p.score for p in fitted.predict({}, known_dataset="d2")]
    finally:
        fitted.scorer = None
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_query_prior_reads_only_the_datasets_with_an_edge(fitted: GnnEstimator, tmp_path: Path) -> None:
    """The query module's prior gathers the rows of the datasets the query has edges from: the dense product's
    value, for a query with edges and for one with none (popularity alone), and ONNX Runtime takes both."""
    c = fitted.constants
    with_edges = fitted.query({}, known_dataset="d2").inputs
    without = {**with_edges, "dataset_weights": np.zeros_like(with_edges["dataset_weights"])}
    path = tmp_path / "estimator.onnx"
    fitted.export_onnx(path)
    scorer = OnnxScorer(path)
    for inputs in (with_edges, without):
        weights = torch.from_numpy(inputs["dataset_weights"])
        with torch.no_grad():
            dense = _neighbour_prior(weights.sum(dim=0, keepdim=True), c.z, c.has, c.popularity, c.strength)
            gathered = fitted.query_module.prior(weights)
        np.testing.assert_allclose(gathered.numpy(), dense.numpy(), rtol=1e-6, atol=1e-7)
        torch_mean, torch_std = fitted.run(inputs)
        onnx_mean, onnx_std = scorer.run(inputs)
        np.testing.assert_allclose(onnx_mean, torch_mean, atol=1e-5)
        np.testing.assert_allclose(onnx_std, torch_std, atol=1e-5)
    assert np.count_nonzero(with_edges["dataset_weights"].sum(axis=0)) < with_edges["dataset_weights"].shape[1]


def test_probes_switch_and_measured_probes(synth_bundle: Path, fitted: GnnEstimator) -> None:
    chosen = fitted.select_probes({}, known_dataset="d5", budget=2)
    assert len(chosen) == 2 and set(chosen) <= set(fitted.model_ids)
    measured = [ProbeRecord(m, "d5", "score", 0.42) for m in chosen]
    predictions = {p.model_id: p for p in fitted.predict({}, known_dataset="d5-new", probes=measured)}
    assert all(predictions[m].score == 0.42 and predictions[m].uncertainty == 0.0 for m in chosen)
    snapshot, _ = graph_from_bundle(read_bundle(synth_bundle))
    off = GnnEstimator(snapshot, config=replace(SMALL, probes=False, steps=5, members=1))
    assert off.select_probes({}, known_dataset="d5") == []
    assert "probed" not in off.fit_info.relations


def _imported_modules(path: Path, package: str) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved against `package`)."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from .. import evaluation`
    return found


def test_estimators_never_import_the_evaluation() -> None:
    """The evaluation drives the estimators (its GNN hook included); an estimator importing it back is a cycle."""
    root = Path(__file__).resolve().parents[1]
    folder = root / "services" / "recommender" / "estimators"
    files = sorted(folder.rglob("*.py"))
    assert any(f.parent.name == "gnn" for f in files)  # the walk sees the GNN package's modules
    offenders = {}
    for path in files:
        package = ".".join(path.relative_to(root).parent.parts)
        imported = _imported_modules(path, package)
        hits = sorted(m for m in imported if m.startswith("services.recommender.evaluation"))
        if hits:
            offenders[str(path.relative_to(root))] = hits
    assert not offenders


def test_the_import_walk_sees_a_relative_import_of_the_evaluation(tmp_path: Path) -> None:
    module = tmp_path / "gnn.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..evaluation import Fold\n")
    assert "services.recommender.evaluation" in _imported_modules(module, "services.recommender.estimators")
    module.write_text("from ... import evaluation\n")
    assert "services.recommender.evaluation" in _imported_modules(module, "services.recommender.estimators.gnn")
