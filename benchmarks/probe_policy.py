"""Which probing policy ends with the better model at a budget: the selector's batch or a sequential one.

    .venv/bin/python benchmarks/probe_policy.py [--libraries tabzoo xrdzoo] [--budgets 3 5 10]

The decision table of `modsnet eval` scores the search's own policy: the probe-selector's diverse batch of
B - 1 probes, then the predicted best. This benchmark runs the same evaluation (same targets, folds, seed
and fitted GNN per fold) and, for each target, also simulates sequential policies that pick one probe at a
time from the estimator's predictions given the probes so far:
- greedy: the best predicted model not yet measured;
- ucb-κ: the best predicted score + κ·σ (calibrated σ);
- ei: the largest expected improvement over the best measured score (normal predictive, calibrated σ).
Each spends B - 1 probes and then measures the predicted best unprobed (B measurements in all, as the table).
Regret as in `services/recommender/decisions.py`. Prints a markdown table; not a test.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.stats import norm

from modsnet.data.bundle import read_bundle
from services.recommender import evaluation
from services.recommender.decisions import MODSNET, POPULAR, Ranking, pick_regret
from services.recommender.estimators.base import Prediction, ProbeRecord

ROOT = Path(__file__).resolve().parents[1]
Score = Callable[[Prediction, float | None, float], float]  # (prediction, best measured, sign) -> priority


def _ei(p: Prediction, best: float | None, sign: float) -> float:
    if best is None:
        return sign * p.score
    s = max(p.uncertainty, 1e-9)
    d = sign * p.score - best
    return d * norm.cdf(d / s) + s * norm.pdf(d / s)


POLICIES: dict[str, Score] = {
    "greedy": lambda p, best, sign: sign * p.score,
    "ucb-0.5": lambda p, best, sign: sign * p.score + 0.5 * p.uncertainty,
    "ucb-1": lambda p, best, sign: sign * p.score + 1.0 * p.uncertainty,
    "ei": _ei,
}


def run(library: Path, budgets: tuple[int, ...]) -> tuple[dict[str, dict[int, float]], int]:
    regrets: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    batch = evaluation._decision_rankings

    def with_policies(fold, estimator, target, features) -> None:  # type: ignore[no-untyped-def]
        batch(fold, estimator, target, features)
        if not fold.measures_scores(target):
            return
        sign = 1.0 if fold.snapshot.library.meta.get("higher_is_better", True) else -1.0
        candidates, probeable = set(fold.candidates[target]), fold.probeable(target)
        true = {m: r.value for m, r in fold._oracle[target].items() if m in candidates}
        for name, priority in POLICIES.items():
            for budget in budgets:
                taken: list[ProbeRecord] = []
                for _ in range(budget - 1):
                    done = {p.model_id for p in taken}
                    best = max((sign * p.value for p in taken), default=None)
                    options = [
                        p
                        for p in estimator.predict(features, known_dataset=target, probes=taken)
                        if p.model_id in probeable and p.model_id not in done
                    ]
                    if not options:
                        break
                    pick = max(options, key=lambda p: (priority(p, best, sign), p.model_id))
                    taken += fold.measure_for_decision(target, [pick.model_id])
                predicted = estimator.predict(features, known_dataset=target, probes=taken)
                ranking = Ranking(
                    {p.model_id: sign * p.score for p in predicted if p.model_id in candidates},
                    frozenset(p.model_id for p in taken),
                )
                regrets[name][budget].append(pick_regret(true, ranking, budget, sign=sign))

    evaluation._decision_rankings = with_policies  # type: ignore[assignment]
    try:
        report = evaluation.evaluate(
            read_bundle(library), methods=["modsnet", "popularity"], budgets=budgets, fold_size=10
        )
    finally:
        evaluation._decision_rankings = batch
    assert report.decisions is not None
    table = {f"{name} (sequential)": {b: float(np.mean(v)) for b, v in per.items()} for name, per in regrets.items()}
    for strategy, label in ((MODSNET, "selector batch (the search's policy)"), (POPULAR, "popular-B")):
        table[label] = {b: report.decisions.mean(strategy, b) or 0.0 for b in budgets}
    return table, len(report.targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", nargs="+", default=["tabzoo", "xrdzoo"])
    parser.add_argument("--budgets", nargs="+", type=int, default=[3, 5, 10])
    args = parser.parse_args()
    budgets = tuple(args.budgets)
    for name in args.libraries:
        started = time.perf_counter()
        table, targets = run(ROOT / "modsnet" / "libraries" / name, budgets)
        popular = table["popular-B"]
        print(f"\n{name}: {targets} targets, mean regret after B measurements (ratio to popular-B)\n")
        print("| policy | " + " | ".join(f"B={b}" for b in budgets) + " |")
        print("|---|" + "---:|" * len(budgets))
        for policy, means in table.items():
            cells = [
                f"{means[b]:.4f} ({means[b] / popular[b]:.2f})" if popular[b] else f"{means[b]:.4f}" for b in budgets
            ]
            print(f"| {policy} | " + " | ".join(cells) + " |")
        print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
