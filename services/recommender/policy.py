"""Adaptive probing: the next model(s) to measure on a query, given what its probes measured so far.

One function, `next_probes`, serves the search (`RecommenderCore.select_probes`, called round after round by
the query service) and the decision table of the offline evaluation (`evaluation.py` simulates the search
with it), so `modsnet eval` measures the product's policy.

The policy (chosen by `benchmarks/probe_policy.py` on TabZoo, XRDZoo and OBOE; figures in docs/benchmarks.md
"Adaptive probing" and "A portfolio, not the top"):
- every probe completes a portfolio (`_portfolio`): the model that adds the most to the best of what is measured
  already, over the library's datasets that look like the query. A user keeps the best model measured, so two
  settings that rise and fall together are worth little more than one, and the top models by mean are often
  such near-twins (OBOE, TabZoo: measuring the 3 best by mean did worse than a set chosen for its best-of);
- which datasets look like the query is read from the predictions (the cold ones conditioned on the probes'
  surprise, `_predicted`: a Gaussian conditional over how the models rise and fall together across the library,
  half of a surprise taken as the query's level): a dataset whose models rank as predicted weighs more;
- where the estimator has no library behaviour, the greedy rule before: the best predicted model not yet
  measured (it beat re-predicting with the probes as estimator input, and the selector's batch, at B = 3);
- a first round of several probes measured together (XRD agreement, text) is the selector's diverse batch;
- probing stops early when the expected improvement of the best next model over the best measured one is
  below `min_gain` (in the library's metric): another measurement would most likely change nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import ndtr

from modsnet.data.probe_scale import ProbeScale

from .estimators.base import ProbeRecord, Scored
from .estimators.knn import correlation_with  # the kNN's own model-to-model correlation
from .estimators.matrix import ScoreMatrix
from .probes import MEASURED

INFORMATIVE = 0  # probes from the selector's diverse batch before the rule chooses (a first round of several: all)
MIN_GAIN = 1e-3  # expected improvement (library metric) below which another probe is not worth its time
CONDITION = True  # condition the cold predictions on the probes' surprise (`_predicted`) instead of re-predicting
LEVEL = 0.5  # prior share of a surprise that is the query's level (every model alike), not the model's own
NOISE = 0.1  # a probe's noise as a share of the predictions' variance, where the library measured none (probe_scale)
GREEDY, LOOKAHEAD, PORTFOLIO = "greedy", "lookahead", "portfolio"
RULE = PORTFOLIO  # how a probe after the informative ones is chosen (`_portfolio`, `_lookahead`; greedy: the best mean)
# How sharply the portfolio weighs the library's datasets by their likeness to the query (exp(LIKENESS x Pearson of
# a dataset's z with the predictions)): 0 weighs all alike; chosen on validation datasets that are not test targets.
LIKENESS = 10.0
# The probes a library's own likeness (chosen on its held-out datasets, `likeness.py`) weighs; later ones weigh by
# `LIKENESS`: once a few are measured, the conditioned predictions say more, and the datasets like them decide.
CHOSEN_PROBES = 4
PARTICLES = 1000  # the datasets most like the query that the portfolio weighs: a large library costs no more
PORTFOLIO_POOL = 200  # candidates by predicted mean and by the portfolio's own mean, each (all of a smaller library)
SHORTLIST = 40  # models the lookahead weighs (best by mean and by mean + sd), so a large library costs no n² matrix
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(12)  # E over a normal outcome, by Gauss-Hermite quadrature
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


class Probing(Protocol):
    """What the policy needs of an estimator (the GNN and the kNN both are one)."""

    sign: float
    model_ids: list[str]

    def select_probes(
        self,
        features: dict[str, float],
        *,
        known_dataset: str | None = ...,
        budget: int = ...,
        among: Collection[str] | None = ...,
    ) -> list[str]: ...

    def score_all(
        self, features: dict[str, float], *, known_dataset: str | None = ..., probes: Sequence[ProbeRecord] = ...
    ) -> Scored: ...


@dataclass(frozen=True)
class NextProbes:
    """The models to measure next, best first, and why probing stops when it does.

    `expected_gain` is the expected improvement of the best predicted of them (the first, under the greedy rule)
    over the best score measured so far (in
    the library's metric; NaN while nothing is measured or the pick is informative); `stop` says probing should
    end here: `model_ids` is then empty and `reason` says why.
    """

    model_ids: list[str]
    expected_gain: float = float("nan")
    stop: bool = False
    reason: str = ""


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float | np.ndarray) -> np.ndarray:
    """E[max(0, X - best)] for X ~ N(mean, sd²), on goodness (higher is better); sd 0 gives max(0, mean - best)."""
    sd = np.maximum(np.asarray(sd, dtype=float), 1e-12)
    gap = np.asarray(mean, dtype=float) - best
    z = gap / sd
    # ndtr and the density by hand: scipy.stats.norm's per-call checks cost more than the arithmetic here
    return np.maximum(gap * ndtr(z) + sd * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi), 0.0)


def next_probes(
    estimator: Probing,
    features: dict[str, float],
    *,
    known_dataset: str | None = None,
    measured: Sequence[ProbeRecord] = (),
    tried: Collection[str] = (),
    count: int = 1,
    among: Collection[str] | None = None,
    informative: int = INFORMATIVE,
    min_gain: float = MIN_GAIN,
    condition: bool = CONDITION,
    level: float = LEVEL,
    rule: str | None = None,
    noise_sd: float | None = None,
    noise_level: float = 0.0,
    likeness: float | None = None,
) -> NextProbes:
    """The next `count` models to probe on the query, given the probes `measured` so far.

    `tried` are models already asked for that gave no measurement (a failed or timed-out probe): never asked
    again. `among` limits the choice to the models that can be measured. Measured probes of another kind than
    the library's metric (XRD agreement) count as information, not as a score to beat, so there the
    expected-gain stop does not apply. `rule` is `PORTFOLIO`, `GREEDY` or `LOOKAHEAD` (default: the module's
    `RULE`, read at each call, so a benchmark can switch the served policy); `likeness` the portfolio's (default:
    for the first `CHOSEN_PROBES` probes the estimator's `likeness` where one was chosen for its library, else
    `LIKENESS`). `noise_sd` is a probe's noise on the record's scale where the library measured it
    (`modsnet.data.probe_scale`); None: the `NOISE` share of the predictions' variance; `noise_level` the sd of
    a level the query's probes share (a sample easier or harder than the whole table). The best measured model
    the stopping rule weighs is the probed model of best posterior mean (`posterior`), not the best raw reading:
    a lucky reading does not stop probing.
    """
    rule = RULE if rule is None else rule
    if count <= 0:
        return NextProbes([], stop=True, reason="no probe asked for")
    done = {p.model_id for p in measured} | set(tried)
    allowed = set(estimator.model_ids if among is None else among) - done
    if not allowed:
        return NextProbes([], stop=True, reason="every model that can be measured here has been")
    picked: list[str] = []
    asked = len(done)
    # A first round measured together is chosen together (the selector's diverse batch of its size: XRD's
    # agreement probes need their finders in one round); later, the selector's first `informative` picks.
    size = max(informative, count) if asked == 0 and count > 1 else informative
    if asked < size:
        # The selector's batch is a fixed list for the query: take its members not yet asked for, in order.
        batch = estimator.select_probes(features, known_dataset=known_dataset, budget=size, among=among)
        picked = [m for m in batch if m in allowed][:count]
        if len(picked) == count:
            return NextProbes(picked)
    index = {m: j for j, m in enumerate(estimator.model_ids)}
    options = np.array(sorted(index[m] for m in allowed - set(picked) if m in index), dtype=np.int64)
    if not len(options):
        return NextProbes(picked, stop=not picked, reason="" if picked else "no model left to measure")
    # The library's behaviour is read once per step (a dense GNN's is a clipped copy of its whole matrix): by the
    # conditional and by the portfolio alike.
    own = getattr(estimator, "behaviour", None)
    behaviour = functools.cache(own) if callable(own) else None
    mean, sd, prior_sd = _predicted(
        estimator,
        features,
        known_dataset,
        measured,
        index,
        condition=condition,
        level=level,
        noise_sd=noise_sd,
        noise_level=noise_level,
        behaviour=behaviour,
    )
    goodness = np.where(np.isfinite(mean[options]), mean[options], -np.inf)
    # Best predicted first; ties go to library order, so a rerun asks for the same models.
    order = options[np.argsort(-goodness, kind="stable")][: count - len(picked)]
    best = _best_posterior(measured, mean, index)
    top = order[:1]  # the best predicted: whether probing is still worth it is judged on it, whatever the rule
    has_behaviour = condition and behaviour is not None
    if rule == LOOKAHEAD and has_behaviour:
        look = _lookahead(estimator, measured, index, options, mean, sd, prior_sd, best, level=level, noise_sd=noise_sd)
        if look is not None:
            order = np.concatenate([[look], order[order != look]])[: count - len(picked)]
    elif rule == PORTFOLIO and behaviour is not None and condition:
        # the call's, else, for a library's first `CHOSEN_PROBES` probes, the one chosen for it
        # (`likeness.choose_likeness`), else the default
        chosen = getattr(estimator, "likeness", None) if asked < CHOSEN_PROBES else None
        sharpness = likeness if likeness is not None else LIKENESS if chosen is None else chosen
        ranked = _portfolio(behaviour(), measured, index, options, mean, count - len(picked), likeness=sharpness)
        if len(ranked):
            order = ranked[: count - len(picked)]
    elif rule not in (GREEDY, LOOKAHEAD, PORTFOLIO):
        raise ValueError(f"rule is {GREEDY!r}, {LOOKAHEAD!r} or {PORTFOLIO!r}, not {rule!r}")
    greedy = [estimator.model_ids[j] for j in order]
    gain = float("nan")
    if best is not None and len(top):
        # (a lookahead pick is often chosen for what it tells, with little expected improvement of its own)
        gain = float(expected_improvement(mean[top], sd[top], best)[0])
        if not picked and gain < min_gain:
            return NextProbes(
                [],
                gain,
                stop=True,
                reason=f"expected gain of another probe {gain:.2g} < {min_gain:g}: the best measured model stands",
            )
    return NextProbes(picked + greedy, gain)


def _predicted(
    estimator: Probing,
    features: dict[str, float],
    known_dataset: str | None,
    measured: Sequence[ProbeRecord],
    index: dict[str, int],
    *,
    condition: bool,
    level: float,
    noise_sd: float | None = None,
    noise_level: float = 0.0,
    exact: Sequence[ProbeRecord] = (),
    behaviour: Callable[[], np.ndarray | ScoreMatrix] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every model's predicted goodness (sign x score) and its sd given the probes measured so far, and the sd
    before conditioning (the prior the conditional started from; the same sd where nothing was conditioned).

    Conditioned (where the estimator has library behaviour and the probes are measurements): `posterior`, the cold
    predictions updated by the probes as noisy observations. Otherwise: the estimator's own prediction given the
    probes (a probed model there keeps its reading, sd 0). `behaviour`: the estimator's, where the caller reads it
    once for several uses.
    """
    scores = [p for p in measured if p.probe == MEASURED and p.model_id in index]
    # A probe of the whole table (`ProbeRecord.whole`) measured what a full measurement does: exact.
    full = [p for p in exact if p.probe == MEASURED and p.model_id in index] + [p for p in scores if p.whole]
    readings = [p for p in scores if not p.whole]
    behaviour = getattr(estimator, "behaviour", None) if behaviour is None else behaviour
    # The served blend shows intervals learned apart (on whole sources held out); the policy's conditional and
    # stopping rule keep the σ they were chosen with (`BlendedEstimator.score_for_policy`).
    score_all = getattr(estimator, "score_for_policy", estimator.score_all)
    if not (condition and (readings or full) and callable(behaviour)) or len(scores) != len(measured):
        scored = score_all(features, known_dataset=known_dataset, probes=[*measured, *exact])
        sd = np.asarray(scored.uncertainty, dtype=float)
        return estimator.sign * np.asarray(scored.scores, dtype=float), sd, sd
    cold = score_all(features, known_dataset=known_dataset, probes=())
    mean = estimator.sign * np.asarray(cold.scores, dtype=float)
    sd = np.maximum(np.nan_to_num(np.asarray(cold.uncertainty, dtype=float), nan=0.0), 1e-6)
    post_mean, post_sd = posterior(
        mean,
        sd,
        behaviour,
        [(index[p.model_id], estimator.sign * p.value) for p in readings],
        [(index[p.model_id], estimator.sign * p.value) for p in full],
        level=level,
        noise_sd=noise_sd,
        noise_level=noise_level,
    )
    return post_mean, post_sd, sd


