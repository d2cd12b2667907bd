"""A boosted-tree blend member over (dataset, model) pairs, tried on TransferGraph (issue 16 point 7): not served.

    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/blend_folds.py --dump DIR --published --no-decisions \\
        transfergraph-image --shared-data /work/shared/data
    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/pair_trees.py --dump DIR transfergraph-image \\
        --shared-data /work/shared/data
    PYTHONPATH=. nice -n 5 .venv/bin/python benchmarks/pair_trees.py --alone transfergraph-image \\
        --shared-data /work/shared/data

TransferGraph's best published rows are gradient-boosted trees over dataset features, model features and graph
embeddings. The member here is sklearn's HistGradientBoostingRegressor fitted on every (dataset, model) record of
the training graph, predicting the record's z-score within its dataset (clipped at ±3) less the kNN's z for the
pair, from: the model's popularity, record count and z spread, the kNN's z over dataset features and over the
library's similarity rows (each with the pair's own dataset left out), the nearest similar dataset's z, the
distance from the dataset to the model's source dataset and whether it is that source, the dataset's features, the
models' numeric metadata (log), their categorical metadata (native categories) and a rank-3 SVD of the z matrix.
Its z is put into the metric by the kNN's neighbour anchor, as the kNN's own.

`--alone`: the member alone, leave-one-target-out on the published targets, against popularity and the kNN z (no
dump needed). Otherwise: the member fitted on each calibration fold of each published target's training graph (as
`estimators/blend.py` holds them out; the dump kept the served members' predictions of the same pseudo-targets)
and on the whole training graph; the blend's weights learned again with the member added (`learn_weights`, cold
query weights; a query with probes is not replayed), against the served blend re-learned the same way.
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from blend import bundle_path
from sklearn.ensemble import HistGradientBoostingRegressor

from modsnet.data.bundle import read_bundle
from modsnet.data.graph import Snapshot, interaction_columns_of
from modsnet.data.graph_build import dataset_raw_features, finite_number, model_metadata
from services.recommender import evaluation
from services.recommender.calibration import scores_by_dataset
from services.recommender.estimators import blend
from services.recommender.estimators.knn import KnnPopularityEstimator

CLIP = 3.0
PRIOR = 0.5  # the kNN's prior weight on popularity


class PairTrees:
    """The member fitted on `snapshot`'s records."""

    def __init__(self, snapshot: Snapshot, *, iterations: int = 100, rank: int = 3):
        self.knn = knn = KnnPopularityEstimator(snapshot)
        self.model_ids, self.dataset_ids = knn.model_ids, knn.dataset_ids
        z = np.array([knn.z.dense_row(i) for i in range(len(self.dataset_ids))]).reshape(len(self.dataset_ids), -1)
        self.z = np.clip(z, -CLIP, CLIP)
        self.has = ~np.isnan(self.z)
        filled = np.where(self.has, self.z, 0.0)
        self.col_sum, self.col_squares, self.col_count = filled.sum(0), (filled**2).sum(0), self.has.sum(0)
        nodes = [d.dataset_id for d in snapshot.datasets]
        self.node = {d: i for i, d in enumerate(nodes)}
        self.distance = np.full((len(nodes), len(nodes)), np.inf)
        for s in snapshot.similarities:
            if s.dataset_a in self.node and s.dataset_b in self.node:
                a, b = self.node[s.dataset_a], self.node[s.dataset_b]
                self.distance[a, b] = self.distance[b, a] = s.distance
        self.rated_nodes = np.array([self.node[d] for d in self.dataset_ids], dtype=int)
        self.features = {d.dataset_id: dataset_raw_features(d) for d in snapshot.datasets}
        self._model_columns(model_metadata(snapshot))
        _, s, vt = np.linalg.svd(filled - filled.mean(0), full_matrices=False)
        r = min(rank, len(s))
        self.factors = (vt[:r].T * s[:r]) / math.sqrt(max(len(self.dataset_ids), 1))
        xs, ys = [], []
        for i, d in enumerate(self.dataset_ids):
            js = np.flatnonzero(self.has[i])
            x, base = self.rows(d, js, exclude=i)
            xs.append(x)
            ys.append(self.z[i, js] - base)
        x = np.vstack(xs)
        categorical = np.zeros(x.shape[1], dtype=bool)
        categorical[x.shape[1] - self.categories.shape[1] :] = True
        self.trees = HistGradientBoostingRegressor(
            max_iter=iterations, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=20, l2_regularization=1.0,
            categorical_features=categorical if categorical.any() else None, random_state=0,
        )  # fmt: skip
        self.trees.fit(x, np.concatenate(ys))

    def _model_columns(self, metadata: list[dict[str, str]]) -> None:
        n = len(self.model_ids)
        numeric, categories = [], []
        self.source = np.full(n, -1)
        for column in sorted({c for m in metadata for c in m}):
            cells = [m.get(column, "") for m in metadata]
            for j, cell in enumerate(cells):
                if cell in self.node:
                    self.source[j] = self.node[cell]
            filled = [c for c in cells if c != ""]
            numbers = [finite_number(c) for c in cells]
            if filled and sum(v is not None for v in numbers) >= 0.8 * len(filled):
                v = np.array([np.nan if x is None else x for x in numbers], dtype=float)
                numeric.append(np.sign(v) * np.log1p(np.abs(v)))
            elif filled:
                common = [u for u in sorted(set(filled), key=lambda u: -filled.count(u)) if filled.count(u) >= 3][:50]
                code = {u: k for k, u in enumerate(common)}
                categories.append(np.array([code.get(c, len(common)) if c else np.nan for c in cells], dtype=float))
        self.numeric = np.stack(numeric, 1) if numeric else np.zeros((n, 0))
        self.categories = np.stack(categories, 1) if categories else np.zeros((n, 0))

    def _neighbour_z(self, rows: np.ndarray, weights: np.ndarray, js: np.ndarray, popularity: np.ndarray) -> np.ndarray:
        if not len(rows):
            return popularity.copy()
        near = self.z[np.ix_(rows, js)]
        has = ~np.isnan(near)
        total = (weights[:, None] * np.where(has, near, 0.0)).sum(0) + PRIOR * popularity
        return total / ((weights[:, None] * has).sum(0) + PRIOR)

    def rows(self, dataset: str, js: np.ndarray, *, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The pair features of `dataset` with models `js` (its own records left out: row `exclude`), and the kNN z
        the trees correct."""
        n = len(js)
        count, total, squares = self.col_count[js].astype(float), self.col_sum[js].copy(), self.col_squares[js].copy()
        if exclude is not None:
            own = np.where(self.has[exclude, js], self.z[exclude, js], 0.0)
            total, squares, count = total - own, squares - own**2, count - self.has[exclude, js]
        popularity = total / (count + 1)
        spread = np.sqrt(np.maximum(squares / np.maximum(count, 1) - (total / np.maximum(count, 1)) ** 2, 0.0))
        features = self.features.get(dataset, {})
        near, weights = self.knn._neighbours(features, exclude)
        knn_z = self._neighbour_z(near, weights, js, popularity)
        at = self.node.get(dataset)
        similar_z, nearest_z = np.full(n, np.nan), np.full(n, np.nan)
        if at is not None and np.isfinite(self.distance[at, self.rated_nodes]).any():
            d = self.distance[at, self.rated_nodes].copy()
            if exclude is not None:
                d[exclude] = np.inf
            order = np.argsort(d)
            order = order[np.isfinite(d[order])][:8]
            if len(order):
                kernel = np.exp(-0.5 * (d[order] / max(float(np.median(d[order])), 1e-6)) ** 2)
                similar_z = self._neighbour_z(order, kernel, js, popularity)
                nearest_z = np.where(self.has[order[0], js], self.z[order[0], js], np.nan)
        source = self.source[js]
        to_source, is_source = np.full(n, np.nan), np.zeros(n)
        if at is not None:
            to_source = np.where(source >= 0, self.distance[at, np.maximum(source, 0)], np.nan)
            to_source = np.where(np.isfinite(to_source), to_source, np.nan)
            is_source = (source == at).astype(float)
        own_features = np.array([features.get(f, np.nan) for f in self.knn.feature_names], dtype=float)
        columns = [popularity, count, spread, knn_z, similar_z, nearest_z, to_source, is_source,
                   np.tile(own_features, (n, 1)), self.numeric[js], self.factors[js], self.categories[js]]  # fmt: skip
        return np.hstack([np.asarray(c, dtype=float).reshape(n, -1) for c in columns]), knn_z

    def z_of(self, dataset: str, js: np.ndarray) -> np.ndarray:
        x, base = self.rows(dataset, js)
        return base + self.trees.predict(x)

    def scores(self, dataset: str) -> np.ndarray:
        """Every model's predicted score on `dataset`, in the metric (the kNN's neighbour anchor)."""
        knn = self.knn
        near, weights = knn._neighbours(self.features.get(dataset, {}), None)
        if len(near):
            mean = float(np.average(knn.row_mean[near], weights=weights))
            spread = float(np.average(knn.row_spread[near], weights=weights))
        else:
            mean, spread = float(np.mean(knn.row_mean)), float(np.mean(knn.row_spread))
        return knn.sign * (mean + spread * self.z_of(dataset, np.arange(len(self.model_ids))))


def _published(bundle_dir: Path, shared: Path) -> tuple[Snapshot, list[str]]:
    bundle = read_bundle(bundle_dir)
    snapshot, _ = evaluation.graph_from_bundle(bundle)
    published = evaluation.published_dir_for(bundle.name, shared)
    return snapshot, evaluation.default_targets(snapshot, published_dir=published)


def _truth(snapshot: Snapshot, target: str) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for r in snapshot.interactions:
        if r.dataset_id == target:
            values.setdefault(r.model_id, []).append(r.score)
    return {m: float(np.mean(v)) for m, v in values.items()}


def alone(bundle_dir: Path, shared: Path) -> str:
    snapshot, targets = _published(bundle_dir, shared)
    rows = []
    for target in targets:
        train = replace(snapshot, interactions=[r for r in snapshot.interactions if r.dataset_id != target])
        member = PairTrees(train)
        truth = _truth(snapshot, target)
        js = np.array([member.model_ids.index(m) for m in sorted(truth)])
        true = np.array([truth[m] for m in sorted(truth)])
        x, knn_z = member.rows(target, js)
        rows.append([
            evaluation.target_metrics(true, predicted)[metric]
            for predicted in (knn_z + member.trees.predict(x), x[:, 0], knn_z)
            for metric in ("pearson", "weighted_tau")
        ])  # fmt: skip
    m = np.mean(rows, axis=0)
    return (f"{snapshot.library.name}: trees Pearson {m[0]:.3f} weighted τ {m[1]:.3f}; popularity {m[2]:.3f} / "
            f"{m[3]:.3f}; kNN z {m[4]:.3f} / {m[5]:.3f}")  # fmt: skip


def replayed(bundle_dir: Path, shared: Path, dumped: dict[str, Any]) -> list[str]:
    """The served blend and the blend with the member, both re-learned on each fold's pseudo-targets."""
    snapshot, _ = _published(bundle_dir, shared)
    order = [m.model_id for m in snapshot.models]
    scored: dict[str, set[str]] = {}
    for r in snapshot.interactions:
        scored.setdefault(r.dataset_id, set()).add(r.model_id)
    columns = {d: np.array([j for j, m in enumerate(order) if m in s]) for d, s in scored.items()}
    truth = dumped["truth"]
    results: dict[str, list[tuple[float, float, float, tuple[float, ...]]]] = {}
    for fold in dumped["folds"]:
        ((target, seen),) = fold["targets"].items()
        train = replace(snapshot, interactions=[r for r in snapshot.interactions if r.dataset_id != target])
        folds, _ = blend.calibration_folds(train, seed=0, per_dataset=scores_by_dataset(train))
        records = interaction_columns_of(train)
        member_of = {}
        for hidden in folds:
            fitted = PairTrees(replace(train, interactions=records.without_datasets(set(hidden))))
            member_of.update({d: fitted.scores(d) for d in hidden})
        pseudo = [
            replace(p, cold=np.vstack([p.cold, member_of[p.dataset_id][columns[p.dataset_id]]]),
                    sigma=np.vstack([p.sigma, p.sigma[1]]), probed=None, probed_truth=None)
            for p in fold["pseudo"]
        ]  # fmt: skip
        candidates = sorted(_truth(snapshot, target))
        trees = PairTrees(train).scores(target)[[order.index(m) for m in candidates]]
        members = tuple(fold["members"])
        variants = {
            "served (re-learned)": ([replace(p, probed=None, probed_truth=None) for p in fold["pseudo"]], members,
                                    seen["cold"]),
            "+ pair trees": (pseudo, (*members, "trees"), np.vstack([seen["cold"], trees])),
        }  # fmt: skip
        for name, (targets_of, names, cold) in variants.items():
            weights = blend.learn_weights(targets_of, names, sign=dumped["sign"]).for_query(
                probed=False, distance=seen["distance"]
            )
            m = evaluation.target_metrics(truth[target], np.array(weights) @ cold)
            results.setdefault(name, []).append((m["pearson"], m["weighted_tau"], m["regret@1"], weights))
        m = evaluation.target_metrics(truth[target], trees)
        results.setdefault("pair trees alone", []).append((m["pearson"], m["weighted_tau"], m["regret@1"], ()))
    lines = [f"{snapshot.library.name}: {len(dumped['folds'])} targets"]
    for name, rows in results.items():
        a = np.array([r[:3] for r in rows])
        weights = "; ".join("/".join(f"{w:.1f}" for w in r[3]) for r in rows)
        lines.append(f"  {name:<20} Pearson {a[:, 0].mean():.3f} weighted τ {a[:, 1].mean():.3f} "
                     f"regret@1 {a[:, 2].mean():.3f}  {weights}")  # fmt: skip
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dump", type=Path, help="the folder of blend_folds.py --dump --published")
    parser.add_argument("libraries", nargs="+")
    parser.add_argument("--alone", action="store_true", help="the member alone, no dump")
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for name in args.libraries:
            bundle_dir = bundle_path(name, args.shared_data, Path(folder))
            if args.alone:
                print(alone(bundle_dir, args.shared_data), flush=True)
                continue
            if args.dump is None:
                parser.error("--dump DIR (or --alone)")
            dumped = pickle.loads((args.dump / f"{name.replace('/', '_')}.pkl").read_bytes())
            print("\n".join(replayed(bundle_dir, args.shared_data, dumped)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
