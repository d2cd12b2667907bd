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

Probes make the scores themselves a similarity (paper: datasets on which models perform alike are near).
With measured probes of q (a few models trained and scored on it), a library dataset's distance also counts
how far its scores of those models lie from q's, in units of a typical score spread; with no dataset features
(a published score matrix of ids only) that is the only distance there is. The probed models' measured scores
are returned as such, and their mean residual against the prediction shifts every other model.

Where a query has no features to compare and the library's own held-out datasets say it ranks better than those
probe neighbours, the probes instead fit the query's latent vector in a low-rank model of the scores
(`factors.py`): popularity plus the loadings times that vector, by ridge from the probed residuals, and the
probes are chosen to pin it down (`select_probes`).

Everything per (dataset, model) is kept sparse (`ScoreMatrix`: the records only) and a query touches only its
neighbours' records: a model none of them scored is predicted by its popularity, precomputed once per fit,
so a library of a million models costs a few dense vectors per query, not a (datasets x models) matrix.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from modsnet.data.graph import Snapshot, interaction_columns_of
from modsnet.data.graph_build import raw_features

from ..probes import MEASURED, ProbeSelector
from . import factors
from .base import Evidence, Prediction, ProbeRecord, Scored
from .matrix import ScoreMatrix

NAME = "knn-popularity/v1"
# Per thread: (estimator, features, distance) of the last `_feature_distance` asked (weakly: no estimator kept).
_LAST_DISTANCE = threading.local()
_MIN_SPREAD = 1e-3
_CLIP = 5.0
# Weight of the probe distance against the feature distance (both about 1 for a typical neighbour).
PROBE_WEIGHT = 1.0
NOISE = 0.1
SHRINK = 5.0
MIN_COMMON = 10
DIVERSITY = 0.9  # probes that behave unlike each other say most about which datasets the query resembles
PSEUDO_TARGETS = 40  # held-out datasets the choices on the library's own records (conditioning, rank) are made on
RANK_FOLDS = 5  # the rank's pseudo-targets are hidden in this many groups, one factor fit per group
LATENT_BUDGET = 3  # probes per pseudo-target when the rank is chosen (the budget; a search's first round)


@dataclass(frozen=True)
class KnnChoices:
    """What a kNN fit chooses on held-out datasets of the library itself: three quarters of a fit's time at
    TabZoo's size (40 pseudo-targets' covariances and the factor ranks' SVDs), and stable from one graph version
    to the next, where the rest (the records' z, popularity, features) is a few milliseconds. A refresh after
    feedback keeps the served kNN's choices and refits the rest on the new records (`KnnPopularityEstimator`'s
    `choices`); a training chooses afresh (docs/benchmarks-concurrency.md, "Run 9")."""

    condition: bool  # probes' surprise conditions the other models (`_conditioning_pays`)
    latent_rank: int | None  # the factor rank for featureless queries with probes; None: probe neighbours serve
    latent_rule: str = factors.INFORMATIVE  # the latent fit's probe rule
    latent_noise: float = 1.0  # its noise σ², estimated on the held-out groups
    validation: dict[str, float] = field(default_factory=dict)  # each choice's mean held-out Pearson

    def to_dict(self) -> dict[str, Any]:
        """Plain containers, as a checkpoint stores them (loaded with `weights_only`): `from_dict` reads them back."""
        return {
            "condition": self.condition,
            "latent_rank": self.latent_rank,
            "latent_rule": self.latent_rule,
            "latent_noise": self.latent_noise,
            "validation": dict(self.validation),
        }

    @classmethod
    def from_dict(cls, state: Any) -> KnnChoices:
        """`to_dict`'s output back; `ValueError` for anything a kNN could not fit with (another shape, a rank or
        rule it does not know, a noise that is not a finite number >= 0)."""
        if not isinstance(state, dict) or set(state) != {
            "condition", "latent_rank", "latent_rule", "latent_noise", "validation",
        }:  # fmt: skip
            raise ValueError(f"not the kNN's choices: {state!r:.200}")
        condition, rank, rule, noise = (state[k] for k in ("condition", "latent_rank", "latent_rule", "latent_noise"))
        validation = state["validation"]
        if not isinstance(condition, bool):
            raise ValueError(f"the kNN's conditioning is not a bool: {condition!r}")
        if rank is not None and (type(rank) is not int or rank not in factors.RANKS):
            raise ValueError(f"the kNN's latent rank {rank!r} is none of {factors.RANKS}")
        if rule not in factors.RULES:
            raise ValueError(f"the kNN's latent rule {rule!r} is none of {factors.RULES}")
        if type(noise) not in (int, float) or not np.isfinite(noise) or noise < 0:
            raise ValueError(f"the kNN's latent noise {noise!r} is not a number >= 0")
        if not isinstance(validation, dict) or not all(
            isinstance(k, str) and type(v) in (int, float) for k, v in validation.items()
        ):
            raise ValueError(f"the kNN's validation is not names to numbers: {validation!r:.200}")
        return cls(condition, rank, rule, float(noise), {k: float(v) for k, v in validation.items()})


