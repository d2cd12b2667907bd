"""Ranking by an objective within the limits in effect, and what each limit removed: the one place.

Objectives (`Objective.kind`):

* `score`: best predicted score first (ties: lower uncertainty, then id), as every search did before;
* `score-per-cost`: best `max(score, 0) / max(cost, floor)` first. A plain ratio, so "per unit of cost"
  means what it says (score per second, per megabyte), with a floor because a ratio rewards measurement
  noise near zero: a 0.2 ms inference is not five times better than a 1 ms one, timer resolution and call
  overhead decide there. The floors (`COST_FLOORS`): 1 ms for seconds, 1 MB for memory (model memory under
  a megabyte is invisible beside the process that runs it; the smallest profile allows 50 MB). Below the
  floor models tie on cost and the better score wins. `score / log1p(cost)` was not taken: it depends on
  the unit and still tends to infinity as the cost goes to zero. A negative score counts as 0. It needs a
  metric where higher is better (an error per second means nothing);
* `pareto`: the Pareto front of (predicted score, cost) first, best score first, then the next fronts
  (non-dominated sorting), each model marked on the front or not.

A model without a recorded cost of the objective's kind (0 in the records: "unknown", and the XRD
finders record no training time) is never ranked as free: per-cost and Pareto leave it out and the answer
names it under the removal `missing-cost`.

Removals: per limit (`LIMITS`), the models it failed (a model failing several counts under each), how many
of them were predicted better than the top pick and the best of their scores; `missing-cost` as above;
`objective`: the models the best predicted score would have shown in the top k that this objective's answer
does not show. The top pick is the recommended model's predicted score.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from modsnet.data.graph import LIMITS, Constraints, ModelNode, Objective, Recommendation, Removal
from modsnet.data.profiles import objective_name
from modsnet.runtime.errors import InvalidArgument

from .estimators.base import Prediction, ProbeRecord
from .probes import MEASURED
from .recommendation import recommend_one

COST_FLOORS = {"train_seconds": 1e-3, "inference_seconds": 1e-3, "memory_bytes": 1e6}
# The unit a per-cost value is given per: a second, a megabyte.
COST_UNITS = {"train_seconds": (1.0, "train s"), "inference_seconds": (1.0, "inference s"), "memory_bytes": (1e6, "MB")}
COST_WORDS = {"train_seconds": "train seconds", "inference_seconds": "inference seconds", "memory_bytes": "memory"}
NAMED_IDS = 20  # models a removal names


@dataclass(frozen=True)
class Selection:
    """The models an answer is drawn from, in the objective's order, and those left out on the way."""

    ranking: list[Prediction]  # allowed (and with the cost the objective needs), in the objective's order
    by_score: list[Prediction]  # every allowed model, best predicted score first
    removed: dict[str, list[Prediction]]  # limit name -> the models it failed, best score first
    missing_cost: list[Prediction]  # allowed, but without the cost the objective ranks by
    excluded: int  # models the constraints left out
    front: frozenset[str] = frozenset()  # pareto: the models on the front
    values: dict[str, float] = field(default_factory=dict)  # score-per-cost: the value of each ranked model


def check(objective: Objective, *, higher_is_better: bool, library: str) -> None:
    objective.check()
    if objective.kind == "score-per-cost" and not higher_is_better:
        raise InvalidArgument(
            f"objective {objective_name(objective)}: library {library!r} scores models by a metric where lower "
            "is better, and an error per unit of cost means nothing; rank by pareto instead"
        )


def select(
    predictions: Sequence[Prediction],
    models: Mapping[str, ModelNode],
    constraints: Constraints,
    objective: Objective,
    *,
    sign: float,
) -> Selection:
    """The allowed models ranked by `objective`; `sign` is +1 when a higher score is better, else -1."""
    allowed: list[Prediction] = []
    removed: dict[str, list[Prediction]] = {}
    for p in predictions:
        failed = constraints.violations(models[p.model_id])
        for name in failed:
            removed.setdefault(name, []).append(p)
        if not failed:
            allowed.append(p)

    def by_score(p: Prediction) -> tuple[float, float, str]:
        return (-sign * p.score, p.uncertainty, p.model_id)

    allowed.sort(key=by_score)
    for group in removed.values():
        group.sort(key=by_score)
    excluded = len(predictions) - len(allowed)
    if objective.kind == "score":
        return Selection(allowed, allowed, removed, [], excluded)
    costs = {p.model_id: float(getattr(models[p.model_id].cost, objective.cost)) for p in allowed}
    costed = [p for p in allowed if costs[p.model_id] > 0]
    missing = [p for p in allowed if not costs[p.model_id] > 0]
    if objective.kind == "score-per-cost":
        unit, _ = COST_UNITS[objective.cost]
        floor = COST_FLOORS[objective.cost]
        values = {p.model_id: max(p.score, 0.0) / max(costs[p.model_id], floor) * unit for p in costed}
        ranking = sorted(costed, key=lambda p: (-values[p.model_id], *by_score(p)))
        return Selection(ranking, allowed, removed, missing, excluded, values=values)
    layers = pareto_layers([sign * p.score for p in costed], [costs[p.model_id] for p in costed])
    layer = {p.model_id: layers[i] for i, p in enumerate(costed)}
    ranking = sorted(costed, key=lambda p: (layer[p.model_id], *by_score(p)))
    front = frozenset(m for m, at in layer.items() if at == 0)
    return Selection(ranking, allowed, removed, missing, excluded, front=front)


