"""The one model a search advises taking with the measurements it has, and the reason.

A probe of kind "score" measured the library's own metric on a sample of the query's data; every other
score of a ranking is a prediction. The rule: when the best measured model beats every prediction for a
model that was not measured (strictly: a tie goes to the ranking), take the measured one, since a
measurement in hand beats a forecast that is no better; otherwise take the ranking's top-1, saying whether
it was measured and naming a probe that came within the prediction's uncertainty. Agreement probes (XRD
finders agreeing with their consensus) rank finders but are not the library's metric: they never count as
measured, so with those alone (or no probes) the top-1 is taken.

The comparison runs over the whole ranking the constraints allow, not only the top-k, so "better than any
prediction" holds literally; a measured model recommended from below the top-k takes the answer's last
place (`answer_positions`), and its reason says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from modsnet.data.graph import Recommendation

from .estimators.base import Prediction, ProbeRecord
from .probes import MEASURED


def recommend_one(
    ranking: Sequence[Prediction],
    probes: Sequence[ProbeRecord],
    *,
    higher_is_better: bool,
    k: int,
) -> Recommendation | None:
    """The model to take from `ranking` (best first, the models the constraints allow), given the query's
    probes; None for an empty ranking. `k` is how many models the answer shows."""
    if not ranking:
        return None
    sign = 1.0 if higher_is_better else -1.0
    place = {p.model_id: i for i, p in enumerate(ranking)}
    measured, shifted = _measured(probes, place)

    def said(model_id: str) -> str:  # a measurement in words: what the probe read, and on the records' scale
        if not shifted.get(model_id):
            return _fmt(measured[model_id])
        read = measured[model_id] - shifted[model_id]
        return f"{_fmt(read)} ({_fmt(measured[model_id])} on the library's record scale)"

    # The best measurement (equal ones go to the model ranked higher) and the best prediction.
    best = min(measured, key=lambda m: (-sign * measured[m], place[m])) if measured else None
    unmeasured = next((p for p in ranking if p.model_id not in measured), None)
    if best is not None and (unmeasured is None or sign * measured[best] > sign * unmeasured.score):
        than = (
            f"better than any prediction (best predicted {_fmt(unmeasured.score)} for {unmeasured.model_id})"
            if unmeasured is not None
            else "and every model left was probed"
        )
        reason = f"measured {said(best)} on your data, {than}"
        if place[best] >= k:
            reason += (
                f"; ranked #{place[best] + 1} by the estimator, below the top {k} asked for, "
                "it takes the answer's last place"
            )
        return Recommendation(best, True, measured[best], reason)
    top = ranking[0]
    if top.model_id in measured and unmeasured is not None:
        # A tie with the best prediction, or an estimator that ranks a probed model by its prediction.
        value = measured[top.model_id]
        versus = "as good as" if value == unmeasured.score else "below"
        reason = (
            f"top of the ranking, measured {said(top.model_id)} on your data, {versus} the best prediction "
            f"({_fmt(unmeasured.score)} for {unmeasured.model_id})"
        )
        return Recommendation(top.model_id, True, value, reason)
    if top.uncertainty > 0:
        first = f"top of the ranking: predicted {_fmt(top.score)} ± {_fmt(top.uncertainty)}"
    else:  # a score the estimator is sure of (a record of a known dataset): its own words say which
        first = f"top of the ranking: {top.explanation or _fmt(top.score)}"
    if best is not None:
        probe = f"measured {said(best)} for {best}"
        gap = sign * (top.score - measured[best])
        probe = (
            f"a probe {probe}, within the prediction's uncertainty"
            if gap <= top.uncertainty
            else f"the best probe {probe}"
        )
        return Recommendation(top.model_id, False, top.score, f"{first}, not measured here; {probe}")
    others = sorted({p.probe for p in probes if p.probe != MEASURED})
    if any(p.probe == MEASURED for p in probes):
        why = "the models probed in the library's metric are left out by the constraints"
    elif others:
        why = f"the probes measured {', '.join(others)}, not the library's metric, so nothing was measured in it"
    else:
        why = "no probe measured the library's metric on your data"
    return Recommendation(top.model_id, False, top.score, f"{first}; {why}")


def answer_positions(count: int, k: int, keep: int | None) -> list[int]:
    """Positions (0-based, into a ranking of `count`) of the answer's models: the top `k`, with `keep`
    (the recommended model) in the last place when it ranks below them."""
    shown = list(range(min(k, count)))
    if keep is not None and keep >= len(shown) and shown:
        shown[-1] = keep
    return shown


def _measured(probes: Sequence[ProbeRecord], ranked: dict[str, int]) -> tuple[dict[str, float], dict[str, float]]:
    """Model -> its score measured by probes in the library's metric (the mean of several), for models of
    the ranking only: one the constraints left out is not to be recommended; and model -> the mean of what was
    added to its readings to put them on the library's record scale (`ProbeRecord.to_record_scale`)."""
    values: dict[str, list[float]] = {}
    shifts: dict[str, list[float]] = {}
    for p in probes:
        if p.probe == MEASURED and p.model_id in ranked:
            values.setdefault(p.model_id, []).append(p.value)
            shifts.setdefault(p.model_id, []).append(p.to_record_scale)
    return {m: sum(v) / len(v) for m, v in values.items()}, {m: sum(v) / len(v) for m, v in shifts.items()}


def _fmt(score: float) -> str:
    return f"{score:.3f}" if abs(score) < 1000 else f"{score:.4g}"
