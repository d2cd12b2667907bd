"""The first estimator: similar-dataset kNN over dataset features, shrunk toward model popularity.

Scores are compared within a dataset, not across (a hard dataset lowers every model), so each dataset's
scores are z-scored first. For a query dataset q:

* its nearest library datasets by feature distance get Gaussian weights w_i;
* a model's predicted z is  (Σ w_i z_im + c · pop_m) / (Σ w_i + c),  where pop_m is its mean z over all
  datasets (shrunk toward 0 when it has few records) and c the prior's weight: with little support from
  close datasets the prediction falls back to popularity;
* the z is turned back into the metric through the weighted mean and spread of the neighbours' scores;
* the uncertainty is the weighted spread of the neighbours' z around the prediction, in metric units.

When q is a known dataset node with records (the transductive path), its own records are the answer for
the models they cover and its own score mean and spread anchor the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modsnet.data.graph import Snapshot, interaction_columns_of, pair_sums
from modsnet.data.graph_build import raw_features

from .base import Evidence, Prediction

NAME = "knn-popularity/v1"
_MIN_SPREAD = 1e-3
_CLIP = 5.0


@dataclass(frozen=True)
class FitInfo:
    datasets: int
    models: int
    interactions: int
    feature_names: list[str]


class KnnPopularityEstimator:
    name = NAME

    def __init__(self, snapshot: Snapshot, *, neighbours: int = 8, prior_weight: float = 0.5, evidence: int = 3):
        self.neighbours = neighbours
        self.prior_weight = prior_weight
        self.evidence_count = evidence
        self.interval_scale = 1.0  # σ's multiplier, set by calibration (services/recommender/calibration.py)
        self.sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
        self.model_ids = [m.model_id for m in snapshot.models]
        records = interaction_columns_of(snapshot)
        rated = records.rated_dataset_ids()
        self.dataset_ids = rated

        # Mean score per (dataset, model); several records of one pair are averaged.
        total, count = pair_sums(records, self.model_ids, rated)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.scores = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        goodness = self.sign * self.scores
        self.row_mean = np.nanmean(goodness, axis=1) if len(rated) else np.zeros(0)
        spread = np.nanstd(goodness, axis=1) if len(rated) else np.zeros(0)
        typical = float(np.median(spread[spread > _MIN_SPREAD])) if np.any(spread > _MIN_SPREAD) else 0.05
        self.row_spread = np.where(spread > _MIN_SPREAD, spread, typical)
        self.z = (goodness - self.row_mean[:, None]) / self.row_spread[:, None]
        has = ~np.isnan(self.z)
        self.has = has
        self.records_per_model = has.sum(axis=0)
        # Popularity, shrunk toward 0 for models with few records (one pseudo-record at z = 0).
        self.popularity = np.where(has, self.z, 0.0).sum(axis=0) / (self.records_per_model + 1)
        self.popularity_rank = np.argsort(np.argsort(-self.popularity)) + 1

        self._fit_features(snapshot)
        self.fit_info = FitInfo(len(rated), len(self.model_ids), len(snapshot.interactions), self.feature_names)

    # -- features -----------------------------------------------------------------------------------

    def _fit_features(self, snapshot: Snapshot) -> None:
        by_id = raw_features(snapshot.datasets)  # junk metadata columns left out
        vectors = [by_id.get(d, {}) for d in self.dataset_ids]
        counts: dict[str, int] = {}
        for vec in vectors:
            for name in vec:
                counts[name] = counts.get(name, 0) + 1
        # Features most datasets have; a rare feature would mostly compare imputed values.
        self.feature_names = sorted(n for n, c in counts.items() if c >= max(1, len(vectors) // 2))
        raw = np.array([[vec.get(n, np.nan) for n in self.feature_names] for vec in vectors], dtype=float).reshape(
            len(vectors), len(self.feature_names)
        )
        if not len(vectors) or not self.feature_names:
            # Nothing to compare datasets by (a score matrix with ids only): every dataset is equally near,
            # so a prediction is the neighbours' mean shrunk toward popularity.
            self.center = np.zeros(len(self.feature_names))
            self.scale = np.ones(len(self.feature_names))
            self.matrix = np.zeros((len(vectors), len(self.feature_names)))
            return
        self.center = np.nanmedian(raw, axis=0)
        q75, q25 = np.nanpercentile(raw, [75, 25], axis=0)
        scale = (q75 - q25) / 1.349
        std = np.nanstd(raw, axis=0)
        scale = np.where(scale > 1e-12, scale, np.where(std > 1e-12, std, 1.0))
        self.scale = scale
        self.matrix = self._standardise(raw)

    def _standardise(self, raw: np.ndarray) -> np.ndarray:
        scaled = (raw - self.center) / self.scale
        return np.clip(np.nan_to_num(scaled, nan=0.0), -_CLIP, _CLIP)

    def shared_features(self, features: dict[str, float]) -> list[str]:
        return [n for n in self.feature_names if n in features]

    # -- prediction ---------------------------------------------------------------------------------

    def _neighbours(self, features: dict[str, float], exclude: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the nearest datasets and their weights in (0, 1]."""
        if not self.feature_names or not self.shared_features(features) or len(self.dataset_ids) == 0:
            return np.zeros(0, dtype=int), np.zeros(0)
        query = np.array([features.get(n, np.nan) for n in self.feature_names], dtype=float)
        q = self._standardise(query[None, :])[0]
        distance = np.sqrt(np.mean((self.matrix - q) ** 2, axis=1))
        if exclude is not None:
            distance[exclude] = np.inf
        order = np.argsort(distance, kind="stable")
        order = order[np.isfinite(distance[order])][: self.neighbours]
        if len(order) == 0:
            return order, np.zeros(0)
        bandwidth = max(float(np.median(distance[order])), 1e-6)
        weights = np.exp(-0.5 * (distance[order] / bandwidth) ** 2)
        return order, weights

    def _inductive(
        self, features: dict[str, float], *, exclude: int | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Predicted scores and uncertainties of every model from the dataset's neighbours."""
        idx, w = self._neighbours(features, exclude)
        if len(idx):
            anchor_mean = float(np.average(self.row_mean[idx], weights=w))
            anchor_spread = float(np.average(self.row_spread[idx], weights=w))
        elif len(self.dataset_ids):
            anchor_mean, anchor_spread = float(np.mean(self.row_mean)), float(np.mean(self.row_spread))
        else:
            anchor_mean, anchor_spread = 0.0, 1.0
        z_near = self.z[idx] if len(idx) else np.zeros((0, len(self.model_ids)))
        has_near = ~np.isnan(z_near)
        w_col = w[:, None] * has_near
        support = w_col.sum(axis=0)
        c = self.prior_weight
        z_hat = (np.where(has_near, z_near, 0.0) * w_col).sum(axis=0) + c * self.popularity
        z_hat /= support + c
        dev = np.where(has_near, z_near - z_hat, 0.0) ** 2
        var = ((dev * w_col).sum(axis=0) + c * (1.0 + (self.popularity - z_hat) ** 2)) / (support + c)
        predicted = self.sign * (anchor_mean + anchor_spread * z_hat)
        return predicted, anchor_spread * np.sqrt(var), idx, w

    def predict(self, features: dict[str, float], *, known_dataset: str | None = None) -> list[Prediction]:
        """A prediction for every model of the library, in library order."""
        own = self.dataset_ids.index(known_dataset) if known_dataset in self.dataset_ids else None
        predicted, uncertainty, idx, w = self._inductive(features, exclude=own)
        uncertainty = self.interval_scale * uncertainty
        if own is not None:
            # Transductive: the dataset's own records calibrate the rest. Its models' mean residual
            # against the inductive prediction shifts the others, shrunk by one pseudo-record.
            observed = self.has[own]
            residual = self.scores[own, observed] - predicted[observed]
            predicted = predicted + residual.sum() / (observed.sum() + 1)
        out = []
        n_models = len(self.model_ids)
        for j, model_id in enumerate(self.model_ids):
            if own is not None and self.has[own, j]:
                score = float(self.scores[own, j])
                out.append(
                    Prediction(
                        model_id,
                        score,
                        0.0,
                        [Evidence(known_dataset or "", 1.0, score)],
                        f"measured {score:.3g} on this very dataset ({known_dataset})",
                    )
                )
                continue
            evidence = [
                Evidence(self.dataset_ids[i], float(wi), float(self.scores[i, j]))
                for i, wi in zip(idx, w, strict=True)
                if self.has[i, j]
            ][: self.evidence_count]
            out.append(
                Prediction(
                    model_id,
                    float(predicted[j]),
                    float(uncertainty[j]),
                    evidence,
                    self._explain(j, evidence, n_models),
                )
            )
        return out

    def _explain(self, j: int, evidence: list[Evidence], n_models: int) -> str:
        rank = int(self.popularity_rank[j])
        popular = f"{_ordinal(rank)} of {n_models} by popularity over {int(self.records_per_model[j])} datasets"
        if not evidence:
            return f"no close dataset has a record of it; {popular}"
        near = ", ".join(f"{e.score:.3g} on {e.dataset_id} (similarity {e.similarity:.2f})" for e in evidence)
        return f"scored {near}; {popular}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
