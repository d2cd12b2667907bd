"""Probes without dataset features: a low-rank fit of the query's latent vector from its probed scores.

The kNN's z-scores (datasets x models, z within each dataset) less each model's popularity leave residuals that a
few latent factors explain: datasets on which models rise and fall alike have alike factor values. A new dataset
is one unknown latent vector v, and a probe measures one model's score on it. In the library's metric (times its
sign), model m scores

    a + b · (pop_m + L_m · v) + noise

with L the models' loadings (a truncated SVD of the residuals), a and b the query's unknown score level and spread.
The probed scores fit (a, b, b·v) by Bayesian linear regression on the rows [1, pop_m, L_m]: a and b a priori as
the library's datasets' levels and spreads vary, b·v ~ N(0, b̄² I) (the loadings carry the factors' scale), and
noise b̄² σ² with σ² the share of a held-out dataset's residuals the factors leave unexplained. Probes that agree
with popularity leave the prediction at popularity; probes that disagree move it along the factors they load on.
A neighbour set chosen by three probe scores among few datasets ranks worse than popularity (TransferGraph text:
0.779 against 0.791); a fit of a few factors is what three numbers can pin down.

The rank (0: the fit is not used) is chosen on the library's own datasets (`choose_rank` in the kNN), never on
evaluation targets. Everything is sparse-aware: the SVD of a large library is `scipy.sparse.linalg.svds` of its
records (a missing record is a residual of 0, i.e. at popularity), a few dense vectors of length models per query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds
from threadpoolctl import threadpool_limits

from .matrix import ScoreMatrix

RANKS = (0, 1, 2, 4, 8)  # candidate ranks (0: popularity refitted to the probes' level and spread)
INFORMATIVE, POPULAR = "informative", "popular"  # how the probes are chosen (`LatentFit.select`)
RULES = (INFORMATIVE, POPULAR)
DENSE_CELLS = 4_000_000  # below this many (datasets x models) cells the SVD is dense (exact, all ranks at once)
_CLIP = 5.0


def residual_matrix(
    z: ScoreMatrix, rows: np.ndarray, popularity: np.ndarray | None = None
) -> tuple[sparse.csr_array, np.ndarray]:
    """The residuals z - popularity of `rows` (a CSR of their records, z clipped to ±5) and the popularity: the
    one given (held-out rows against their fit's), or else computed from those rows alone (one pseudo-record at
    z = 0 per model, as the kNN shrinks it)."""
    csr = sparse.csr_array((np.clip(z.data, -_CLIP, _CLIP), z.indices, z.indptr), shape=z.shape)[rows]
    if popularity is None:
        counts = np.bincount(csr.indices, minlength=z.shape[1])
        popularity = np.bincount(csr.indices, weights=csr.data, minlength=z.shape[1]) / (counts + 1)
    residual = csr.copy()
    residual.data = csr.data - popularity[csr.indices]
    return residual, popularity


def loadings(residual: sparse.csr_array, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(models, rank') loadings and (datasets, rank') latent vectors of `residual`'s rows, rank' = min(rank,
    datasets - 1, models - 1): right singular vectors times the singular values over √datasets, left ones times
    √datasets, so that the datasets' latent vectors have unit variance and loadings @ vector is a residual."""
    n_rows, n_cols = residual.shape
    k = max(0, min(rank, n_rows - 1, n_cols - 1))
    if k == 0:
        return np.zeros((n_cols, 0)), np.zeros((n_rows, 0))
    # One BLAS thread: a few hundred rows gain nothing from more, and on a loaded machine the threads' spinning
    # made OBOE's 418 x 219 SVD 10-30 times slower (0.3 s against 4-10 s).
    with threadpool_limits(limits=1, user_api="blas"):
        if n_rows * n_cols <= DENSE_CELLS:
            u, s, vt = np.linalg.svd(residual.toarray(), full_matrices=False)
            u, s, vt = u[:, :k], s[:k], vt[:k]
        else:
            u, s, vt = svds(residual.astype(float), k=k, random_state=0)
        order = np.argsort(-s)
        u, s, vt = u[:, order], s[order], vt[order]
    root = np.sqrt(n_rows)
    return np.ascontiguousarray(vt.T * s) / root, u * root


