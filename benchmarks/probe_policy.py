"""Which probing policy ends with the better model at a budget: variants of the search's sequential policy.

    python benchmarks/probe_policy.py [--libraries tabzoo xrdzoo /tmp/libs/oboe] [--budgets 3 5 10]

The decision table of `modsnet eval` scores the search's own policy (`services/recommender/policy.py`: the
selector's first `INFORMATIVE` probes, then one greedy probe at a time given the results so far, then the
predicted best). This benchmark runs the same evaluation (same targets, folds of 10, seed and fitted GNN per
fold) and, for each target, also simulates the policy's variants through the same loop (`policy.simulate`):
- batch: the probe-selector's diverse batch of B - 1 probes at once (the search's policy before);
- greedy, re-predicted: the best predicted model given the probes so far, as the estimator predicts with them
  (GNN: virtual probe edges);
- greedy, conditioned: the cold predictions conditioned on the probes' surprise (policy.py `_predicted`), with
  a share `level` of the surprise common to all models;
- info-1: the selector's first probe, then greedy conditioned; rounds of 2: two probes per round;
- with --knn, knn info-N: the policy with the kNN estimator (probe similarity, its own conditioning).
Each spends B - 1 probes and then measures the predicted best unprobed (B measurements in all, as the table).
Regret as in `services/recommender/decisions.py`. Prints a markdown table; not a test.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from modsnet.data.bundle import read_bundle
from services.recommender import evaluation
from services.recommender.calibration import calibrated
from services.recommender.decisions import MODSNET, MODSNET_TOP, POPULAR, Ranking, pick_regret
from services.recommender.estimators.base import ProbeRecord
from services.recommender.estimators.knn import KnnPopularityEstimator

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, Any]] = {
    "greedy, re-predicted by the estimator": {"informative": 0, "condition": False},
    "greedy, conditioned (level 0.5)": {"informative": 0, "condition": True, "level": 0.5},
    "greedy, conditioned (level 0)": {"informative": 0, "condition": True, "level": 0.0},
    "info-1, then greedy conditioned": {"informative": 1, "condition": True},
    "conditioned, rounds of 2": {"informative": 0, "condition": True, "count": 2},
}
KNN_VARIANTS: dict[str, dict[str, Any]] = {"knn info-0": {"informative": 0}, "knn info-1": {"informative": 1}}


def _library(name: str) -> Path:
    path = Path(name)
    return path if path.exists() else ROOT / "modsnet" / "libraries" / name


def run(library: Path, budgets: tuple[int, ...], knn: bool) -> tuple[dict[str, dict[int, float]], int]:
    regrets: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    product = evaluation._decision_rankings
    knn_of: dict[tuple[str, ...], KnnPopularityEstimator] = {}  # the current fold's, fitted once

    def with_variants(fold, estimator, target, features) -> None:  # type: ignore[no-untyped-def]
        product(fold, estimator, target, features)
        if not fold.measures_scores(target):
            return
        sign = 1.0 if fold.snapshot.library.meta.get("higher_is_better", True) else -1.0
        candidates, probeable = set(fold.candidates[target]), fold.probeable(target)
        true = {m: r.value for m, r in fold._oracle[target].items() if m in candidates}

        def score(name: str, model: Any, taken: list[ProbeRecord], budget: int) -> None:
            predicted = model.predict(features, known_dataset=target, probes=taken)
            ranking = Ranking(
                {p.model_id: sign * p.score for p in predicted if p.model_id in candidates},
                frozenset(p.model_id for p in taken),
            )
            regrets[name][budget].append(pick_regret(true, ranking, budget, sign=sign))

        for budget in budgets:  # the selector's batch, as the search took it before
            chosen = estimator.select_probes(features, known_dataset=target, budget=budget - 1, among=probeable)
            score("batch (before)", estimator, fold.measure_for_decision(target, chosen), budget)
        models: list[tuple[dict[str, dict[str, Any]], Any]] = [(VARIANTS, estimator)]
        if knn:
            key = tuple(fold.targets)
            if key not in knn_of:
                knn_of.clear()
                knn_of[key] = calibrated(fold.snapshot, KnnPopularityEstimator, seed=fold.seed)[0]
            models.append((KNN_VARIANTS, knn_of[key]))
        for variants, model in models:
            for name, settings in variants.items():
                for budget, taken in evaluation.adaptive_probes(fold, model, target, features, **settings).items():
                    score(name, model, taken, budget)

    evaluation._decision_rankings = with_variants  # type: ignore[assignment]
    try:
        report = evaluation.evaluate(
            read_bundle(library), methods=["modsnet", "popularity"], budgets=(0, *budgets), fold_size=10
        )
    finally:
        evaluation._decision_rankings = product
    assert report.decisions is not None
    table: dict[str, dict[int, float]] = {}
    for strategy, label in (
        (MODSNET, "the search's policy (policy.py defaults)"),
        (MODSNET_TOP, "top-B cold"),
        (POPULAR, "popular-B"),
    ):
        table[label] = {b: report.decisions.mean(strategy, b) or 0.0 for b in (0, *budgets)}
    table.update({name: {b: float(np.mean(v)) for b, v in per.items()} for name, per in regrets.items()})
    return table, len(report.targets)


def _cell(means: dict[int, float], popular: dict[int, float], budget: int) -> str:
    if budget not in means:
        return "–"
    ratio = f" ({means[budget] / popular[budget]:.2f})" if popular[budget] else ""
    return f"{means[budget]:.4f}{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", nargs="+", default=["tabzoo", "xrdzoo"], help="built-in names or bundle paths")
    parser.add_argument("--budgets", nargs="+", type=int, default=[3, 5, 10])
    parser.add_argument("--knn", action="store_true", help="also the policy with the kNN estimator predicting")
    args = parser.parse_args()
    budgets = tuple(args.budgets)
    for name in args.libraries:
        started = time.perf_counter()
        table, targets = run(_library(name), budgets, args.knn)
        popular = table["popular-B"]
        shown = (0, *budgets)
        print(f"\n{name}: {targets} targets, mean regret after B measurements (ratio to popular-B)\n")
        print("| policy | " + " | ".join(f"B={b}" for b in shown) + " |")
        print("|---|" + "---:|" * len(shown))
        for policy, means in table.items():
            print(f"| {policy} | " + " | ".join(_cell(means, popular, b) for b in shown) + " |")
        print(f"\n({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
