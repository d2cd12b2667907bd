"""Which probing policy ends with the better model at a budget: variants of the search's sequential policy.

    python benchmarks/probe_policy.py [--libraries tabzoo xrdzoo /tmp/libs/oboe] [--budgets 3 5 10]

The decision table of `modsnet eval` scores the search's own policy (`services/recommender/policy.py`: one probe
at a time, each the one that adds most to the best measured so far on the library's datasets like the query (the
portfolio rule), then the final measurement). This benchmark runs the same evaluation (same targets, folds of 10
as `modsnet eval` makes them: interleaved since 2026-12-07, runs of consecutive ids in the figures recorded
before; seed and fitted GNN per fold) and, for each target, also simulates the policy's variants through the
same loop (`policy.simulate`):
- batch: the probe-selector's diverse batch of B - 1 probes at once (the search's policy before);
- greedy, re-predicted: the best predicted model given the probes so far, as the estimator predicts with them
  (GNN: virtual probe edges);
- greedy, conditioned: the cold predictions conditioned on the probes' surprise (policy.py `_predicted`), with
  a share `level` of the surprise common to all models;
- info-1: the selector's first probe, then greedy conditioned (the search's policy before 2026-12-07);
- portfolio: each probe the one that adds most to the best measured (policy.py `_portfolio`; served since);
- with --knn, knn info-N: the policy with the kNN estimator (probe similarity, its own conditioning).
Each spends B - 1 probes and then measures the predicted best unprobed (B measurements in all, as the table).
Regret as in `services/recommender/decisions.py`. Prints a markdown table; not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pickle
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from modsnet.data.bundle import read_bundle
from services.recommender import evaluation, policy
from services.recommender.calibration import calibrated
from services.recommender.decisions import MODSNET, MODSNET_TOP, POPULAR, Ranking, pick_regret
from services.recommender.estimators.base import Prediction, ProbeRecord, Scored
from services.recommender.estimators.knn import KnnPopularityEstimator
from services.recommender.probes import MEASURED

ROOT = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, dict[str, Any]] = {
    "info-0, greedy conditioned": {"informative": 0, "rule": "greedy"},
    "info-1, greedy conditioned (the policy before 2026-12-07)": {"informative": 1, "rule": "greedy"},
    "info-1, lookahead": {"informative": 1, "rule": "lookahead"},
    "info-0, lookahead": {"informative": 0, "rule": "lookahead"},
    "info-1, lookahead (level 0)": {"informative": 1, "rule": "lookahead", "level": 0.0},
    "info-0, lookahead (level 0)": {"informative": 0, "rule": "lookahead", "level": 0.0},
}
KNN_VARIANTS: dict[str, dict[str, Any]] = {"knn info-0": {"informative": 0}, "knn info-1": {"informative": 1}}


def _library(name: str) -> Path:
    path = Path(name)
    return path if path.exists() else ROOT / "modsnet" / "libraries" / name


def validation_targets(library: Path, count: int, *, seed: int = 1) -> list[str]:
    """`count` datasets of the library that are not among the evaluation's default targets, drawn by `seed`: held out
    in folds of 10 as the default targets are, they choose a policy's variant with the served estimator itself (the
    pseudo-targets have no estimator, so they cannot judge the served pick) without looking at the test targets."""
    snapshot, _ = evaluation.graph_from_bundle(read_bundle(library))
    tested = set(evaluation.default_targets(snapshot, seed=0))
    counts: dict[str, int] = defaultdict(int)
    for r in snapshot.interactions:
        counts[r.dataset_id] += 1
    eligible = sorted(d for d, n in counts.items() if n >= evaluation.MIN_RECORDS and d not in tested)
    chosen = np.random.default_rng(seed).choice(len(eligible), min(count, len(eligible)), replace=False)
    return sorted(eligible[i] for i in chosen)


def run(
    library: Path,
    budgets: tuple[int, ...],
    knn: bool,
    dump: Path | None = None,
    *,
    variants_too: bool = True,
    targets: list[str] | None = None,
) -> tuple[dict[str, dict[int, float]], int]:
    regrets: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    cases: list[dict[str, Any]] = []  # with --dump: what a replay of the policies needs, per target
    folds: dict[tuple[str, ...], dict[str, Any]] = {}
    seen_folds: list[tuple[str, ...]] = []
    product = evaluation._decision_rankings
    knn_of: dict[tuple[str, ...], KnnPopularityEstimator] = {}  # the current fold's, fitted once

    def with_variants(fold, estimator, target, features) -> None:  # type: ignore[no-untyped-def]
        product(fold, estimator, target, features)
        if not fold.measures_scores(target):
            return
        sign = 1.0 if fold.snapshot.library.meta.get("higher_is_better", True) else -1.0
        candidates, probeable = set(fold.candidates[target]), fold.probeable(target)
        true = {m: r.value for m, r in fold._oracle[target].items() if m in candidates}
        key = tuple(fold.targets)
        if key not in seen_folds:
            seen_folds.append(key)
            if len(seen_folds) > 1:
                _progress(library.name, regrets, fold_count=len(seen_folds) - 1)
                if dump is not None:
                    with dump.open("wb") as out:
                        pickle.dump({"folds": folds, "cases": cases, "decisions": None, "table": None}, out)
        if dump is not None:
            if key not in folds:
                behaviour = getattr(estimator, "behaviour", None)
                folds[key] = {
                    "model_ids": list(estimator.model_ids),
                    "sign": sign,
                    "behaviour": behaviour() if callable(behaviour) else None,
                }
                try:
                    folds[key]["estimator"] = pickle.dumps(estimator)
                except Exception as error:
                    print(f"estimator not picklable: {error!r}", flush=True)
            cold = estimator.score_all(features, known_dataset=target, probes=())
            cases.append(
                {
                    "fold": key,
                    "target": target,
                    "features": features,
                    "true": true,
                    "probeable": sorted(probeable),
                    "cold": np.asarray(cold.scores, dtype=float),
                    "sd": np.asarray(cold.uncertainty, dtype=float),
                    "batch": estimator.select_probes(features, known_dataset=target, budget=10, among=probeable),
                }
            )

        def score(name: str, model: Any, taken: list[ProbeRecord], budget: int) -> None:
            predicted = model.predict(features, known_dataset=target, probes=taken)
            ranking = Ranking(
                {p.model_id: sign * p.score for p in predicted if p.model_id in candidates},
                frozenset(p.model_id for p in taken),
            )
            regrets[name][budget].append(pick_regret(true, ranking, budget, sign=sign))

        # popular-B as the decision table ranks it (evaluation.popularity_method on the fold's training graph)
        popular = dict(zip(fold.candidates[target], evaluation.popularity_method(fold)[target].tolist(), strict=True))
        popular_ranking = Ranking({m: popular.get(m, -np.inf) for m in true})
        for budget in (0, *budgets):
            regrets["popular-B"][budget].append(pick_regret(true, popular_ranking, budget, sign=sign))
            product_ranking = fold.adaptive.get(budget, {}).get(target) or Ranking(fold.cold[target])
            regrets["the search's policy (policy.py defaults)"][budget].append(
                pick_regret(true, product_ranking, budget, sign=sign)
            )
        if not variants_too:
            return  # the product's row and the dump only: a replay runs the variants without the fit's cost
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
            read_bundle(library),
            methods=["modsnet", "popularity"],
            budgets=(0, *budgets),
            fold_size=10,
            targets=targets,
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
    if dump is not None:
        per_target = report.decisions.to_dict()["per_target"]
        with dump.open("wb") as out:
            pickle.dump({"folds": folds, "cases": cases, "decisions": per_target, "table": table}, out)
    return table, len(report.targets)


class Replayed:
    """One fitted fold's estimator, as the policy sees it, from a --dump: the cold scores and the selector's batch
    of one target, the fold's behaviour matrix, and (where it pickled) the real estimator for predictions with
    probes. Replaying a policy then costs no fit. With the estimator, the policy's σ is its own
    (`score_for_policy`, as the search's policy reads it), not the shown σ the dump saved."""

    def __init__(self, fold: dict[str, Any], case: dict[str, Any], estimator: Any = None):
        self.model_ids, self.sign, self._behaviour = fold["model_ids"], fold["sign"], fold["behaviour"]
        self.case, self.estimator = case, estimator
        if self._behaviour is None:
            del self.behaviour  # no library behaviour: the policy re-predicts, which needs the estimator
        self._policy_cold: Scored | None = None

    def behaviour(self) -> np.ndarray:
        return self._behaviour

    def select_probes(self, features, *, known_dataset=None, budget=5, among=None):  # type: ignore[no-untyped-def]
        return [m for m in self.case["batch"] if among is None or m in among][:budget]

    def score_all(self, features, *, known_dataset=None, probes=()):  # type: ignore[no-untyped-def]
        if not probes:
            cold, sd = self.case["cold"], self.case["sd"]
            return Scored(cold, sd, lambda j: Prediction(self.model_ids[j], float(cold[j]), float(sd[j])))
        if self.estimator is None:
            raise RuntimeError("this dump has no estimator to predict with probes")
        return self.estimator.score_all(features, known_dataset=known_dataset, probes=probes)

    def score_for_policy(self, features, *, known_dataset=None, probes=()):  # type: ignore[no-untyped-def]
        own = getattr(self.estimator, "score_for_policy", None)
        if own is None:
            return self.score_all(features, known_dataset=known_dataset, probes=probes)
        if probes:
            return own(features, known_dataset=known_dataset, probes=probes)
        if self._policy_cold is None:  # the cold one is asked for at every step: once per target
            self._policy_cold = own(features, known_dataset=known_dataset, probes=())
        return self._policy_cold


REPLAY_VARIANTS: dict[str, dict[str, Any]] = {
    "info-0, portfolio: the served policy": {"informative": 0, "rule": "portfolio"},
    "info-1, portfolio": {"informative": 1, "rule": "portfolio"},
    **{
        f"info-0, portfolio (likeness {k:g})": {"informative": 0, "rule": "portfolio", "likeness": k}
        for k in (0.0, 3.0, 5.0, 20.0)
    },
    "info-1, greedy conditioned (level 0.5): the policy before 2026-12-07": {"informative": 1, "rule": "greedy"},
    "info-0, greedy conditioned (level 0.5)": {"informative": 0, "rule": "greedy"},
    "info-1, lookahead (level 0.5)": {"informative": 1, "rule": "lookahead"},
    "info-0, lookahead (level 0.5)": {"informative": 0, "rule": "lookahead"},
    "info-1, lookahead (level 0)": {"informative": 1, "rule": "lookahead", "level": 0.0},
    "info-0, lookahead (level 0)": {"informative": 0, "rule": "lookahead", "level": 0.0},
    "info-1, greedy conditioned (level 0)": {"informative": 1, "level": 0.0, "rule": "greedy"},
    "info-1, by expected improvement (level 0.5)": {"informative": 1, "by_gain": True},
    "info-1, by expected improvement (level 0)": {"informative": 1, "by_gain": True, "level": 0.0},
    "info-1, greedy re-predicted": {"informative": 1, "condition": False, "rule": "greedy"},
    "info-0, greedy re-predicted": {"informative": 0, "condition": False, "rule": "greedy"},
}


def _popular_rankings(library: Path, folds: list[tuple[str, ...]]) -> dict[str, dict[str, float]]:
    """popular-B's ranking of each target of `folds` as the evaluation ranks it (a model's mean z over the fold's
    training datasets), for a dump written mid-run, which has no decision table."""
    snapshot, _ = evaluation.graph_from_bundle(read_bundle(library))
    out: dict[str, dict[str, float]] = {}
    for fold in folds:
        hidden = set(fold)
        train = dataclasses.replace(
            snapshot, interactions=[r for r in snapshot.interactions if r.dataset_id not in hidden]
        )
        _, model_ids, z = evaluation.z_scores(train)
        has = ~np.isnan(z)
        mean = np.where(has, z, 0.0).sum(axis=0) / np.maximum(has.sum(axis=0), 1)
        sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
        for target in fold:
            out[target] = {m: sign * float(v) for m, v in zip(model_ids, mean, strict=True)}
    return out


def replay(
    path: Path, budgets: tuple[int, ...], names: list[str] | None, library: Path | None = None
) -> dict[str, dict[str, dict[int, list[float]]]]:
    """Every REPLAY_VARIANTS policy on a --dump, with its final picks: the estimator's prediction with the probes
    (what the search serves), the policy's conditioned prediction, and variants of them. Returns policy -> pick ->
    B -> regret per target, in the dump's target order."""
    with path.open("rb") as source:
        dump = pickle.load(source)
    estimators = {key: pickle.loads(f["estimator"]) if "estimator" in f else None for key, f in dump["folds"].items()}
    regrets: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    # A dump written while its run was going (after each fold) has no decision table yet: no such rows.
    decisions = dump["decisions"] or {}
    popular, product = decisions.get(POPULAR), decisions.get(MODSNET)
    ranked = _popular_rankings(library, list(dump["folds"])) if popular is None and library is not None else {}
    for case in dump["cases"]:
        fold, target = dump["folds"][case["fold"]], case["target"]
        model = Replayed(fold, case, estimators[case["fold"]])
        true, sign = case["true"], fold["sign"]
        index = {m: j for j, m in enumerate(model.model_ids)}
        for b in (0, *budgets):
            if popular is not None and product is not None:
                regrets["popular-B"]["table"][b].append(popular[str(b)][target])
                regrets["product (modsnet row of the dump)"]["table"][b].append(product[str(b)][target])
            elif target in ranked:
                ranking = Ranking({m: ranked[target].get(m, -np.inf) for m in true})
                regrets["popular-B"]["table"][b].append(pick_regret(true, ranking, b, sign=sign))
        for name, settings in REPLAY_VARIANTS.items():
            if names and not any(n in name for n in names):
                continue
            if settings.get("by_gain"):
                taken = _simulate_by_gain(
                    model,
                    true,
                    max(budgets) - 1,
                    settings.get("level", policy.LEVEL),
                    features=case["features"],
                    target=target,
                    among=set(case["probeable"]),
                    informative=settings.get("informative", 0),
                )
            else:
                taken = policy.simulate(
                    model,
                    case["features"],
                    functools.partial(_measured, true, target),
                    budget=max(budgets) - 1,
                    known_dataset=target,
                    among=set(case["probeable"]),
                    **settings,
                )
            for b in budgets:
                probes = taken[: b - 1]
                probed = frozenset(p.model_id for p in probes)
                picks = {}
                # The last measurement is worth E[max(best measured, X)]: ranked by expected improvement
                # over the best measured as well as by the predicted mean (no probe: the mean).
                best = policy._best_measured(probes, sign)
                if model.estimator is not None:
                    scored = model.score_all(case["features"], known_dataset=target, probes=probes)
                    served = sign * np.asarray(scored.scores, dtype=float)
                    picks["served"] = served
                    if best is not None:
                        picks["served, by expected improvement"] = _by_gain(served, scored.uncertainty, best)
                mean, sd, _ = policy._predicted(
                    model,
                    case["features"],
                    target,
                    probes,
                    index,
                    condition=True,
                    level=settings.get("level", policy.LEVEL),
                )
                picks["conditioned"] = mean
                if "served" in picks:  # two predictors that err apart (probe edges vs the library's correlations)
                    picks["served and conditioned, averaged"] = (picks["served"] + mean) / 2.0
                if best is not None:
                    picks["conditioned, by expected improvement"] = _by_gain(mean, sd, best)
                for pick, vector in picks.items():
                    ranking = Ranking({m: float(vector[index[m]]) for m in true if m in index}, probed)
                    regrets[name][pick][b].append(pick_regret(true, ranking, b, sign=sign))
    return {name: {pick: dict(per) for pick, per in picks.items()} for name, picks in regrets.items()}


SERVED_POLICY = next(iter(REPLAY_VARIANTS))


def _wins(mine: list[float], theirs: list[float]) -> str:
    """Targets where `mine` ends better / worse than `theirs` (ties in neither)."""
    better = sum(a < b - 1e-12 for a, b in zip(mine, theirs, strict=True))
    worse = sum(a > b + 1e-12 for a, b in zip(mine, theirs, strict=True))
    return f"{better}↑ {worse}↓"


def _measured(true: dict[str, float], target: str, model_ids: list[str]) -> list[ProbeRecord]:
    """The true scores of `model_ids` on the target as measured probes (a replay's or a pseudo-target's), exact
    (`whole`): every library's probes read what it records (TabZoo's since its probes sample as its records did;
    XRDZoo's and OBOE's always), and the evaluation takes them as exact (`Fold.whole`, `probed_whole`)."""
    return [ProbeRecord(m, target, MEASURED, true[m], whole=True) for m in model_ids if m in true]


def _by_gain(mean: np.ndarray, sd: Any, best: float) -> np.ndarray:
    """Expected improvement of each model over `best` (-inf where the mean is unknown)."""
    finite = np.isfinite(mean)
    sd = np.nan_to_num(np.asarray(sd, dtype=float), nan=0.0)
    return np.where(finite, policy.expected_improvement(np.where(finite, mean, 0.0), sd, best), -np.inf)


class PseudoTarget:
    """A dataset of a fold's training data as a target, for choosing the policy's settings without the test
    targets: the cold prediction is popularity over the fold's other training datasets (z-scores), its sd the
    spread of each model's z there, and the behaviour matrix lacks the pseudo-target's row."""

    def __init__(self, behaviour: np.ndarray, row: int, model_ids: list[str]):
        others = np.delete(behaviour, row, axis=0)
        self.model_ids, self.sign, self._behaviour = model_ids, 1.0, others
        with np.errstate(all="ignore"):
            self.cold = np.nan_to_num(np.nanmean(others, axis=0), nan=-np.inf)
            self.sd = np.nan_to_num(np.nanstd(others, axis=0), nan=1.0)
        self.truth = {m: float(behaviour[row, j]) for j, m in enumerate(model_ids) if np.isfinite(behaviour[row, j])}

    def behaviour(self) -> np.ndarray:
        return self._behaviour

    def select_probes(self, features, *, known_dataset=None, budget=5, among=None):  # type: ignore[no-untyped-def]
        order = np.argsort(-self.cold, kind="stable")
        return [self.model_ids[j] for j in order if among is None or self.model_ids[j] in among][:budget]

    def score_all(self, features, *, known_dataset=None, probes=()):  # type: ignore[no-untyped-def]
        if probes:
            raise RuntimeError("a pseudo-target is only conditioned, never re-predicted")
        return Scored(
            self.cold, self.sd, lambda j: Prediction(self.model_ids[j], float(self.cold[j]), float(self.sd[j]))
        )


PSEUDO_VARIANTS: dict[str, dict[str, Any]] = {
    "portfolio": {"informative": 0, "rule": "portfolio"},
    "greedy conditioned (level 0.5)": {"informative": 0, "rule": "greedy"},
    "greedy conditioned (level 0)": {"informative": 0, "level": 0.0, "rule": "greedy"},
    "lookahead (level 0.5)": {"informative": 0, "rule": "lookahead"},
    "lookahead (level 0)": {"informative": 0, "rule": "lookahead", "level": 0.0},
    "greedy by expected improvement (level 0.5)": {"by_gain": True},
    "greedy by expected improvement (level 0)": {"by_gain": True, "level": 0.0},
}


def _simulate_by_gain(
    model: Any,
    true: dict[str, float],
    budget: int,
    level: float,
    *,
    features: dict[str, float] | None = None,
    target: str | None = None,
    among: set[str] | None = None,
    informative: int = 0,
) -> list[ProbeRecord]:
    """Probes chosen one at a time by expected improvement over the best measured (the conditioned mean and
    sd), not by the mean: what every probe would be if each were the last. The first `informative` are the
    selector's; with nothing measured, the mean decides."""
    index = {m: j for j, m in enumerate(model.model_ids)}
    allowed = [m for m in true if m in index and (among is None or m in among)]
    taken: list[ProbeRecord] = []
    if informative:
        batch = model.select_probes(features or {}, known_dataset=target, budget=informative, among=among)
        taken = _measured(true, target or "pseudo", [m for m in batch if m in true][:budget])
    while len(taken) < min(budget, len(allowed)):
        mean, sd, _ = policy._predicted(model, features or {}, target, taken, index, condition=True, level=level)
        best = policy._best_measured(taken, model.sign)
        value = mean if best is None else _by_gain(mean, sd, best)
        done = {p.model_id for p in taken}
        pick = max((m for m in allowed if m not in done), key=lambda m: (value[index[m]], -index[m]))
        taken.extend(_measured(true, target or "pseudo", [pick]))
    return taken


def _training_behaviour(library: Path) -> dict[str, Any]:
    """A library's datasets less the evaluation's default targets, as one fold of a dump: z-scores clipped as
    the kNN clips them (`KnnPopularityEstimator.behaviour`). No fit: the pseudo-targets need none."""
    snapshot, _ = evaluation.graph_from_bundle(read_bundle(library))
    targets = set(evaluation.default_targets(snapshot, seed=0))
    dataset_ids, model_ids, z = evaluation.z_scores(snapshot)
    keep = [i for i, d in enumerate(dataset_ids) if d not in targets]
    fold = {"model_ids": model_ids, "sign": 1.0, "behaviour": np.clip(z[keep], -5.0, 5.0)}
    return {"folds": {("training",): fold}}


def pseudo(
    path: Path, budgets: tuple[int, ...], per_fold: int, names: list[str] | None = None
) -> dict[str, dict[int, float]]:
    """PSEUDO_VARIANTS (those whose name contains one of `names`, if given) on `per_fold` training datasets of
    each fold (seeded) of a --dump, or of a library less its default evaluation targets; regret in z units.
    The final pick is the conditioned prediction (a pseudo-target has no estimator of its own), ranked by its
    mean and, in a row of its own, by expected improvement over the best measured."""
    if path.suffix == ".pkl":
        with path.open("rb") as source:
            dump = pickle.load(source)
    else:
        dump = _training_behaviour(_library(str(path)))
    rng = np.random.default_rng(0)
    regrets: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for fold in dump["folds"].values():
        behaviour = fold["behaviour"]
        rows = rng.choice(len(behaviour), size=min(per_fold, len(behaviour)), replace=False)
        for row in rows:
            model = PseudoTarget(behaviour, int(row), fold["model_ids"])
            true = model.truth
            if len(true) < 10:
                continue
            index = {m: j for j, m in enumerate(model.model_ids)}
            for b in (0, *budgets):
                ranking = Ranking({m: float(model.cold[index[m]]) for m in true})
                regrets["popular-B"][b].append(pick_regret(true, ranking, b))
            for name, settings in PSEUDO_VARIANTS.items():
                if names and not any(n in name for n in names):
                    continue
                if settings.get("by_gain"):
                    taken = _simulate_by_gain(model, true, max(budgets) - 1, settings.get("level", policy.LEVEL))
                else:
                    taken = policy.simulate(
                        model,
                        {},
                        functools.partial(_measured, true, "pseudo"),
                        budget=max(budgets) - 1,
                        among=set(true),
                        **settings,
                    )
                for b in budgets:
                    probes = taken[: b - 1]
                    mean, sd, _ = policy._predicted(
                        model, {}, None, probes, index, condition=True, level=settings.get("level", policy.LEVEL)
                    )
                    probed = frozenset(p.model_id for p in probes)
                    ranking = Ranking({m: float(mean[index[m]]) for m in true}, probed)
                    regrets[name][b].append(pick_regret(true, ranking, b))
                    best = policy._best_measured(probes, model.sign)
                    if best is not None:
                        gain = _by_gain(mean, sd, best)
                        ranking = Ranking({m: float(gain[index[m]]) for m in true}, probed)
                        regrets[f"{name}, last by expected improvement"][b].append(pick_regret(true, ranking, b))
    return {name: {b: float(np.mean(v)) for b, v in per.items()} for name, per in regrets.items()}


def _progress(name: str, regrets: dict[str, dict[int, list[float]]], *, fold_count: int) -> None:
    """The running means after each fold (a long run on a loaded machine shows what it has so far); the
    product's and popular-B's rows come from `regrets`' own entries for them."""
    print(f"\n{name}: after {fold_count} fold(s)", flush=True)
    for policy_name, per in regrets.items():
        cells = " | ".join(f"B={b} {np.mean(v):.4f} (n={len(v)})" for b, v in sorted(per.items()))
        print(f"| {policy_name} | {cells} |", flush=True)


def _cell(means: dict[int, float], popular: dict[int, float], budget: int) -> str:
    if budget not in means:
        return "–"
    ratio = f" ({means[budget] / popular[budget]:.2f})" if popular.get(budget) else ""
    return f"{means[budget]:.4f}{ratio}"


def _print_table(title: str, rows: dict[str, Any], budgets: tuple[int, ...]) -> None:
    """A markdown table of mean regret per policy at B = 0 and `budgets`, each cell with its ratio to popular-B."""
    popular, shown = rows["popular-B"], (0, *budgets)
    print(f"\n{title}\n")
    print("| policy | " + " | ".join(f"B={b}" for b in shown) + " |")
    print("|---|" + "---:|" * len(shown))
    for label, means in rows.items():
        print(f"| {label} | " + " | ".join(_cell(means, popular, b) for b in shown) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", nargs="+", default=["tabzoo", "xrdzoo"], help="built-in names or bundle paths")
    parser.add_argument("--budgets", nargs="+", type=int, default=[3, 5, 10])
    parser.add_argument("--knn", action="store_true", help="also the policy with the kNN estimator predicting")
    parser.add_argument("--dump", type=Path, help="folder: save each library's fitted folds for a fast replay")
    parser.add_argument(
        "--no-variants", action="store_true", help="with --dump: only the product's row (replay the variants later)"
    )
    parser.add_argument("--replay", nargs="+", type=Path, help="dump files: replay REPLAY_VARIANTS on them, no fit")
    parser.add_argument(
        "--only", nargs="*", help="with --replay or --pseudo: the variants whose name contains one of these"
    )
    parser.add_argument(
        "--pseudo", nargs="+", type=Path, help="dump files or libraries: PSEUDO_VARIANTS on training datasets"
    )
    parser.add_argument(
        "--fold", type=int, default=0, help="only this fold (1-based, folds of 10 in target order): runs side by side"
    )
    parser.add_argument("--library", help="with --replay of a dump written mid-run: its library, for popular-B")
    parser.add_argument("--save", type=Path, help="with --replay: folder for each dump's regret per target (JSON)")
    parser.add_argument("--per-fold", type=int, default=20, help="with --pseudo: pseudo-targets per fold")
    parser.add_argument(
        "--validation",
        type=int,
        default=0,
        help="hold out this many datasets that are not evaluation targets (validation_targets), not the targets",
    )
    args = parser.parse_args()
    budgets = tuple(args.budgets)
    if args.pseudo:
        for path in args.pseudo:
            started = time.perf_counter()
            results = pseudo(path, budgets, args.per_fold, args.only)
            title = f"{path.stem}: pseudo-targets of the training data, mean regret in z (ratio to popular-B)"
            _print_table(title, results, budgets)
            print(f"\n({time.perf_counter() - started:.0f} s)", flush=True)
        return
    if args.replay:
        for path in args.replay:
            started = time.perf_counter()
            replayed = replay(path, budgets, args.only, _library(args.library) if args.library else None)
            if args.save is not None:
                args.save.mkdir(parents=True, exist_ok=True)
                (args.save / f"{path.stem}.json").write_text(json.dumps(replayed))
            means = {
                n: {p: {b: float(np.mean(v)) for b, v in per.items()} for p, per in ps.items()}
                for n, ps in replayed.items()
            }
            popular: dict[int, float] = means["popular-B"]["table"] if "popular-B" in means else {}
            served = replayed.get(SERVED_POLICY, {}).get("served", {})
            shown = (0, *budgets)
            print(
                f"\n{path.stem}: regret after B measurements (ratio to popular-B; targets better / worse than the "
                "served policy), by final pick\n"
            )
            print("| policy | final pick | " + " | ".join(f"B={b}" for b in shown) + " |")
            print("|---|---|" + "---:|" * len(shown))
            for name, picks in means.items():
                for pick, row in picks.items():
                    cells = []
                    for b in shown:
                        cell = _cell(row, popular, b)
                        if b in served and b in replayed[name][pick] and b in row:
                            cell += f" {_wins(replayed[name][pick][b], served[b])}"
                        cells.append(cell)
                    print(f"| {name} | {pick} | " + " | ".join(cells) + " |")
            print(f"\n({time.perf_counter() - started:.0f} s)", flush=True)
        return
    for name in args.libraries:
        started = time.perf_counter()
        dump = None
        if args.dump is not None:
            args.dump.mkdir(parents=True, exist_ok=True)
            suffix = ("-validation" if args.validation else "") + (f"-fold{args.fold}" if args.fold else "")
            dump = args.dump / f"{Path(name).name}{suffix}.pkl"
        chosen = validation_targets(_library(name), args.validation) if args.validation else None
        if args.fold:  # the evaluation's own folds of 10 (`evaluation._folds`), one of them
            if chosen is None:
                snapshot, _ = evaluation.graph_from_bundle(read_bundle(_library(name)))
                chosen = evaluation.default_targets(snapshot, seed=0)
            chosen = evaluation._folds(chosen, 10)[args.fold - 1]
        table, targets = run(_library(name), budgets, args.knn, dump, variants_too=not args.no_variants, targets=chosen)
        title = f"{name}: {targets} targets, mean regret after B measurements (ratio to popular-B)"
        _print_table(title, table, budgets)
        print(f"\n({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