def posterior(
    mean: np.ndarray,
    sd: np.ndarray,
    behaviour: Callable[[], np.ndarray | ScoreMatrix],
    readings: Sequence[tuple[int, float]],
    exact: Sequence[tuple[int, float]] = (),
    *,
    level: float = LEVEL,
    noise_sd: float | None = None,
    noise_level: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Every model's posterior mean and sd (goodness) given noisy probe `readings` and `exact` full measurements,
    each (model index, goodness); the one rule the policy, the search's recommendation and the decision table use.

    The prior: the cold predictions `mean` ± `sd`, models correlated as they rise and fall together across the
    library (`behaviour()`, the kNN's correlation) plus a `level` share common to all models (a dataset easier or
    harder than predicted). A probe reads its model's score plus noise: a level shared by the query's probes
    (`noise_level`, sd; a sample easier or harder than the whole table) and each reading's own (`noise_sd`), as the
    library's probe records measured them (`modsnet.data.probe_scale`); `noise_sd` None: the `NOISE` share of the
    predictions' variance. A full measurement is exact. Every model gets a mean and an sd, a probed one included:
    a probe's reading is shrunk toward its prediction as far as the noise outweighs the prediction's uncertainty,
    so a lucky reading does not stand as the truth (the winner's curse). O(models x observations), no models²."""
    mean = np.asarray(mean, dtype=float)
    sd = np.asarray(sd, dtype=float)
    rows = [j for j, _ in readings] + [j for j, _ in exact]
    if not rows:
        return mean.copy(), sd.copy()
    js = np.array(rows, dtype=np.int64)
    values = np.array([v for _, v in readings] + [v for _, v in exact], dtype=float)
    unique, where = np.unique(js, return_inverse=True)
    corr = correlation_with(behaviour(), unique)[:, where]  # (n_models, rows)
    rho = level + (1.0 - level) * corr
    rho[js, np.arange(len(js))] = 1.0
    cross = rho * sd[:, None] * sd[js][None, :]  # cov(every model, each observation's model)
    noisy = np.zeros(len(js))
    noisy[: len(readings)] = 1.0
    own = _noise(noise_sd, sd[js[: len(readings)]]) if len(readings) else 0.0
    shared = max(float(noise_level), 0.0) ** 2 if noise_sd is not None else 0.0
    inner = cross[js] + np.diag(noisy * own + 1e-12) + shared * np.outer(noisy, noisy)
    weights = np.linalg.solve(inner, cross.T)  # (rows, n_models)
    base = np.where(np.isfinite(mean), mean, 0.0)
    post = mean + weights.T @ (values - base[js])
    variance = np.maximum(sd**2 - np.einsum("sm,sm->m", cross.T, weights), 0.0)
    for j, value in exact:  # a full measurement is the model's score (not merely close to it)
        post[j], variance[j] = value, 0.0
    return post, np.sqrt(variance)


def _lookahead(
    estimator: Probing,
    measured: Sequence[ProbeRecord],
    index: dict[str, int],
    options: np.ndarray,
    mean: np.ndarray,
    sd: np.ndarray,
    prior_sd: np.ndarray,
    best: float | None,
    *,
    level: float,
    noise_sd: float | None = None,
) -> int | None:
    """The probe of most value if it were the last before the final pick (knowledge gradient), or None.

    The user keeps the best measured model, and after the probes measures the predicted best: so a probe is
    worth what it adds, in expectation over its outcome, to max(best measured, the probe, the predicted best
    after it). An outcome moves every prediction through the same Gaussian model as `_predicted` (models
    that rise and fall together across the library, plus a shared level), so a probe of a model that
    informs on the contenders can be worth more than measuring the top-predicted model itself.
    """
    behaviour = estimator.behaviour()  # type: ignore[attr-defined]
    usable = options[np.isfinite(mean[options])]
    if len(usable) < 2:
        return None
    by_mean = usable[np.argsort(-mean[usable], kind="stable")][:SHORTLIST]
    by_upper = usable[np.argsort(-(mean[usable] + sd[usable]), kind="stable")][:SHORTLIST]
    pool = np.array(sorted(set(by_mean.tolist()) | set(by_upper.tolist())), dtype=np.int64)
    # Prior covariance over the pool given the probes: the cold sd and the library's correlations, conditioned
    # on the measured models; a measurement's noise is the `NOISE` share of the mean prior variance (over the
    # pool and the probed here, over the probed in `_predicted`).
    cold_sd = np.maximum(np.nan_to_num(prior_sd, nan=0.0), 1e-6)
    probed = {index[p.model_id] for p in measured if p.probe == MEASURED and p.model_id in index}
    js = np.array(sorted(probed), dtype=np.int64)
    every = np.concatenate([pool, js])
    rho = level + (1.0 - level) * correlation_with(behaviour, every)[every]
    np.fill_diagonal(rho, 1.0)
    cov = rho * np.outer(cold_sd[every], cold_sd[every])
    noise = _noise(noise_sd, cold_sd[every])
    n = len(pool)
    if len(js):
        inner = cov[n:, n:] + noise * np.eye(len(js))
        cov = cov[:n, :n] - cov[:n, n:] @ np.linalg.solve(inner, cov[n:, :n])
    else:
        cov = cov[:n, :n]
    mu = mean[pool]
    floor = -np.inf if best is None else best
    now = _exploit_value(mu, np.sqrt(np.maximum(np.diag(cov), 0.0)), floor)
    # Every candidate i at every quadrature node q at once: (candidates, nodes, pool) arrays of a few 10^4.
    variance = np.maximum(np.diag(cov), 0.0)
    spread = np.sqrt(variance + noise)  # sd of a candidate's measured outcome
    shift = cov / spread[None, :]  # [m, i]: how far model m's mean moves per sd of candidate i's outcome
    after = np.maximum(variance[:, None] - shift**2, 0.0)  # [m, i]: m's variance once i is measured
    mu_after = mu[None, None, :] + shift.T[:, None, :] * _NODES[None, :, None]
    mu_after[np.arange(n), :, np.arange(n)] = -np.inf  # a measured model is not the final pick
    top = np.argmax(mu_after, axis=2)  # (candidates, nodes): the final pick after each outcome
    top_mean = np.take_along_axis(mu_after, top[:, :, None], axis=2)[:, :, 0]
    top_sd = np.sqrt(np.take_along_axis(after.T[:, None, :].repeat(len(_NODES), axis=1), top[:, :, None], axis=2))[
        :, :, 0
    ]
    floors = np.maximum(floor, mu[:, None] + spread[:, None] * _NODES[None, :])  # best measured after the probe
    with np.errstate(invalid="ignore"):
        gain = np.where(np.isfinite(top_mean), expected_improvement(top_mean, top_sd, floors), 0.0)
    values = (floors + gain) @ _WEIGHTS
    values[spread <= 1e-9] = -np.inf
    if not np.isfinite(values).any() or values.max() <= now + 1e-12:
        return None
    return int(pool[int(np.argmax(values))])


def _portfolio(
    behaviour: np.ndarray | ScoreMatrix,
    measured: Sequence[ProbeRecord],
    index: dict[str, int],
    options: np.ndarray,
    mean: np.ndarray,
    count: int = 1,
    *,
    likeness: float = LIKENESS,
) -> np.ndarray:
    """`options` ranked by what each adds to the best of the models measured so far, best first (empty: no ranking).

    The library's datasets are the draws: on each, the value of measuring model m is max(the best z of the models
    measured, m's z), so a model that fails where the measured ones fail, or shines where they shine, adds
    nothing. Each dataset weighs exp(`likeness` x the Pearson correlation of its z with the query's predicted
    `mean`): the `PARTICLES` datasets whose models rank most as the query's are predicted to decide. A model with
    no record on a dataset counts there as that dataset's average (z 0). O(records) for the weights, then
    O(`PARTICLES` x pool), whatever the library's size. The first `count` are a set: each the best given the
    ones before it, as if they were measured."""
    known = np.isfinite(mean)
    usable_options = options[known[options]]
    alike = _likeness(behaviour, mean)
    rows = np.flatnonzero(np.isfinite(alike))
    if len(rows) < 2 or not len(usable_options):
        return np.zeros(0, dtype=np.int64)
    particles = rows[np.argsort(-alike[rows], kind="stable")][:PARTICLES]
    weights = np.exp(likeness * (alike[particles] - alike[particles].max()))
    weights /= weights.sum()
    # Candidates: the best predicted and the best on the weighed datasets (all of a library of <= PORTFOLIO_POOL).
    on_like = _weighted_mean(behaviour, particles, weights)[usable_options]
    pool = set(usable_options[_best(mean[usable_options], PORTFOLIO_POOL)].tolist())
    pool.update(usable_options[_best(on_like, PORTFOLIO_POOL)].tolist())
    pool_ids = np.array(sorted(pool), dtype=np.int64)
    probed = np.array(sorted({index[p.model_id] for p in measured if p.probe == MEASURED and p.model_id in index}))
    candidates = _particle_values(behaviour, particles, pool_ids)
    if len(probed):
        best = _particle_values(behaviour, particles, probed.astype(np.int64)).max(axis=1)
    else:
        best = np.full(len(particles), -np.inf)
    chosen, value = best_of_set(candidates, weights, best, count)  # a round of several is a set
    rest = np.argsort(-value, kind="stable")
    return pool_ids[np.concatenate([chosen, rest[~np.isin(rest, chosen)]]).astype(np.int64)]


def best_of_set(values: np.ndarray, weights: np.ndarray, best: np.ndarray, count: int) -> tuple[list[int], np.ndarray]:
    """`count` columns of `values` (draws x candidates), chosen greedily to raise the weighed mean over the draws
    of the best value measured (`best` per draw before any: -inf for none): each the one that adds most given the
    ones before it (ties: the first column). Returns them, and every column's value given all of them."""
    best = np.asarray(best, dtype=float).copy()
    chosen: list[int] = []
    while True:
        value = weights @ np.maximum(best[:, None], values)
        value[chosen] = -np.inf
        if len(chosen) >= min(count, values.shape[1]):
            return chosen, value
        pick = int(np.argmax(value))
        chosen.append(pick)
        best = np.maximum(best, values[:, pick])


_CELLS_AT_ONCE = 1 << 22  # a dense library is read in blocks of rows of about this many cells: no (datasets x
# models) temporaries


def _rows_per_block(columns: int) -> int:
    return max(1, _CELLS_AT_ONCE // max(columns, 1))


def _best(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` largest values, largest first (ties: the first position), without a full sort."""
    if len(values) > count:
        kept = np.argpartition(-values, count - 1)[:count]
        return kept[np.lexsort((kept, -values[kept]))]
    return np.argsort(-values, kind="stable")


def _weighted_mean(behaviour: np.ndarray | ScoreMatrix, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ weights x z over `rows`, per model (a missing value adds 0, the dataset's average)."""
    if isinstance(behaviour, ScoreMatrix):
        return behaviour.weighted_row_sum(rows, weights)[0]
    z = np.asarray(behaviour, dtype=float)
    out = np.zeros(z.shape[1])
    step = _rows_per_block(z.shape[1])
    for start in range(0, len(rows), step):
        out += weights[start : start + step] @ np.nan_to_num(z[rows[start : start + step]], nan=0.0)
    return out


def _likeness(behaviour: np.ndarray | ScoreMatrix, mean: np.ndarray) -> np.ndarray:
    """Per dataset (row), the Pearson correlation of its z with `mean` over the models both have (NaN where fewer
    than 3 or no spread)."""
    known = np.isfinite(mean)
    if isinstance(behaviour, ScoreMatrix):
        rows, cols, values = behaviour.row_of, behaviour.indices, behaviour.data
        keep = known[cols] if behaviour.hidden is None else known[cols] & (rows != behaviour.hidden)
        rows, x, y = rows[keep], values[keep], mean[cols[keep]]
        n_rows = behaviour.shape[0]
        sums = [np.bincount(rows, w, n_rows) for w in (np.ones(len(x)), x, y, x * x, y * y, x * y)]
        return _pearson(*sums)
    z = np.asarray(behaviour, dtype=float)
    y = np.where(known, mean, 0.0)
    out = []
    step = _rows_per_block(z.shape[1])
    for start in range(0, len(z), step):
        block = z[start : start + step]
        present = np.isfinite(block) & known
        x = np.where(present, block, 0.0)
        sums = [present.sum(axis=1), x.sum(axis=1), present @ y, (x * x).sum(axis=1), present @ (y * y), x @ y]
        out.append(_pearson(*[np.asarray(s, dtype=float) for s in sums]))
    return np.concatenate(out) if out else np.zeros(0)


def _pearson(
    n: np.ndarray, sx: np.ndarray, sy: np.ndarray, sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray
) -> np.ndarray:
    """Pearson correlations from per-row counts and sums (NaN where fewer than 3 or no spread)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.maximum(n, 1.0)
        var = (sxx - sx * sx / safe) * (syy - sy * sy / safe)
        out = (sxy - sx * sy / safe) / np.sqrt(var)
    out[(n < 3) | ~(var > 1e-18)] = np.nan
    return out


def _particle_values(behaviour: np.ndarray | ScoreMatrix, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """z of `rows` x `columns`, dense; 0 (the dataset's average) where there is no record."""
    if isinstance(behaviour, ScoreMatrix):
        where = np.full(behaviour.shape[1], -1, dtype=np.int64)
        where[columns] = np.arange(len(columns))
        which, cols, values = behaviour.gather(rows)
        keep = where[cols] >= 0
        out = np.zeros((len(rows), len(columns)))
        out[which[keep], where[cols[keep]]] = values[keep]
        return out
    return np.nan_to_num(np.asarray(behaviour, dtype=float)[np.ix_(rows, columns)], nan=0.0)


def probe_noise(scale: ProbeScale | None) -> dict[str, float]:
    """The policy's probe noise (`noise_sd`, `noise_level` of `next_probes` and `posterior`) where the library
    measured it (`ProbeScale.noise`: a level a query's probes share and each one's own); none: {} (the `NOISE`
    share)."""
    if scale is None:
        return {}
    level, own = scale.noise()
    return {"noise_sd": own, "noise_level": level}


def _noise(noise_sd: float | None, sd: np.ndarray) -> float:
    """A probe's measurement variance: the library's measured one where known, else the `NOISE` share of `sd`'s."""
    if noise_sd is not None:
        return max(float(noise_sd) ** 2, 1e-12)
    return NOISE * float(np.mean(sd**2))


def _exploit_value(mu: np.ndarray, sd: np.ndarray, floor: float) -> float:
    """E[max(floor, X)] for X the predicted best model's outcome ~ N(mu, sd²) (floor -inf: E[X])."""
    top = int(np.argmax(mu))
    if not np.isfinite(mu[top]):
        return floor
    if not np.isfinite(floor):
        return float(mu[top])
    return floor + float(expected_improvement(mu[top : top + 1], sd[top : top + 1], floor)[0])


def _best_posterior(measured: Sequence[ProbeRecord], mean: np.ndarray, index: dict[str, int]) -> float | None:
    """The best posterior mean (goodness) among the models measured in the library's metric; None if none was."""
    values = [float(mean[index[p.model_id]]) for p in measured if p.probe == MEASURED and p.model_id in index]
    finite = [v for v in values if np.isfinite(v)]
    return max(finite) if finite else None


def _best_measured(measured: Sequence[ProbeRecord], sign: float) -> float | None:
    values: dict[str, list[float]] = {}
    for p in measured:
        if p.probe == MEASURED:
            values.setdefault(p.model_id, []).append(p.value)
    if not values:
        return None
    return max(sign * float(np.mean(v)) for v in values.values())


def simulate(
    estimator: Probing,
    features: dict[str, float],
    measure: Callable[[list[str]], list[ProbeRecord]],
    *,
    budget: int,
    known_dataset: str | None = None,
    among: Collection[str] | None = None,
    count: int = 1,
    informative: int = INFORMATIVE,
    min_gain: float = MIN_GAIN,
    condition: bool = CONDITION,
    level: float = LEVEL,
    rule: str | None = None,
    noise_sd: float | None = None,
    noise_level: float = 0.0,
    likeness: float | None = None,
) -> list[ProbeRecord]:
    """The search's probing loop: ask `next_probes`, measure (`measure(model_ids) -> records`), repeat until
    `budget` models were asked for or the policy stops. Returns every measured probe, in order."""
    measured: list[ProbeRecord] = []
    tried: list[str] = []
    while len(tried) < budget:
        step = next_probes(
            estimator,
            features,
            known_dataset=known_dataset,
            measured=measured,
            tried=[m for m in tried if m not in {p.model_id for p in measured}],
            count=min(count, budget - len(tried)),
            among=among,
            informative=informative,
            min_gain=min_gain,
            condition=condition,
            level=level,
            rule=rule,
            noise_sd=noise_sd,
            noise_level=noise_level,
            likeness=likeness,
        )
        if step.stop or not step.model_ids:
            break
        tried.extend(step.model_ids)
        measured.extend(measure(step.model_ids))
    return measured
