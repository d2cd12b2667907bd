"""The sparse GNN (issue 13) on a synthetic scale library: fit time and memory, query time, held-out quality.

    python benchmarks/gnn_sparse.py --size 100k --holdout 30

reads the SQLite library `benchmarks/scale.py` imported (`--steps generate import`), hides every record of
`--holdout` scored datasets (seed 0; datasets with at least 20 records), fits the sparse GNN and the kNN
estimator on the rest, and predicts each hidden dataset from its features alone (a new dataset, as a search
without probes sees it). Prints one JSON object: fit wall and CPU seconds and the process's peak RSS after each
fit, per-query milliseconds of the GNN's `score_all`, and the mean Spearman and Pearson over the hidden
datasets of the GNN, the kNN and popularity. The estimators alone, not the served blend (`scale.py --steps serve`
times that). `--served`: the served estimators instead, each blended with the kNN and popularity by weights
learned on held-out datasets of the graph (`fit_blend`, what `RecommenderCore` serves): the sparse GNN's blend
against the kNN's, the one that serves a library this large with `sparse_gnn` off; per-query CPU milliseconds of
the GNN blend's `score_all` too.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scale import db_of, name_of


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="100k")
    parser.add_argument("--holdout", type=int, default=30)
    parser.add_argument("--steps", type=int, default=0, help="GNN steps per member (0: the GNN's default)")
    parser.add_argument("--members", type=int, default=0, help="ensemble size (0: the GNN's default)")
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--fanout", type=int, default=0)
    parser.add_argument("--labels", type=int, default=0)
    parser.add_argument("--served", action="store_true", help="compare the served blends (see the doc)")
    args = parser.parse_args(argv)

    from modsnet.data.graph import interaction_columns_of
    from modsnet.data.graph_build import dataset_raw_features
    from services.knowledge.backends.sqlite import SqliteKnowledgeStore
    from services.recommender.estimators.blend import fit_blend
    from services.recommender.estimators.gnn import GnnConfig
    from services.recommender.estimators.gnn.sparse import SamplingConfig, SparseGnnEstimator
    from services.recommender.estimators.knn import KnnPopularityEstimator

    out: dict[str, object] = {"size": args.size}
    start = time.perf_counter()
    store = SqliteKnowledgeStore(db_of(args.size))
    snapshot = store.snapshot(name_of(args.size))
    store.close()
    out["snapshot_seconds"], out["snapshot_peak_gib"] = time.perf_counter() - start, _peak_gib()

    records = interaction_columns_of(snapshot)
    model_ids = [m.model_id for m in snapshot.models]
    dataset_ids = [d.dataset_id for d in snapshot.datasets]
    m_pos, d_pos = records.positions(model_ids, dataset_ids)
    counts = np.bincount(d_pos[d_pos >= 0], minlength=len(dataset_ids))
    rng = np.random.default_rng(0)
    eligible = np.nonzero(counts >= 20)[0]
    hidden = [dataset_ids[i] for i in rng.choice(eligible, size=min(args.holdout, len(eligible)), replace=False)]
    graph = replace(snapshot, interactions=records.without_datasets(set(hidden)))
    truth: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for dataset_id in hidden:
        i = dataset_ids.index(dataset_id)
        mine = d_pos == i
        truth[dataset_id] = (m_pos[mine], records.score[mine])

    default = GnnConfig()
    config = replace(
        default, steps=args.steps or default.steps, members=args.members or default.members
    )  # fmt: skip
    base = SamplingConfig()
    sampling = SamplingConfig(
        batch=args.batch or base.batch, labels=args.labels or base.labels, fanout=args.fanout or base.fanout
    )
    out["config"] = {"steps": config.steps, "members": config.members, "sampling": sampling.__dict__}

    def fit_gnn(g: Any) -> SparseGnnEstimator:
        return SparseGnnEstimator(g, config=config, sampling=sampling)

    start, cpu = time.perf_counter(), time.process_time()
    gnn: Any = fit_blend(graph, fit_gnn) if args.served else fit_gnn(graph)
    out["gnn_fit_seconds"], out["gnn_fit_cpu"] = time.perf_counter() - start, time.process_time() - cpu
    out["gnn_peak_gib"] = _peak_gib()
    start, cpu = time.perf_counter(), time.process_time()
    knn: Any = fit_blend(graph, KnnPopularityEstimator) if args.served else KnnPopularityEstimator(graph)
    out["knn_fit_seconds"], out["knn_fit_cpu"] = time.perf_counter() - start, time.process_time() - cpu
    if args.served:
        out["gnn_blend"], out["knn_blend"] = gnn.blend.describe(), knn.blend.describe()

    nodes = {d.dataset_id: d for d in snapshot.datasets}
    quality: dict[str, list[tuple[float, float]]] = {"gnn": [], "knn": []}
    if not args.served:
        quality["popularity"] = []
    times, cpu_times = [], []
    for dataset_id in hidden:
        features = dataset_raw_features(nodes[dataset_id])
        t, c = time.perf_counter(), time.thread_time()
        scored = {"gnn": gnn.score_all(features).scores}
        cpu_times.append(time.thread_time() - c)
        times.append(time.perf_counter() - t)
        scored["knn"] = knn.score_all(features).scores
        if not args.served:
            scored["popularity"] = knn.score_popularity(features).scores
        models, values = truth[dataset_id]
        for name, scores in scored.items():
            predicted = scores[models]
            quality[name].append((_rank_corr(predicted, values), float(np.corrcoef(predicted, values)[0, 1])))
    ms = np.array(times) * 1000
    out["gnn_query_ms_p50"], out["gnn_query_ms_p99"] = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
    cpu_ms = np.array(cpu_times) * 1000
    out["gnn_query_cpu_ms_p50"] = float(np.percentile(cpu_ms, 50))
    out["gnn_query_cpu_ms_p99"] = float(np.percentile(cpu_ms, 99))
    for name, rows in quality.items():
        array = np.array(rows)
        out[f"{name}_spearman"], out[f"{name}_pearson"] = float(np.nanmean(array[:, 0])), float(np.nanmean(array[:, 1]))
    out["held_out"] = len(hidden)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
