"""The probe-selector (ModsNet paper, "Model selection"): which models are worth probing on a new dataset.

A query dataset d_q with no interactions gets candidate scores from the interactions I_s of the datasets
most similar to it:

    Score(m) = 1/|I_s| · Σ_{e=(d', m') ∈ I_s} lsim((d_q, m), e) · P(e)

* P(e) is the edge's score z-scored within its dataset (scores compare within a dataset, not across);
* lsim is feature-based and factorises: lsim((d_q, m), (d', m')) = sim_D(d_q, d') · sim_M(m, m'), with
  sim_D the query's kernel similarity to d' in (0, 1] (from the library's similarity rows or from dataset
  features) and sim_M(m, m') = 1 for m' = m and the clipped cosine similarity of the two models'
  metadata vectors for each of m's nearest models (0 beyond them), so a model inherits evidence from
  models like it, most from itself.

The `budget` models to probe are picked greedily from the best candidates, each one trading its Score
against its redundancy with the models already picked (maximal marginal relevance): redundancy is how
alike two models behave across the library's datasets (correlation of their z-scores). Five variants of
one model measure the same thing five times; five models that disagree elsewhere tell the estimator
which datasets the query resembles (its `agree` edges) and rank the query's candidates with less noise.
`diversity=0` is the paper's plain top-`budget` by Score.

A probe is a recorded transferability score (LogME, H-score)
or a real measurement of the model on the query's data, whose seconds are reported. Its values become
virtual probe edges (d_q, m) in the graph, z-scored among the probed models of one probe kind (a probe
ranks models on one dataset; its scale means nothing across datasets). `enabled=False` turns probing
off, for ablation.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .estimators.base import ProbeRecord
from .estimators.matrix import ScoreMatrix

SIMILAR_DATASETS = 8  # |I_s| comes from this many most similar datasets
MODEL_NEIGHBOURS = 5  # sim_M is non-zero for a model itself and this many nearest models
DIVERSITY = 0.5  # weight of redundancy against Score when picking probes (0: top-budget by Score)
POOL_PER_PROBE = 4  # probes are picked among the best budget x this many candidates
MEASURED = "score"  # probe kind of a real measurement in the library's metric
# Probe kinds that rank models on the query without being its metric (XRD: agreement between finders).
PROXY_KINDS = ("agreement",)


def probe_scores(
    dataset_similarity: np.ndarray,
    interactions: np.ndarray | ScoreMatrix,
    model_similarity: np.ndarray | sparse.sparray,
    *,
    similar: int = SIMILAR_DATASETS,
) -> np.ndarray:
    """Score(m) for every model.

    dataset_similarity: (n_datasets,) sim_D(d_q, d) in [0, 1], 0 for "not similar";
    interactions: (n_datasets, n_models) P(e) per edge (z-scored), NaN where there is no edge (or sparse:
        `ScoreMatrix`, the edges only);
    model_similarity: (n_models, n_models) sim_M(m, m'), 1 on the diagonal (dense or sparse).
    I_s is every interaction of the `similar` datasets with the highest positive sim_D.
    """
    weights = np.asarray(dataset_similarity, dtype=float)
    order = np.argsort(-weights, kind="stable")
    chosen = order[weights[order] > 0][:similar]
    n_models = interactions.shape[1]
    if len(chosen) == 0:
        return np.zeros(n_models)
    # Σ_{d'} sim_D(d') P(d', m') for each m', then Σ_{m'} sim_M(m, m') · that.
    if isinstance(interactions, ScoreMatrix):
        per_model, size = interactions.weighted_row_sum(chosen, weights[chosen])
    else:
        block = interactions[chosen]
        present = ~np.isnan(block)
        size = int(present.sum())  # |I_s|
        per_model = (weights[chosen, None] * np.where(present, block, 0.0)).sum(axis=0)
    if size == 0:
        return np.zeros(n_models)
    return np.asarray(model_similarity @ per_model, dtype=float).reshape(n_models) / size


def model_similarity(features: np.ndarray, *, neighbours: int = MODEL_NEIGHBOURS) -> sparse.csr_array:
    """sim_M as a sparse matrix: 1 for a model itself, clipped cosine for its nearest models, 0 beyond.

    Sparse, so a 10,000-model library needs 10,000 · (neighbours + 1) entries, not 10⁸.
    """
    n = features.shape[0]
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.where(norms > 0, norms, 1.0)
    rows, cols, values = [np.arange(n)], [np.arange(n)], [np.ones(n)]
    k = min(neighbours, n - 1)
    if k > 0:
        for start in range(0, n, 1024):  # blocks keep the dense cosine block small
            cosine = unit[start : start + 1024] @ unit.T
            local = np.arange(cosine.shape[0])
            cosine[local, start + local] = -np.inf
            nearest = np.argpartition(-cosine, k - 1, axis=1)[:, :k]
            sims = np.clip(np.take_along_axis(cosine, nearest, axis=1), 0.0, 1.0)
            rows.append(np.repeat(start + local, k))
            cols.append(nearest.reshape(-1))
            values.append(sims.reshape(-1))
    return sparse.csr_array((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


@dataclass
class ProbeSelector:
    """Picks the models to probe on a query and turns probe results into virtual edges."""

    interactions: np.ndarray | ScoreMatrix  # (n_datasets, n_models) z-scored, NaN (or no entry) where none
    similarity: np.ndarray | sparse.sparray  # sim_M
    model_ids: list[str]
    enabled: bool = True
    similar: int = SIMILAR_DATASETS
    diversity: float = DIVERSITY
    index: Mapping[str, int] | None = None  # model id -> position, when the caller keeps one (else built)

    def scores(self, dataset_similarity: np.ndarray) -> np.ndarray:
        return probe_scores(dataset_similarity, self.interactions, self.similarity, similar=self.similar)

    def select(
        self,
        dataset_similarity: np.ndarray,
        budget: int,
        *,
        exclude: Collection[str] = (),
        among: Collection[str] | None = None,
    ) -> list[str]:
        """`budget` models of high Score(m) that behave unlike each other (none when probing is off).

        The first is the best by Score; ties go by library order. `among` limits the choice to the
        models that can be probed (those with a runnable artifact, or in an evaluation those with a
        recorded probe).
        """
        if not self.enabled or budget <= 0:
            return []
        score = self.scores(dataset_similarity)
        index = self.index if self.index is not None else {m: j for j, m in enumerate(self.model_ids)}
        if among is None:
            candidates = np.ones(len(self.model_ids), dtype=bool)
        else:  # positions only: a library of a million models is not a million-string set per query
            candidates = np.zeros(len(self.model_ids), dtype=bool)
            candidates[[index[m] for m in among if m in index]] = True
        candidates[[index[m] for m in exclude if m in index]] = False
        allowed = np.flatnonzero(candidates)  # library order: the stable sort keeps it among equal scores
        ranked = allowed[np.argsort(-score[allowed], kind="stable")]
        if self.diversity <= 0 or len(ranked) <= budget:
            return [self.model_ids[j] for j in ranked[:budget].tolist()]
        pool = ranked[: budget * POOL_PER_PROBE]
        block = (
            self.interactions.columns(pool)
            if isinstance(self.interactions, ScoreMatrix)
            else self.interactions[:, pool]
        )
        picked = _pick_diverse(score[pool], behaviour_correlation(block), budget, self.diversity)
        return [self.model_ids[pool[i]] for i in picked]


def behaviour_correlation(z: np.ndarray, *, min_common: int = 3) -> np.ndarray:
    """Pearson correlation of each pair of columns (models) over the rows (datasets) both have a value on.

    NaN marks a missing value; a pair with fewer than `min_common` rows in common gets 0 (unknown is not
    redundant).
    """
    mask = (~np.isnan(z)).astype(float)
    values = np.where(mask > 0, z, 0.0)
    common = mask.T @ mask  # (a, b): datasets both have
    sums = values.T @ mask  # (a, b): Σ of a's values over those datasets
    squares = (values**2).T @ mask
    with np.errstate(invalid="ignore", divide="ignore"):
        covariance = values.T @ values - sums * sums.T / common
        variance = squares - sums**2 / common  # (a, b): a's, over the datasets shared with b
        corr = np.where(
            (common >= min_common) & (variance > 1e-12) & (variance.T > 1e-12),
            covariance / np.sqrt(variance * variance.T),
            0.0,
        )
    return np.clip(corr, -1.0, 1.0)


def _pick_diverse(score: np.ndarray, redundancy: np.ndarray, budget: int, diversity: float) -> list[int]:
    """Greedy maximal marginal relevance over a pool ordered best first: positions into the pool.

    Relevance is Score rescaled to [0, 1] over the pool; a candidate's redundancy is its highest positive
    correlation with a model already picked.
    """
    span = score.max() - score.min()
    relevance = (score - score.min()) / span if span > 1e-12 else np.ones_like(score)
    picked = [0]
    closest = np.clip(redundancy[0], 0.0, None)
    while len(picked) < min(budget, len(score)):
        gain = (1.0 - diversity) * relevance - diversity * closest
        gain[picked] = -np.inf
        best = int(np.argmax(gain))  # ties: the earlier, better-scored candidate
        picked.append(best)
        closest = np.maximum(closest, np.clip(redundancy[best], 0.0, None))
    return picked


def virtual_edges(
    probes: Sequence[ProbeRecord], kind: str, model_index: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(model positions, z values) of the probes of one kind: the virtual probe edges of the query node.

    Values are z-scored among the probed models (a single probe gets 0: it says nothing about ranking);
    repeated probes of one model are averaged; models unknown to the library are left out.
    """
    values: dict[int, list[float]] = {}
    for p in probes:
        if p.probe == kind and p.model_id in model_index:
            values.setdefault(model_index[p.model_id], []).append(p.value)
    if not values:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    index = np.array(sorted(values), dtype=np.int64)
    raw = np.array([np.mean(values[j]) for j in index])
    spread = raw.std()
    z = (raw - raw.mean()) / spread if spread > 1e-12 else np.zeros_like(raw)
    return index, z