def pareto_layers(gains: Sequence[float], costs: Sequence[float]) -> list[int]:
    """Each point's front (0: the Pareto front) for a larger gain and a smaller cost being better.

    A point dominates another when it is at least as good on both and strictly better on one; equal points
    share a front. Its front is one more than the highest front of the points that dominate it. In
    O(n log n): points in order of gain (best first, then cheaper first); `lowest[f]`, the lowest cost seen
    on front f among points of strictly greater gain, never decreases with f, so a point's front among
    those is found by bisection; among points of the same gain only the strictly cheaper ones dominate it.
    """
    order = sorted(range(len(gains)), key=lambda i: (-gains[i], costs[i]))
    layers = [0] * len(gains)
    lowest: list[float] = []
    for _, group in itertools.groupby(order, key=lambda i: gains[i]):
        members = list(group)  # cheapest first
        above = -1  # the highest front of a strictly cheaper member of the group seen so far
        for cost, same in itertools.groupby(members, key=lambda i: costs[i]):
            tied = list(same)
            front = max(bisect.bisect_right(lowest, cost), above + 1)
            for i in tied:
                layers[i] = front
            above = max(above, front)
        for i in members:  # commit the group: it dominates only points of lower gain
            front, cost = layers[i], costs[i]
            if front == len(lowest):
                lowest.append(cost)
            else:
                lowest[front] = min(lowest[front], cost)
    return layers


def choose(
    selection: Selection,
    probes: Sequence[ProbeRecord],
    objective: Objective,
    *,
    higher_is_better: bool,
    k: int,
    estimates: Mapping[str, tuple[float, float]] | None = None,
) -> Recommendation | None:
    """The model to take under the objective; None when no model is left. `estimates`: a probed model's
    posterior (score, sd) under noisy probes (`recommend_one`).

    Best score: the rule of `recommendation.py` (a measured model when it beat every prediction). Pareto:
    that rule among the front, so the pick is never dominated. Per cost: the top of the ranking, with its
    measured score when a probe measured it in the library's metric.
    """
    ranking = selection.ranking
    if objective.kind == "score" or not ranking:
        return recommend_one(ranking, probes, higher_is_better=higher_is_better, k=k, estimates=estimates)
    if objective.kind == "pareto":
        front = [p for p in ranking if p.model_id in selection.front]  # the ranking's first places
        pick = recommend_one(front, probes, higher_is_better=higher_is_better, k=k, estimates=estimates)
        assert pick is not None  # a non-empty ranking has a front
        reason = f"{pick.reason}; the best score on the Pareto front of score against {COST_WORDS[objective.cost]}"
        return Recommendation(pick.model_id, pick.measured, pick.score, reason)
    top = ranking[0]
    values = [p.value for p in probes if p.probe == MEASURED and p.model_id == top.model_id]
    _, unit = COST_UNITS[objective.cost]
    value = selection.values[top.model_id]
    reason = f"the best predicted score per {unit}: {value:.4g} per {unit} (predicted {top.score:.3f})"
    if values:
        measured = sum(values) / len(values)
        return Recommendation(top.model_id, True, measured, f"{reason}; measured {measured:.3f} on your data")
    return Recommendation(top.model_id, False, top.score, reason)


def removals(
    selection: Selection,
    shown: Sequence[str],
    top_score: float | None,
    objective: Objective,
    constraints: Constraints,
    sources: Mapping[str, str],
    *,
    sign: float,
    k: int,
) -> list[Removal]:
    """What each limit and the objective kept out of an answer that shows `shown` with a top pick predicted
    at `top_score` (None: no model left)."""
    found = []
    for name in LIMITS:
        if selection.removed.get(name):
            label = f"{name} {_limit(constraints, name)}".rstrip()
            source = sources.get(name, "request")
            if source != "request":
                label += f" ({source})"
            found.append(_removal(name, source, selection.removed[name], f"{label} removed", top_score, sign))
    name = objective_name(objective)
    if selection.missing_cost:
        cost = COST_WORDS[objective.cost]
        found.append(
            _removal(
                "missing-cost",
                name,
                selection.missing_cost,
                f"no recorded {cost}, so left out of the {name} ranking (never ranked as free):",
                top_score,
                sign,
            )
        )
    if objective.kind != "score":
        costed = set(p.model_id for p in selection.ranking)
        by_score = [p for p in selection.by_score if p.model_id in costed][:k]
        passed = [p for p in by_score if p.model_id not in set(shown)]
        if passed:
            found.append(
                _removal(
                    "objective", name, passed, f"objective {name} left out, of the best-score top {k},", top_score, sign
                )
            )
    return found


def _limit(constraints: Constraints, name: str) -> str:
    value = {
        "max-train-seconds": constraints.max_train_seconds,
        "max-inference-seconds": constraints.max_inference_seconds,
        "max-memory-bytes": constraints.max_memory_bytes,
    }.get(name)
    return f"{value:g}" if value else ""


def _removal(
    reason: str, source: str, models: list[Prediction], what: str, top_score: float | None, sign: float
) -> Removal:
    best = models[0].score  # best first
    if top_score is None:
        better = len(models)
        text = f"{what} {_count(models)} scoring up to {best:.3f} (no model left)"
    else:
        better = sum(1 for p in models if sign * (p.score - top_score) > 0)
        text = f"{what} {_count(models)} scoring up to {best:.3f} (top pick {top_score:.3f})"
        text += f", {better} of them predicted better" if better else ", none predicted better"
    ids = [p.model_id for p in models[:NAMED_IDS]]
    if reason == "missing-cost":
        text += ": " + ", ".join(ids) + (", …" if len(models) > NAMED_IDS else "")
    return Removal(reason, source, len(models), better, best, ids, text)


def _count(models: list[Prediction]) -> str:
    return f"{len(models)} model" + ("s" if len(models) != 1 else "")