def joint_prior(level: np.ndarray, spread: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the regression coefficients (a, b, b·v) over the library's datasets (their levels,
    spreads and latent vectors): a query's score level then says something of its latent vector where the
    library's easy and hard datasets favour different models. Each correlation r of n datasets is shrunk by its
    own noise (variance about 1 / n), to r · max(0, 1 - 1 / (n r²)): on 10 datasets one under 0.32 is taken as 0."""
    theta = np.hstack([level[:, None], spread[:, None], spread[:, None] * vectors])
    n, p = theta.shape
    mean = theta.mean(axis=0)
    if n < 2:
        return mean, np.zeros((p, p))
    covariance = np.atleast_2d(np.cov(theta, rowvar=False, bias=True))
    sd = np.sqrt(np.diag(covariance))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(np.outer(sd, sd) > 0, covariance / np.outer(sd, sd), 0.0)
        keep = np.where(r != 0, np.maximum(0.0, 1.0 - 1.0 / (n * r**2)), 0.0)
    np.fill_diagonal(keep, 1.0)
    return mean, covariance * keep


def unexplained(residual: sparse.csr_array, factor_loadings: np.ndarray) -> float:
    """Mean squared residual of `residual`'s rows (datasets the loadings were not fitted on) left after the best
    least-squares fit of each row's latent vector on its own records: the noise σ² (in z²)."""
    total, count = 0.0, 0
    for i in range(residual.shape[0]):
        lo, hi = residual.indptr[i], residual.indptr[i + 1]
        cols, values = residual.indices[lo:hi], residual.data[lo:hi]
        if len(cols) <= factor_loadings.shape[1]:
            continue
        basis = factor_loadings[cols]
        if basis.shape[1]:
            values = values - basis @ np.linalg.lstsq(basis, values, rcond=None)[0]
        total += float(values @ values)
        count += len(cols)
    return total / count if count else 1.0


@dataclass(frozen=True)
class LatentFit:
    """The factor model of one library (see the module's doc) and its priors, in goodness (metric times sign)."""

    loadings: np.ndarray  # (models, rank)
    popularity: np.ndarray  # (models,) mean z
    noise: float  # σ²: a held-out dataset's residual variance the factors leave (z²)
    prior_mean: np.ndarray  # (rank + 2,) of (a, b, b·v) over the library's datasets (`joint_prior`)
    prior_covariance: np.ndarray  # (rank + 2, rank + 2)
    rule: str = INFORMATIVE  # how `select` picks probes

    @property
    def rank(self) -> int:
        return int(self.loadings.shape[1])

    def _prior(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Prior mean and covariance of the coefficients (a, b, b·v), and the noise variance in goodness²."""
        covariance = self.prior_covariance + 1e-12 * np.eye(len(self.prior_mean))
        return self.prior_mean, covariance, max(self.prior_mean[1] ** 2 * self.noise, 1e-12)

    def rows(self, js: np.ndarray | None = None) -> np.ndarray:
        """The regression rows [1, pop_m, L_m] of models `js` (default every model)."""
        pop = self.popularity if js is None else self.popularity[js]
        factor = self.loadings if js is None else self.loadings[js]
        return np.hstack([np.ones((len(pop), 1)), pop[:, None], factor])

    def predict(self, js: np.ndarray, goodness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every model's predicted goodness and its standard deviation, given the goodness of models `js`."""
        mean, prior, noise = self._prior()
        x = self.rows(js)
        # The Gaussian posterior of the coefficients, in the covariance form (the prior may be near singular).
        gain = np.linalg.solve(x @ prior @ x.T + noise * np.eye(len(js)), x @ prior).T
        theta = mean + gain @ (goodness - x @ mean)
        covariance = prior - gain @ x @ prior
        # The level as the probes measure it: the prior's level informs the latent vector (on OBOE easy and hard
        # datasets favour different models), but a query whose level lies outside the library's (TransferGraph's
        # dbpedia_14 at 0.99, the others 0.67-0.93) kept the unmeasured models far below the probes.
        theta[0] += float(np.mean(goodness - x @ theta))
        every = self.rows()
        sd = np.sqrt(np.einsum("ij,jk,ik->i", every, covariance, every) + noise)
        return every @ theta, sd

    def select(self, allowed: np.ndarray, budget: int) -> list[int]:
        """`budget` models of `allowed` (positions) to probe. The most popular first (the likeliest best, so the
        search keeps a good model); then, `INFORMATIVE`: greedily the model whose score the probes so far leave
        most uncertain (each measurement tells the most about the level, the spread and the latent vector), or
        `POPULAR`: the next most popular (ties: the first in `allowed`)."""
        allowed = np.asarray(allowed, dtype=np.int64)
        if budget <= 0 or not len(allowed):
            return []
        if self.rule == POPULAR:
            return [int(j) for j in allowed[np.argsort(-self.popularity[allowed], kind="stable")[:budget]]]
        _, covariance, noise = self._prior()
        x = self.rows(allowed)
        picked = [int(np.argmax(self.popularity[allowed]))]
        while True:
            row = x[picked[-1]]
            lean = covariance @ row
            covariance = covariance - np.outer(lean, lean) / (row @ lean + noise)
            if len(picked) >= min(budget, len(allowed)):
                break
            uncertain = np.einsum("ij,jk,ik->i", x, covariance, x)
            uncertain[picked] = -np.inf
            picked.append(int(np.argmax(uncertain)))  # ties: the first in `allowed`
        return [int(allowed[i]) for i in picked]
