"""The one model a search advises taking with the measurements it has, and the reason.

A probe of kind "score" measured the library's own metric on a sample of the query's data; every other
score of a ranking is a prediction. A probe on a sample is noisy (TabZoo: sd ~0.06 on the record's scale), so
where the search has the posterior under its probes (`estimates`: `policy.posterior`, the reading shrunk toward
the model's prediction by the probe's noise) a probed model is weighed by its estimate, not its raw reading: a
lucky reading does not beat a confident prediction (the winner's curse). The rule: when the probed model of best
estimate beats every prediction for a model that was not probed (strictly: a tie goes to the ranking), take it;
otherwise take the ranking's top-1, saying whether it was probed and naming a probe that came within the
prediction's uncertainty. Without `estimates` (an estimator with no library behaviour to condition on) a
probed model is weighed by its reading, as before. Agreement probes (XRD
finders agreeing with their consensus) rank finders but are not the library's metric: they never count as
measured, so with those alone (or no probes) the top-1 is taken.

The comparison runs over the whole ranking the constraints allow, not only the top-k, so "better than any
prediction" holds literally; a measured model recommended from below the top-k takes the answer's last
place (`answer_positions`), and its reason says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modsnet.data.graph import Recommendation

from .estimators.base import Prediction, ProbeRecord
from .probes import MEASURED


def recommend_one(
    ranking: Sequence[Prediction],
    probes: Sequence[ProbeRecord],
    *,
    higher_is_better: bool,
    k: int,
    estimates: Mapping[str, tuple[float, float]] | None = None,
) -> Recommendation | None:
    """The model to take from `ranking` (best first, the models the constraints allow), given the query's
    probes; None for an empty ranking. `k` is how many models the answer shows. `estimates`: a probed model's
    posterior (score, sd) given the probes as noisy readings; a probed model without one is weighed by its
    reading."""
    if not ranking:
        return None
    sign = 1.0 if higher_is_better else -1.0
    place = {p.model_id: i for i, p in enumerate(ranking)}
    read, shifted = _measured(probes, place)
    estimates = estimates or {}
    # What each probed model is weighed by: its posterior estimate where known, else its reading.
    measured = {m: estimates[m][0] if m in estimates else v for m, v in read.items()}

    def said(model_id: str) -> str:  # a probe in words: what it read, on the records' scale, and the estimate
        value = read[model_id]
        notes = [f"{_fmt(value)} on the library's record scale"] if shifted.get(model_id) else []
        estimate, sd = estimates.get(model_id, (value, 0.0))
        if _fmt(estimate) != _fmt(value) or _fmt(sd) != _fmt(0.0):  # not where the noise is below what is shown
            notes.append(f"estimated {_fmt(estimate)} ± {_fmt(sd)} with the probe's noise")
        text = _fmt(value - shifted.get(model_id, 0.0))
        return f"{text} ({'; '.join(notes)})" if notes else text

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
