"""Decisions at a measurement budget: the model a user ends up with, and how far it is from the best.

A user who can afford B measurements on their own data runs B models and keeps the best measured one
(design.md, "Decisions at a budget"). Regret is the best true score of the target minus the true score of
that pick (in the library's metric, sign-corrected so that lower is always better). Strategies:
- `modsnet` (adaptive): the B - 1 probes the search's policy takes (`policy.py`: one at a time, each given
  the results so far), then one full measurement: B measurements in all. B = 0 trusts the predicted best
  unmeasured. With the posterior under noisy probes (`Ranking.posterior`, `policy.posterior`), the full
  measurement goes to the model of best posterior mean over all models, a probed one included (a probe read a
  sample; measuring its model in full is often the best use of the last measurement), and the user keeps the
  model of best posterior: the fully measured one by its true score, a probe-only one by its posterior mean
  (its reading shrunk toward its prediction), never a raw reading that may be a lucky one. Without it, the
  rule before: the predicted best among the models not probed, and the best measured as seen.
- `modsnet top-B`: measure the estimator's B best predictions, no probes (one cold ranking serves every B).
- `popular-B`: measure the B models with the best mean score elsewhere; B = 0 trusts the most popular one.
- `portfolio-B`: measure the B models that together did best elsewhere (a library-wide portfolio, the same for every
  target: each the one that most raises the mean over the other datasets of the best measured). The B best by
  mean are often near-twins that fail together; this is the stronger baseline a practitioner would build
  (OBOE's and auto-sklearn's portfolios). B = 0 trusts its first (the best on the most datasets).
- `random-B`: B models drawn at random; the exact expectation over all draws, so no sampling noise.

Plain numpy, no estimator: `evaluation.evaluate` runs the estimator and hands its rankings here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

BUDGETS = (0, 1, 3, 5, 10)
MODSNET = "modsnet"
MODSNET_TOP = "modsnet top-B"
POPULAR = "popular-B"
PORTFOLIO = "portfolio-B"
RANDOM = "random-B"


@dataclass(frozen=True)
class Ranking:
    """What a strategy knew about one target: a score per candidate (higher = better), the models it probed and,
    where a probe read something other than the record (a sample), what it read (in the library's metric).

    `posterior`, where given: every model's posterior mean (higher = better) and sd once the models of its argument
    are measured in full at those values (in the library's metric), the probes weighed as noisy readings;
    `predicted` is then its mean with no full measurement. The table's last measurement(s) and the model kept
    follow it."""

    predicted: Mapping[str, float]
    probed: frozenset[str] = frozenset()
    observed: Mapping[str, float] | None = None
    posterior: Callable[[Mapping[str, float]], tuple[Mapping[str, float], Mapping[str, float]]] | None = None


def _gain(true: Mapping[str, float], model_ids: Sequence[str] | set[str] | frozenset[str], sign: float) -> float:
    return max(sign * true[m] for m in model_ids)


def _order(predicted: Mapping[str, float]) -> list[str]:
    # Ties break by id so every run picks the same model; a NaN prediction ranks last.
    return sorted(predicted, key=lambda m: (-(predicted[m] if math.isfinite(predicted[m]) else -math.inf), m))


def pick_regret(true: Mapping[str, float], ranking: Ranking, budget: int, *, sign: float = 1.0) -> float:
    """Regret of the best measured model after `budget` measurements: the probes, then the predicted best.

    A strategy that probed more than `budget - 1` models is charged only for what fits: the caller hands the
    probes of a run whose probe budget was `budget - 1`. With `ranking.observed`, the user keeps the model that
    measured best as they saw it: a probe by what it read, a model measured after the probes by its true score.
    """
    best = max(sign * v for v in true.values())
    order = [m for m in _order(ranking.predicted) if m in true]
    if budget <= 0:
        return best - sign * true[order[0]]
    if ranking.posterior is not None:
        return best - sign * true[_kept_by_posterior(true, ranking, budget)]
    measured = {m for m in ranking.probed if m in true}
    for model_id in order:
        if len(measured) >= budget:
            break
        measured.add(model_id)
    if ranking.observed is None:
        return best - _gain(true, measured, sign)
    seen = {m: ranking.observed.get(m, true[m]) if m in ranking.probed else true[m] for m in measured}
    kept = min(seen, key=lambda m: (-sign * seen[m], m))
    return best - sign * true[kept]


MEAN, VALUE, UNPROBED, SERVED = "mean", "value", "unprobed", "served"
# How the posterior rule spends a full measurement: VALUE, on the model whose measurement ends best in expectation,
# E[max(its score, the best estimate measured already)] (a probed model's estimate is in hand already, so measuring
# an unprobed contender is often worth more than confirming it, and a probed model is measured in full when its
# estimate is uncertain and high); MEAN, on the best posterior mean over every model (a probed one included);
# UNPROBED, the best posterior mean among the models not probed; SERVED, the rule before's choice itself (the best
# of `Ranking.predicted`, the served ranking with the probes, among the models not probed). The user keeps the best
# posterior under each. VALUE was chosen on 200 TabZoo pseudo-targets (training datasets, not the evaluation's
# targets; `benchmarks/noisy_decisions.py --pseudo`): ratio to popular-B at B = 3 / 5 / 10 0.77 / 0.63 / 0.74,
# MEAN 1.00 / 0.75 / 0.77, UNPROBED 0.83 / 0.68 / 0.74 (docs/benchmarks-decisions.md, "Decisions under noisy
# probes").
FINAL = VALUE


def _kept_by_posterior(true: Mapping[str, float], ranking: Ranking, budget: int) -> str:
    """The model a user keeps under the posterior rule: after the probes, each measurement left goes in full to the
    model `FINAL` says (a probed one included), the posterior updated by it; then the best posterior among
    everything measured (a fully measured model is its true score, a probe-only one its estimate)."""
    assert ranking.posterior is not None
    probed = {m for m in ranking.probed if m in true}
    full: dict[str, float] = {}
    mean, sd = ranking.posterior(full)
    while len(probed) + len(full) < budget and len(full) < len(true):
        if FINAL == SERVED:
            left = {m: ranking.predicted.get(m, -math.inf) for m in true if m not in full and m not in probed}
            if not left:
                break
        else:
            left = {m: _final_value(m, mean, sd, probed | set(full)) for m in true if m not in full}
        choice = _order(left)[0]
        full[choice] = true[choice]
        mean, sd = ranking.posterior(full)
    seen = {m: mean.get(m, -math.inf) for m in probed | set(full)}
    return _order(seen)[0]


def _final_value(model: str, mean: Mapping[str, float], sd: Mapping[str, float], kept: set[str]) -> float:
    """What measuring `model` in full is worth under `FINAL` (higher = better)."""
    mu = mean.get(model, -math.inf)
    if FINAL == UNPROBED and model in kept:
        return -math.inf
    if FINAL in (MEAN, UNPROBED) or not math.isfinite(mu):
        return mu
    floor = max((mean.get(m, -math.inf) for m in kept if m != model), default=-math.inf)
    if not math.isfinite(floor):
        return mu
    spread = max(sd.get(model, 0.0), 1e-12)
    z = (mu - floor) / spread
    density = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    cumulative = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    return floor + max((mu - floor) * cumulative + spread * density, 0.0)


def expected_random_regret(true: Mapping[str, float], budget: int, *, sign: float = 1.0) -> float:
    """Expected regret of the best of `budget` models drawn without replacement (B = 0: one trusted at random)."""
    values = sorted((sign * v for v in true.values()), reverse=True)
    n, draws = len(values), max(1, min(budget, len(values)))
    total = math.comb(n, draws)
    # The i-th best (0-based) is the best drawn when it is drawn and the others come from the n-i-1 below it.
    expected = sum(v * math.comb(n - i - 1, draws - 1) / total for i, v in enumerate(values))
    return values[0] - expected


@dataclass
class DecisionTable:
    """Regret per strategy, budget and target; means and the worst target per (strategy, budget)."""

    budgets: tuple[int, ...]
    regret: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)  # strategy -> B -> target -> r

    def add(self, strategy: str, budget: int, target: str, value: float) -> None:
        self.regret.setdefault(strategy, {}).setdefault(budget, {})[target] = float(value)

    def mean(self, strategy: str, budget: int) -> float | None:
        values = list(self.regret.get(strategy, {}).get(budget, {}).values())
        return float(np.mean(values)) if values else None

    def worst(self, strategy: str, budget: int) -> tuple[str, float] | None:
        values = self.regret.get(strategy, {}).get(budget, {})
        if not values:
            return None
        target = max(values, key=lambda t: (values[t], t))
        return target, values[target]

    def mean_over(self, strategy: str, budget: int, targets: Collection[str]) -> float | None:
        """`strategy`'s mean regret at `budget` over `targets` only (those it has of them)."""
        values = self.regret.get(strategy, {}).get(budget, {})
        kept = [values[t] for t in targets if t in values]
        return float(np.mean(kept)) if kept else None

    def wins(self, strategy: str, baseline: str, budget: int) -> tuple[int, int]:
        """Targets where `strategy` ends better / worse than `baseline` at `budget` (ties count in neither)."""
        mine, theirs = self.regret.get(strategy, {}).get(budget, {}), self.regret.get(baseline, {}).get(budget, {})
        shared = mine.keys() & theirs.keys()
        better = sum(mine[t] < theirs[t] - 1e-12 for t in shared)
        worse = sum(mine[t] > theirs[t] + 1e-12 for t in shared)
        return better, worse

    def to_dict(self) -> dict[str, object]:
        return {
            "budgets": list(self.budgets),
            "mean": {s: {str(b): self.mean(s, b) for b in self.budgets} for s in self.regret},
            "targets": {s: {str(b): len(self.regret[s].get(b, {})) for b in self.budgets} for s in self.regret},
            "worst": {s: {str(b): self.worst(s, b) for b in self.budgets} for s in self.regret},
            "per_target": {s: {str(b): self.regret[s].get(b, {}) for b in self.budgets} for s in self.regret},
        }

    def to_table(self) -> str:
        """Mean regret per strategy and budget, with wins/losses against popular-B and the worst target."""
        header = "| strategy | " + " | ".join(f"B={b}" for b in self.budgets) + " |"
        lines = [
            "decisions: regret of the best measured model after B measurements (lower is better)",
            header,
            "|---|" + "---:|" * len(self.budgets),
        ]
        for strategy in self.regret:
            cells = []
            for budget in self.budgets:
                mean = self.mean(strategy, budget)
                cell = "–" if mean is None else f"{mean:.3f}"
                counted = self.regret.get(strategy, {}).get(budget, {})
                everyone = self.regret.get(POPULAR, {}).get(budget, {})
                if strategy != POPULAR and mean is not None and len(counted) < len(everyone):
                    # A mean over fewer targets (probes that are not measurements elsewhere: TransferGraph's
                    # LogME) compares with popular-B on the same targets, not with its row.
                    same = self.mean_over(POPULAR, budget, counted)
                    cell += f" [{len(counted)} of {len(everyone)} targets; popular-B {same:.3f} on them]"
                if strategy != POPULAR and mean is not None and POPULAR in self.regret:
                    better, worse = self.wins(strategy, POPULAR, budget)
                    cell += f" ({better}↑ {worse}↓)"
                cells.append(cell)
            lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
        lines.append("(n↑ m↓: targets where the strategy ends better / worse than popular-B)")
        for strategy in self.regret:
            worst = [(b, self.worst(strategy, b)) for b in self.budgets]
            shown = ", ".join(f"B={b} {w[0]} {w[1]:.3f}" for b, w in worst if w is not None)
            lines.append(f"worst target, {strategy}: {shown}")
        return "\n".join(lines)


def decision_table(
    truth: Mapping[str, Mapping[str, float]],
    *,
    popularity: Mapping[str, Mapping[str, float]],
    portfolio: Mapping[str, Mapping[str, float]] | None = None,
    cold: Mapping[str, Mapping[str, float]] | None = None,
    adaptive: Mapping[int, Mapping[str, Ranking]] | None = None,
    budgets: Sequence[int] = BUDGETS,
    higher_is_better: bool = True,
) -> DecisionTable:
    """Regret of every strategy at every budget on every target of `truth` (target -> model -> true score).

    `popularity[target]` is a model's mean (z-scored) score on the datasets other than the target (what
    was visible while the target was held out), higher = better whatever the metric; `portfolio[target]` the
    portfolio's order as scores (higher = measured first);
    `cold` the estimator's predictions per target without probes (also higher = better); `adaptive[B]` its
    ranking and probes per target in a run whose probe budget was B - 1 (B = 0 and 1 use the cold ranking).
    """
    sign = 1.0 if higher_is_better else -1.0
    table = DecisionTable(tuple(budgets))
    for target, true in truth.items():
        if len(true) < 2:
            continue
        for budget in budgets:
            if adaptive is not None:
                ranking = adaptive.get(budget, {}).get(target)
                if ranking is None and budget <= 1 and cold is not None and target in cold:
                    ranking = Ranking(cold[target])
                if ranking is not None:
                    table.add(MODSNET, budget, target, pick_regret(true, ranking, budget, sign=sign))
            if cold is not None and target in cold:
                table.add(MODSNET_TOP, budget, target, pick_regret(true, Ranking(cold[target]), budget, sign=sign))
            popular = Ranking({m: popularity.get(target, {}).get(m, -math.inf) for m in true})
            table.add(POPULAR, budget, target, pick_regret(true, popular, budget, sign=sign))
            if portfolio is not None and target in portfolio:
                chosen = Ranking({m: portfolio[target].get(m, -math.inf) for m in true})
                table.add(PORTFOLIO, budget, target, pick_regret(true, chosen, budget, sign=sign))
            table.add(RANDOM, budget, target, expected_random_regret(true, budget, sign=sign))
    return table
