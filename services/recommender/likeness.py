"""The probing policy's likeness chosen per library, on the library's own held-out datasets (issue 16 point 2).

The portfolio rule (`policy._portfolio`) weighs each library dataset by exp(likeness x how alike its models rank to
the query's predictions). Which likeness pays depends on the library: where the predictions say much about a new
dataset (TabZoo), weighing the datasets like the query (10) wins; where they say little (OBOE: B = 0 is 0.89 of
popular-1), the weighing costs the portfolio its hedge and every dataset alike (0) does better (OBOE over all 418
datasets: 0.0183 / 0.0113 at B = 3 / 5 with 0, 0.0193 / 0.0147 with 10; docs/benchmarks-decisions.md). So each fit
replays the policy on the pseudo-targets its blend was calibrated on (datasets a calibration fit never saw, as a
new query is), each likeness of `CHOICES` in turn, and keeps the one whose measured best ends closest to the true
best at the budgets of `BUDGETS`. The choice weighs the policy's first `policy.CHOSEN_PROBES` probes, those
of those budgets; later ones weigh by the default again, as the conditioned predictions by then say more (OBOE's
held-out datasets at B = 10: 0.0082 with 3 for every probe, 0.0073 with 10, 0.0072 with 3 for the first four;
`benchmarks/likeness_choice.py`).

A pseudo-target's replay is what a search does with exact measurements: the blend's cold predictions of its
models and their σ (the policy's), the calibration fit's behaviour (which lacks the dataset), one probe at a time
by the served rule, then the best conditioned prediction not probed; the user keeps the best measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from modsnet.data.probe_scale import ProbeScale

from . import policy
from .estimators.base import Prediction, ProbeRecord, Scored
from .estimators.matrix import ScoreMatrix
from .probes import MEASURED

CHOICES = (0.0, 3.0, 10.0)  # 10: the default (`policy.LIKENESS`); 0 weighs every dataset alike
# Measurements in all (the probes, then the predicted best): point 2's budgets, whose probes are the policy's first
# `CHOSEN_PROBES`, those the chosen likeness weighs
BUDGETS = (3, policy.CHOSEN_PROBES + 1)
MIN_TARGETS = 20  # pseudo-targets a choice needs; fewer: the default stands
# Another likeness replaces the default only where its mean gain over the default's, paired over the pseudo-targets,
# is this many standard errors. At 1, on 120 pseudo-targets, some of TabZoo's evaluation folds left the default for
# 3 and ended a little worse at every budget (+0.0002 / +0.0005 / +0.0007 at B = 3 / 5 / 10), OBOE's a little
# better at 3 and 5 (-0.0003 / -0.0009 / +0.0005), none of it outside noise: the choice between candidates
# this close is noise itself. At 2 every evaluation fold of TabZoo, XRDZoo and OBOE keeps the default
# (docs/benchmarks-decisions.md, "A likeness per library").
SURE = 2.0
MIN_MODELS = 4  # a pseudo-target needs this many measured models to be replayed at the largest budget
# A pseudo-target of more measured models is replayed on its best predicted this many (the policy's candidates are
# its 2 x `policy.PORTFOLIO_POOL` best by prediction and on the like datasets): a large library's choice costs no more
MAX_MODELS = 1000
CHOOSE = True  # False: no choice, `policy.LIKENESS` for every library (a benchmark's fixed setting)


@dataclass
class HeldOutQuery:
    """One held-out dataset as the policy sees it: the blend's cold predictions of its measured models and their
    σ (the policy's scale), the truth, and the calibration fit's behaviour on those models (its own row absent:
    that fit never saw it)."""

    model_ids: list[str]
    truth: np.ndarray  # (models,) in the library's metric
    mean: np.ndarray  # (models,) predicted, cold
    sd: np.ndarray  # (models,)
    # The fit's behaviour (datasets x models: z, NaN where no record), at `columns` (None: all of them, in the
    # order of `model_ids`). Sliced when read, so that a large library's held-out datasets hold no copies.
    library: np.ndarray | ScoreMatrix
    sign: float = 1.0
    likeness: float | None = None  # as a served estimator's: the policy's for its first probes
    columns: np.ndarray | None = None

    def behaviour(self) -> np.ndarray:
        if self.columns is None:
            return np.asarray(self.library, dtype=float)
        return library_columns(self.library, self.columns)

    def select_probes(self, features, *, known_dataset=None, budget=5, among=None):  # type: ignore[no-untyped-def]
        # The selector's diverse batch is never asked for: the replay's probes are the rule's, one at a time.
        order = np.argsort(-self.sign * self.mean, kind="stable")
        return [self.model_ids[j] for j in order if among is None or self.model_ids[j] in among][:budget]

    def score_all(self, features, *, known_dataset=None, probes=()):  # type: ignore[no-untyped-def]
        if probes:
            raise RuntimeError("a held-out query is conditioned on its probes, never re-predicted")
        return Scored(
            self.mean, self.sd, lambda j: Prediction(self.model_ids[j], float(self.mean[j]), float(self.sd[j]))
        )


def library_columns(behaviour: np.ndarray | ScoreMatrix, columns: Sequence[int] | np.ndarray) -> np.ndarray:
    """The fit's behaviour at `columns`, dense (datasets x columns)."""
    if isinstance(behaviour, ScoreMatrix):
        return behaviour.columns(np.asarray(columns, dtype=np.int64))
    return np.asarray(behaviour, dtype=float)[:, np.asarray(columns, dtype=np.int64)]


def replay_regrets(
    query: HeldOutQuery,
    likeness: float,
    *,
    budgets: Sequence[int] = BUDGETS,
    noise: dict[str, float] | None = None,
) -> dict[int, float]:
    """Per budget B, the regret (library metric) of the best measured once the policy with `likeness` has
    probed B - 1 models and the best conditioned prediction not probed is measured."""
    truth = {m: float(v) for m, v in zip(query.model_ids, query.truth, strict=True)}
    index = {m: j for j, m in enumerate(query.model_ids)}
    noise = noise or {}

    def measure(model_ids: list[str]) -> list[ProbeRecord]:
        return [ProbeRecord(m, "held-out", MEASURED, truth[m]) for m in model_ids]

    # The likeness as a served estimator carries it (the policy's own schedule); the behaviour sliced once
    query = replace(query, likeness=likeness, library=query.behaviour(), columns=None)
    taken = policy.simulate(
        query, {}, measure, budget=max(budgets) - 1, among=set(truth),
        noise_sd=noise.get("noise_sd"), noise_level=noise.get("noise_level", 0.0),
    )  # fmt: skip
    goodness = query.sign * np.asarray(query.truth, dtype=float)
    out = {}
    for budget in budgets:
        probes = taken[: budget - 1]
        mean, _, _ = policy._predicted(
            query, {}, None, probes, index, condition=True, level=policy.LEVEL,
            noise_sd=noise.get("noise_sd"), noise_level=noise.get("noise_level", 0.0),
        )  # fmt: skip
        # The probed models, then the best predicted of the others (ties: the first) until B are measured; the
        # user keeps the best (as the decision table's `pick_regret` without a posterior).
        measured = [index[p.model_id] for p in probes]
        probed = set(measured)
        rest = [j for j in np.argsort(-mean, kind="stable").tolist() if j not in probed]
        measured += rest[: max(budget - len(measured), 0)]
        out[budget] = float(goodness.max() - goodness[measured].max())
    return out


@dataclass(frozen=True)
class LikenessChoice:
    """The likeness chosen and each candidate's mean regret over the pseudo-targets and budgets (empty: none
    replayed, the default stands)."""

    likeness: float
    regrets: dict[float, float]
    targets: int = 0
    gain: float = 0.0  # the chosen one's mean regret under the default's, and its standard error (paired)
    standard_error: float = 0.0


def choose_likeness(
    queries: Sequence[HeldOutQuery],
    *,
    choices: Sequence[float] | None = None,
    budgets: Sequence[int] = BUDGETS,
    default: float | None = None,
    scale: ProbeScale | None = None,
) -> LikenessChoice:
    """The likeness of least mean regret on `queries` (another than `default` only where its paired gain over
    the default's is `SURE` standard errors). The default (`policy.LIKENESS`) stands with fewer than
    `MIN_TARGETS` queries, where the served rule is not the portfolio's, or where `CHOOSE` is off. `scale`: the
    library's probe scale, the noise the policy weighs probes by."""
    default = policy.LIKENESS if default is None else default
    usable = [q for q in queries if len(q.model_ids) >= max(MIN_MODELS, max(budgets))]
    if not CHOOSE or len(usable) < MIN_TARGETS or policy.RULE != policy.PORTFOLIO:
        return LikenessChoice(default, {})
    candidates = list(dict.fromkeys([default, *(CHOICES if choices is None else choices)]))  # (read at each call)
    noise = policy.probe_noise(scale)
    # per candidate, each query's regret averaged over the budgets (a query at a time: one slice of the library)
    per_query = {k: np.zeros(len(usable)) for k in candidates}
    for i, q in enumerate(usable):
        sliced = replace(q, library=q.behaviour(), columns=None)
        for k in candidates:
            per_query[k][i] = np.mean(list(replay_regrets(sliced, k, budgets=budgets, noise=noise).values()))
    regrets = {k: float(v.mean()) for k, v in per_query.items()}
    best = min(candidates, key=lambda k: (regrets[k], k != default))
    gain = per_query[default] - per_query[best]
    standard_error = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else 0.0
    if best != default and gain.mean() <= SURE * standard_error:
        best = default
    return LikenessChoice(best, regrets, len(usable), float(gain.mean()), standard_error)