@dataclass(frozen=True)
class FitInfo:
    datasets: int
    models: int
    interactions: int
    feature_names: list[str]


def correlation_with(
    z: np.ndarray | ScoreMatrix,
    js: np.ndarray,
    *,
    min_common: int = MIN_COMMON,
    shrink: float = SHRINK,
    models: np.ndarray | None = None,
) -> np.ndarray:
    """Pearson correlation of every model (column of `z`, datasets x models, NaN = no record) with each model of
    `js`, over the datasets both have; fewer than `min_common` in common counts as 0, and n in common shrinks
    it by n / (n + shrink). O(records x |js|) for a `ScoreMatrix` (O(datasets x models x |js|) dense): a
    library of 10,000 models costs no 10,000² matrix, one of 1,000,000 no (datasets x models) one. `models`:
    only those models' rows (default every model), at the cost of their records alone."""
    if isinstance(z, ScoreMatrix):
        block = z.columns(js)
        mj = (~np.isnan(block)).astype(float)
        vj = np.where(mj > 0, block, 0.0)
        k = len(js)
        by_mask = z.transposed_product(np.hstack([mj, vj, vj**2]), np.ones(z.nnz), columns=models)
        common, sum_j, squares_j = by_mask[:, :k], by_mask[:, k : 2 * k], by_mask[:, 2 * k :]
        by_value = z.transposed_product(np.hstack([mj, vj]), columns=models)
        sum_m, products = by_value[:, :k], by_value[:, k:]
        squares_m = z.transposed_product(mj, z.data**2, columns=models)
    else:
        mask = (~np.isnan(z)).astype(float)
        values = np.where(mask > 0, z, 0.0)
        mj, vj = mask[:, js], values[:, js]
        if models is not None:
            mask, values = mask[:, models], values[:, models]
        common = mask.T @ mj
        sum_m, sum_j = values.T @ mj, mask.T @ vj
        products, squares_m, squares_j = values.T @ vj, (values**2).T @ mj, mask.T @ (vj**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cross = products - sum_m * sum_j / common
        var_m = squares_m - sum_m**2 / common
        var_j = squares_j - sum_j**2 / common
        corr = np.where((common >= min_common) & (var_m > 1e-12) & (var_j > 1e-12), cross / np.sqrt(var_m * var_j), 0.0)
    return np.clip(corr, -1.0, 1.0) * common / (common + shrink)


class KnnPopularityEstimator:
    name = NAME

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        neighbours: int = 8,
        prior_weight: float = 0.5,
        evidence: int = 3,
        choices: KnnChoices | None = None,
    ):
        """Fit on `snapshot`. `choices` (another fit's `choices`, of an older graph of the same library): kept as
        they are, and only the latent fit's factors refitted at the rank chosen, instead of choosing again on
        held-out datasets (`KnnChoices`)."""
        self.neighbours = neighbours
        self.prior_weight = prior_weight
        self.evidence_count = evidence
        self.interval_scale = 1.0  # σ's multiplier, set by calibration (services/recommender/calibration.py)
        self.sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
        self.model_ids = [m.model_id for m in snapshot.models]
        self.model_index = {m: j for j, m in enumerate(self.model_ids)}
        records = interaction_columns_of(snapshot)
        rated = records.rated_dataset_ids()
        self.dataset_ids = rated

        # Mean score per (dataset, model) with records; several records of one pair are averaged.
        self.scores = ScoreMatrix.of_means(records, self.model_ids, rated)
        goodness = self.sign * self.scores.data
        _, row_mean, spread = self.scores.with_data(goodness).row_stats()
        self.row_mean = row_mean
        typical = float(np.median(spread[spread > _MIN_SPREAD])) if np.any(spread > _MIN_SPREAD) else 0.05
        self.row_spread = np.where(spread > _MIN_SPREAD, spread, typical)
        self.typical_spread = typical
        rows = self.scores.row_of
        self.z = self.scores.with_data((goodness - row_mean[rows]) / self.row_spread[rows])
        self.records_per_model = self.z.column_counts()
        # Popularity, shrunk toward 0 for models with few records (one pseudo-record at z = 0).
        self.popularity = self.z.column_sums() / (self.records_per_model + 1)
        self.popularity_rank = np.argsort(np.argsort(-self.popularity)) + 1
        # How far a model's z strays from its popularity across datasets: the popularity member's σ (in z).
        deviation = self.z.column_sums((self.z.data - self.popularity[self.z.indices]) ** 2)
        self.popularity_spread = np.sqrt((deviation + 1.0) / (self.records_per_model + 1))
        # Per model over every dataset: records, Σ z, Σ z² (a dataset's own taken out where it is held out).
        self._z_sums = (self.records_per_model.astype(float), self.z.column_sums(), self.z.column_sums(self.z.data**2))

        self._fit_features(snapshot)
        self.condition = False
        self.latent: factors.LatentFit | None = None
        if choices is None:
            self.condition, by_neighbours = self._conditioning_pays()
            self.latent, self.latent_validation, self._latent_choice = self._fit_latent(by_neighbours)
        else:
            self.condition, self.latent_validation = choices.condition, dict(choices.validation)
            self._latent_choice = None
            if choices.latent_rank is not None:
                self._latent_choice = (choices.latent_rank, choices.latent_rule, choices.latent_noise)
                self.latent = self._latent_at(*self._latent_choice)
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

    def _feature_distance(self, features: dict[str, float]) -> np.ndarray | None:
        """RMS distance of standardised features to every scored dataset; None with nothing to compare.

        One query asks two or three times (the blend's weights, the kNN member, popularity's scale): the last
        answer is kept per thread for the same features. Callers must not write into the array."""
        key = tuple(features.items())
        last = getattr(_LAST_DISTANCE, "entry", None)
        if last is not None and last[0]() is self and last[1] == key:
            return last[2]  # type: ignore[no-any-return]
        distance = None
        if self.feature_names and self.shared_features(features) and len(self.dataset_ids) > 0:
            query = np.array([features.get(n, np.nan) for n in self.feature_names], dtype=float)
            q = self._standardise(query[None, :])[0]
            distance = np.sqrt(np.mean((self.matrix - q) ** 2, axis=1))
            distance.flags.writeable = False  # shared by the query's callers
        _LAST_DISTANCE.entry = (weakref.ref(self), key, distance)
        return distance

    def _probe_distance(self, measured: dict[int, float]) -> np.ndarray | None:
        """RMS gap between the query's measured scores and each dataset's scores of the same models, in
        typical score spreads; a dataset with none of the probed models is infinitely far (None: no probe)."""
        if not measured or len(self.dataset_ids) == 0:
            return None
        js = np.array(sorted(measured))
        value = self.sign * np.array([measured[j] for j in js])
        gap = self.sign * self.scores.columns(js) - value
        has = ~np.isnan(gap)
        count = has.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt((np.where(has, gap, 0.0) ** 2).sum(axis=1) / count) / self.typical_spread
        return np.where(count > 0, rms, np.inf)

    def nearest_distance(self, features: dict[str, float]) -> float | None:
        """Feature distance from the query to its nearest scored dataset (None: nothing to compare by)."""
        distance = self._feature_distance(features)
        return float(distance.min()) if distance is not None else None

    def _neighbours(
        self, features: dict[str, float], exclude: int | None, measured: dict[int, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the nearest datasets and their weights in (0, 1]."""
        by_features = self._feature_distance(features)
        by_probes = self._probe_distance(measured or {})
        if by_features is None and by_probes is None:
            return np.zeros(0, dtype=int), np.zeros(0)
        if by_probes is None:
            distance = by_features
        elif by_features is None:
            distance = by_probes
        else:
            # A dataset without the probed models keeps its feature distance plus a typical probe gap.
            finite = by_probes[np.isfinite(by_probes)]
            gap = np.where(np.isfinite(by_probes), by_probes, np.median(finite) if len(finite) else 1.0)
            distance = np.sqrt(by_features**2 + PROBE_WEIGHT * gap**2)
        assert distance is not None
        distance = distance.copy()
        if exclude is not None:
            distance[exclude] = np.inf
        # A distance from a few probe scores alone is noisier than one from features: average more datasets.
        count = self.neighbours if by_features is not None else 2 * self.neighbours
        order = np.argsort(distance, kind="stable")
        order = order[np.isfinite(distance[order])][:count]
        if len(order) == 0:
            return order, np.zeros(0)
        bandwidth = max(float(np.median(distance[order])), 1e-6)
        weights = np.exp(-0.5 * (distance[order] / bandwidth) ** 2)
        return order, weights

    def _inductive(
        self,
        features: dict[str, float],
        *,
        exclude: int | None,
        measured: dict[int, float] | None = None,
        popularity_only: bool = False,
        models: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Predicted scores and uncertainties of every model from the dataset's neighbours; with
        `popularity_only`, the neighbours set only the metric's scale and every model's z is its popularity.
        `models`: the models whose predictions the caller reads, when not all (conditioning costs their records
        alone; the others' predictions are then not conditioned on the probes)."""
        idx, w = self._neighbours(features, exclude, measured)
        if len(idx):
            anchor_mean = float(np.average(self.row_mean[idx], weights=w))
            anchor_spread = float(np.average(self.row_spread[idx], weights=w))
        elif len(self.dataset_ids):
            anchor_mean, anchor_spread = float(np.mean(self.row_mean)), float(np.mean(self.row_spread))
        else:
            anchor_mean, anchor_spread = 0.0, 1.0
        if popularity_only:
            predicted = self.popularity * (self.sign * anchor_spread)  # sign · (mean + spread · pop), bit for bit
            predicted += self.sign * anchor_mean
            return (
                predicted,
                anchor_spread * self.popularity_spread,
                np.zeros(0, dtype=int),
                np.zeros(0),
            )
        # Only the models the neighbours scored move off popularity: with no support, (c · pop) / c is pop and
        # the variance c (1 + 0) / c is 1. The neighbours' records are all this query reads.
        c = self.prior_weight
        which, cols, z_near = self.z.gather(idx)
        touched, near, var = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        if len(cols):
            touched, at = np.unique(cols, return_inverse=True)
            w_e = w[which]
            support = np.bincount(at, weights=w_e, minlength=len(touched))
            pop = self.popularity[touched]
            near = (np.bincount(at, weights=w_e * z_near, minlength=len(touched)) + c * pop) / (support + c)
            dev = np.bincount(at, weights=w_e * (z_near - near[at]) ** 2, minlength=len(touched))
            var = (dev + c * (1.0 + (pop - near) ** 2)) / (support + c)
        if measured and self._by_factors(features):
            assert self.latent is not None
            js = np.array(sorted(measured))
            goodness, sd = self.latent.predict(js, self.sign * np.array([measured[j] for j in js]))
            return self.sign * goodness, sd, idx, w
        if measured and self.condition:
            z_hat = self.popularity.copy()
            z_hat[touched] = near
            z_hat = z_hat + self._conditioned_shift(z_hat, measured, anchor_mean, anchor_spread, exclude, models)
            predicted = self.sign * (anchor_mean + anchor_spread * z_hat)
        else:  # two passes over every model, then the touched ones (a million models: each pass counts)
            predicted = self.popularity * (self.sign * anchor_spread)
            predicted += self.sign * anchor_mean
            predicted[touched] = self.sign * (anchor_mean + anchor_spread * near)
        uncertainty = np.full(len(self.model_ids), anchor_spread)
        uncertainty[touched] = anchor_spread * np.sqrt(var)
        return predicted, uncertainty, idx, w

    def _by_factors(self, features: dict[str, float]) -> bool:
        """Whether a query with measured probes is predicted by the latent fit: the library chose one and the query
        has no features to compare with the library's datasets."""
        return self.latent is not None and self._feature_distance(features) is None

    def _conditioned_shift(
        self,
        z_hat: np.ndarray,
        measured: dict[int, float],
        anchor_mean: float,
        anchor_spread: float,
        exclude: int | None = None,
        models: np.ndarray | None = None,
    ) -> np.ndarray:
        """What the probes say about every other model: the Gaussian conditional mean given the probed models'
        surprise (measured z minus predicted z), under the models' covariance across the library's datasets.

        A model that rises and falls with a probed model across the library moves with its surprise; one
        unrelated to every probe stays put. Correlations from few shared datasets are shrunk toward 0.
        `models`: the shift of those models only (0 for the others), at the cost of their records alone.
        """
        js = np.array(sorted(measured))
        observed = (self.sign * np.array([measured[j] for j in js]) - anchor_mean) / anchor_spread
        surprise = observed - z_hat[js]
        rows = None if models is None else np.concatenate([js, models])
        cov = self._covariance_with(js, exclude, rows)  # (n_models or len(rows), len(js)) in z units
        at_js = js if rows is None else np.arange(len(js))
        noise = NOISE * np.mean(np.diag(cov[at_js]))
        gain = np.linalg.solve(cov[at_js] + noise * np.eye(len(js)), surprise)
        if models is None:
            return cov @ gain
        shift = np.zeros(len(self.model_ids))
        shift[models] = cov[len(js) :] @ gain
        return shift

    def _covariance_with(
        self, js: np.ndarray, exclude: int | None = None, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Covariance of every model's z (or the models of `rows`'s) with each model of `js` over the datasets
        both have records on."""
        corr = correlation_with(self.z.without(exclude), js, models=rows)
        count, total, squares = self._z_sums
        if exclude is not None:  # the held-out dataset's own records taken out of each model's sums
            cols, values = self.z.row(exclude)
            count, total, squares = count.copy(), total.copy(), squares.copy()
            count[cols] -= 1
            total[cols] -= values
            squares[cols] -= values**2
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count
            spread = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        spread = np.where(count > 0, spread, 1.0)  # a model without records: spread 1
        rows = np.arange(len(self.model_ids)) if rows is None else np.asarray(rows)
        cov = corr * spread[rows][:, None] * spread[js][None, :]
        r, k = np.nonzero(rows[:, None] == js[None, :])  # a probed model's own variance
        cov[r, k] = spread[js[k]] ** 2
        return cov

    def _conditioning_pays(
        self, *, datasets: int = PSEUDO_TARGETS, budget: int = LATENT_BUDGET
    ) -> tuple[bool, dict[int, float]]:
        """Whether conditioning on probes' surprise ranks held-out datasets better than neighbours alone, and the
        Pearson of the better of the two on each held-out dataset over all its records, as `score_all` returns them
        (the probed at their measurement, the others shifted by the probes' mean residual): what `_fit_latent`
        compares the latent fit with, on the same datasets.

        Decided on the library's own records: for up to `datasets` scored datasets, each in turn is hidden
        (left out of the neighbours and the covariance), `budget` of its models are probed as a search would,
        and the Pearson of both predictions with its remaining records is compared. On a small, sparse score
        matrix the covariances are noise and conditioning loses; there it stays off.
        """
        eligible = np.flatnonzero(self.scores.row_counts() >= budget + 10).tolist()
        if len(eligible) < 5:
            return False, {}
        rng = np.random.default_rng(0)
        chosen = rng.choice(eligible, size=min(datasets, len(eligible)), replace=False)
        gains = []
        served: dict[str, dict[int, float]] = {"plain": {}, "conditioned": {}}
        for i in chosen:
            cols, values = self.scores.row(i)
            among = [self.model_ids[j] for j in cols.tolist()]
            picked = self._select(np.ones(len(self.dataset_ids)), len(self.dataset_ids), budget, among, exclude=i)
            own = dict(zip(cols.tolist(), values.tolist(), strict=True))
            measured = {self.model_index[m]: own[self.model_index[m]] for m in picked}
            keep = np.array([j not in measured for j in cols.tolist()], dtype=bool)
            rest, truth = cols[keep], values[keep]
            if len(rest) < 3 or np.std(truth) < 1e-12:
                continue
            plain, _, _, _ = self._inductive({}, exclude=i, measured=measured)
            self.condition = True
            conditioned, _, _, _ = self._inductive({}, exclude=i, measured=measured, models=rest)
            self.condition = False
            gains.append(_pearson(conditioned[rest], truth) - _pearson(plain[rest], truth))
            for name, predicted in (("plain", plain), ("conditioned", conditioned)):
                served[name][int(i)] = _pearson(_as_served(predicted[cols], ~keep, values), values)
        pays = bool(gains) and float(np.mean(gains)) > 0.0
        return pays, served["conditioned" if pays else "plain"]

    @property
    def choices(self) -> KnnChoices:
        """What this fit chose on held-out datasets, for a fit of a newer graph to keep (`KnnChoices`)."""
        if self._latent_choice is None:
            return KnnChoices(self.condition, None, validation=dict(self.latent_validation))
        rank, rule, noise = self._latent_choice
        return KnnChoices(self.condition, rank, rule, noise, dict(self.latent_validation))

    def _fit_latent(
        self, neighbours: dict[int, float]
    ) -> tuple[factors.LatentFit | None, dict[str, float], tuple[int, str, float] | None]:
        """The latent fit for featureless queries with probes, at the rank (`factors.RANKS`) and probe rule
        (`factors.RULES`) that rank held-out datasets best with `LATENT_BUDGET` probes, and the mean Pearson of each
        choice there (`knn`: the probe neighbours), with the choice made: (rank, rule, noise σ²). None (the
        neighbours serve) where no choice beats them or too few datasets are scored. A pseudo-target's Pearson is
        over all its records, the probed ones at their measurement, as a search returns them.

        Decided on the library's own records: the pseudo-targets of `_conditioning_pays` (`neighbours`: their
        Pearson there), hidden in `RANK_FOLDS` groups (the factors, their popularity and their noise fitted on the
        rest), probed as a search would be and judged on all their records.
        """
        budget = LATENT_BUDGET
        chosen = np.array(sorted(neighbours), dtype=np.int64)
        if len(chosen) < 5:
            return None, {}, None
        rng = np.random.default_rng(0)
        choices = [(k, rule) for k in factors.RANKS for rule in factors.RULES]
        pearson: dict[str, list[float]] = {"knn": list(neighbours.values()), **{_choice(*c): [] for c in choices}}
        noise: dict[int, list[float]] = {k: [] for k in factors.RANKS}
        for group in np.array_split(rng.permutation(chosen), min(RANK_FOLDS, len(chosen))):
            keep = np.setdiff1d(np.arange(len(self.dataset_ids)), group)
            residual, popularity = factors.residual_matrix(self.z, keep)
            loadings, vectors = factors.loadings(residual, max(factors.RANKS))
            held, _ = factors.residual_matrix(self.z, group, popularity)
            for k, rule in choices:
                if k > loadings.shape[1]:
                    continue
                sigma2 = factors.unexplained(held, loadings[:, :k])
                if rule == factors.RULES[0]:
                    noise[k].append(sigma2)
                fit = self._latent_fit(loadings[:, :k], vectors[:, :k], popularity, sigma2, keep, rule)
                for i in group.tolist():
                    cols, values = self.scores.row(i)
                    goodness = self.sign * values
                    probes = np.array(fit.select(cols, budget), dtype=np.int64)
                    at = np.searchsorted(cols, probes)
                    predicted, _ = fit.predict(probes, goodness[at])
                    predicted = predicted[cols]
                    predicted[at] = goodness[at]  # (no shift: the fit already has the probes' level)
                    pearson[_choice(k, rule)].append(_pearson(predicted, goodness))
        validation = {name: float(np.mean(v)) for name, v in pearson.items() if v}
        # Every pseudo-target judged, or a choice is not comparable with the neighbours (too few datasets for it).
        judged = [c for c in choices if len(pearson[_choice(*c)]) == len(chosen)]
        if not judged:
            return None, validation, None
        rank, rule = max(judged, key=lambda c: validation[_choice(*c)])  # ties: the lower rank
        if validation[_choice(rank, rule)] <= validation.get("knn", -np.inf):
            return None, validation, None
        choice = (rank, rule, float(np.mean(noise[rank])))
        return self._latent_at(*choice), validation, choice

    def _latent_at(self, rank: int, rule: str, noise: float) -> factors.LatentFit:
        """The latent fit of every scored dataset at `rank`, probed by `rule`, of noise σ² `noise` (one SVD)."""
        everything, popularity = factors.residual_matrix(self.z, np.arange(len(self.dataset_ids)))
        loadings, vectors = factors.loadings(everything, rank)
        return self._latent_fit(loadings, vectors, popularity, noise, None, rule)

    def _latent_fit(
        self,
        loadings: np.ndarray,
        vectors: np.ndarray,
        popularity: np.ndarray,
        noise: float,
        rows: np.ndarray | None,
        rule: str,
    ) -> factors.LatentFit:
        """The factor model of the datasets `rows` (default all; `vectors` are theirs), its prior from their score
        levels, spreads and latent vectors."""
        level = self.row_mean if rows is None else self.row_mean[rows]
        spread = self.row_spread if rows is None else self.row_spread[rows]
        mean, covariance = factors.joint_prior(level, spread, vectors)
        return factors.LatentFit(loadings, popularity, noise, mean, covariance, rule)

    def behaviour(self) -> ScoreMatrix:
        """Every scored dataset's z per model (no value where no record): how models rise and fall together.

        A `ScoreMatrix` (the readers, `correlation_with` and the probe-selector, take it as they take the GNN's
        dense array)."""
        return self._behaviour

    def __getstate__(self) -> dict[str, object]:
        """Without what is rebuilt on first use (`_behaviour`, `_identity`): a refreshed estimator's worker sends
        less back (`training.refresh_in_worker`)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_behaviour", "_identity")}

    @functools.cached_property
    def _behaviour(self) -> ScoreMatrix:
        return self.z.with_data(np.clip(self.z.data, -_CLIP, _CLIP))

    @functools.cached_property
    def _identity(self) -> sparse.csr_array:
        return sparse.eye_array(len(self.model_ids), format="csr")

    def measured(self, probes: Sequence[ProbeRecord]) -> dict[int, float]:
        """Model position -> mean measured score, for the probes that are real measurements of library models."""
        values: dict[int, list[float]] = {}
        for p in probes:
            if p.probe == MEASURED and p.model_id in self.model_index:
                values.setdefault(self.model_index[p.model_id], []).append(p.value)
        return {j: float(np.mean(v)) for j, v in values.items()}

    def probes_used(self, probes: Sequence[ProbeRecord], *, known_dataset: str | None = None) -> int:
        """How many probed models `predict` uses (none on the transductive path)."""
        return 0 if known_dataset in self.dataset_ids else len(self.measured(probes))

    def select_probes(
        self,
        features: dict[str, float],
        *,
        known_dataset: str | None = None,
        budget: int = 5,
        among: Collection[str] | None = None,
    ) -> list[str]:
        """Models worth measuring on the query: high predicted z among its neighbours (popularity without
        any), picked so that they behave unlike each other across the library (the probe-selector's rule). A query
        the latent fit predicts (no features to compare) gets the probes that pin its latent vector down."""
        if budget <= 0 or known_dataset in self.dataset_ids or not len(self.dataset_ids):
            return []
        if self._by_factors(features):
            assert self.latent is not None
            allowed = (
                np.arange(len(self.model_ids))
                if among is None
                else np.array(sorted({self.model_index[m] for m in among if m in self.model_index}), dtype=np.int64)
            )
            return [self.model_ids[j] for j in self.latent.select(allowed, budget)]
        idx, w = self._neighbours(features, None)
        similarity = np.zeros(len(self.dataset_ids))
        if len(idx):
            similarity[idx] = w
            similar = len(idx)
        else:  # nothing to compare by: every dataset counts alike, so Score(m) is popularity
            similarity[:] = 1.0
            similar = len(self.dataset_ids)
        return self._select(similarity, similar, budget, among)

    def _select(
        self,
        similarity: np.ndarray,
        similar: int,
        budget: int,
        among: Collection[str] | None,
        exclude: int | None = None,
    ) -> list[str]:
        if exclude is not None:
            similarity = similarity.copy()
            similarity[exclude] = 0.0
        selector = ProbeSelector(
            self._behaviour.without(exclude), self._identity, self.model_ids, similar=similar, diversity=DIVERSITY,
            index=self.model_index,
        )  # fmt: skip
        return selector.select(similarity, budget, among=among)

    def predict(
        self,
        features: dict[str, float],
        *,
        known_dataset: str | None = None,
        probes: Sequence[ProbeRecord] = (),
    ) -> list[Prediction]:
        """A prediction for every model of the library, in library order."""
        return self.score_all(features, known_dataset=known_dataset, probes=probes).predictions()

    def score_all(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> Scored:
        """`predict` as vectors; each model's `Prediction` is built only when asked for."""
        return self._scored(features, known_dataset, probes, popularity_only=False)

    def score_popularity(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> Scored:
        """The popularity baseline as a member of the served blend: every model's mean z on the metric scale of
        the query's neighbours, its own records and measured probes taken as `score_all` takes them."""
        return self._scored(features, known_dataset, probes, popularity_only=True)

    def _scored(
        self,
        features: dict[str, float],
        known_dataset: str | None,
        probes: Sequence[ProbeRecord],
        *,
        popularity_only: bool,
    ) -> Scored:
        own = self.dataset_ids.index(known_dataset) if known_dataset in self.dataset_ids else None
        measured = {} if own is not None else self.measured(probes)
        predicted, uncertainty, idx, w = self._inductive(
            features, exclude=own, measured=measured, popularity_only=popularity_only
        )
        uncertainty *= self.interval_scale  # a fresh array: scaled in place (a million models: no copy)
        observed = np.zeros(len(self.model_ids) if own is not None else 0, dtype=bool)
        if own is not None:
            # Transductive: the dataset's own records calibrate the rest. Its models' mean residual
            # against the inductive prediction shifts the others, shrunk by one pseudo-record.
            cols, values = self.scores.row(own)
            observed[cols] = True
            residual = values - predicted[cols]
            predicted = predicted + residual.sum() / (len(cols) + 1)
            scores, spread = np.array(predicted, dtype=float), np.array(uncertainty, dtype=float)
            scores[cols], spread[cols] = values, 0.0
        else:
            scores, spread = predicted, uncertainty
            if measured:
                # Measured probes calibrate the rest the same way (the latent fit already fits their level);
                # they are their measurement.
                if popularity_only or not self._by_factors(features):
                    js = list(measured)
                    residual = np.array([measured[j] for j in js]) - predicted[js]
                    predicted = predicted + residual.sum() / (len(js) + 1)
                scores, spread = predicted.copy(), uncertainty.copy()
                for j, value in measured.items():
                    scores[j], spread[j] = value, 0.0
        n_models = len(self.model_ids)

        def build(j: int) -> Prediction:
            model_id = self.model_ids[j]
            if own is not None and observed[j]:
                score = self.scores.get(own, j)
                return Prediction(
                    model_id,
                    score,
                    0.0,
                    [Evidence(known_dataset or "", 1.0, score)],
                    f"measured {score:.3g} on this very dataset ({known_dataset})",
                )
            if j in measured:
                return Prediction(model_id, measured[j], 0.0, [], f"probed: measured {measured[j]:.3g} on this dataset")
            near = self.scores.column_at(j, idx).tolist()  # the neighbours' records of model j (NaN: none)
            evidence = [
                Evidence(self.dataset_ids[i], wi, score)
                for i, wi, score in zip(idx.tolist(), w.tolist(), near, strict=True)
                if score == score
            ][: self.evidence_count]
            return Prediction(
                model_id,
                float(predicted[j]),
                float(uncertainty[j]),
                evidence,
                self._explain(j, evidence, n_models, popularity_only=popularity_only),
            )

        return Scored(scores, spread, build)

    def _explain(self, j: int, evidence: list[Evidence], n_models: int, *, popularity_only: bool = False) -> str:
        rank = int(self.popularity_rank[j])
        popular = f"{_ordinal(rank)} of {n_models} by popularity over {int(self.records_per_model[j])} datasets"
        if popularity_only:
            return f"by popularity alone: {popular}"
        if not evidence:
            return f"no close dataset has a record of it; {popular}"
        near = ", ".join(f"{e.score:.3g} on {e.dataset_id} (similarity {e.similarity:.2f})" for e in evidence)
        return f"scored {near}; {popular}"


def _as_served(predicted: np.ndarray, probed: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A dataset's predicted scores as `score_all` returns them with the `probed` ones measured at `values`: those
    at their measurement, the others shifted by the probes' mean residual (shrunk by one pseudo-record)."""
    out = predicted + (values[probed] - predicted[probed]).sum() / (int(probed.sum()) + 1)
    out[probed] = values[probed]
    return out


def _choice(rank: int, rule: str) -> str:
    return f"rank {rank}, {rule}"


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) < 1e-12 or np.std(b) < 1e-12:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
