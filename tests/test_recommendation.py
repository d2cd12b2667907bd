"""The recommendation rule: a model measured by a probe is taken only when it beat every prediction."""

from __future__ import annotations

import pytest

from modsnet.data.graph import QUERY_DATASET, ProbeRecord
from modsnet.data.probe_scale import ProbeScale, on_record_scale
from services.recommender.estimators.base import Prediction
from services.recommender.recommendation import answer_positions, recommend_one


def ranking(*scores: tuple[str, float], uncertainty: float = 0.02) -> list[Prediction]:
    return [Prediction(model_id, score, uncertainty) for model_id, score in scores]


def probe(model_id: str, value: float, kind: str = "score") -> ProbeRecord:
    return ProbeRecord(model_id, QUERY_DATASET, kind, value)


def test_a_measurement_better_than_every_prediction_is_recommended() -> None:
    # As the GNN ranks: a probed model's score is its measurement, so it tops the ranking.
    ranked = ranking(("m2", 0.91), ("m7", 0.88), ("m1", 0.80))
    pick = recommend_one(ranked, [probe("m2", 0.91), probe("m1", 0.80)], higher_is_better=True, k=3)
    assert pick is not None
    assert (pick.model_id, pick.measured, pick.score) == ("m2", True, 0.91)
    assert pick.reason == "measured 0.910 on your data, better than any prediction (best predicted 0.880 for m7)"


def test_a_prediction_better_than_every_measurement_is_recommended_and_not_called_measured() -> None:
    ranked = ranking(("m7", 0.88), ("m2", 0.85), ("m1", 0.80), uncertainty=0.01)
    pick = recommend_one(ranked, [probe("m2", 0.85), probe("m1", 0.80)], higher_is_better=True, k=3)
    assert pick is not None
    assert (pick.model_id, pick.measured, pick.score) == ("m7", False, 0.88)
    assert pick.reason.startswith("top of the ranking: predicted 0.880 ± 0.010, not measured here")
    # 0.03 below a prediction of ± 0.01: not close, named as the best probe only.
    assert pick.reason.endswith("the best probe measured 0.850 for m2")


def test_a_probe_within_the_predictions_uncertainty_is_named_as_close() -> None:
    ranked = ranking(("m7", 0.88), ("m2", 0.87), uncertainty=0.02)
    pick = recommend_one(ranked, [probe("m2", 0.87)], higher_is_better=True, k=2)
    assert pick is not None and pick.model_id == "m7" and not pick.measured
    assert pick.reason.endswith("a probe measured 0.870 for m2, within the prediction's uncertainty")


def test_lower_is_better_compares_the_other_way() -> None:
    # An error metric: the ranking is lowest first, and a measured 0.10 beats a predicted 0.12.
    ranked = ranking(("m2", 0.10), ("m7", 0.12), ("m1", 0.30))
    pick = recommend_one(ranked, [probe("m2", 0.10), probe("m1", 0.30)], higher_is_better=False, k=3)
    assert pick is not None and (pick.model_id, pick.measured) == ("m2", True)
    assert "best predicted 0.120 for m7" in pick.reason
    # Ranked by prediction only: a measured 0.10 beats the predicted 0.12, a measured 0.30 does not.
    ranked = ranking(("m7", 0.12), ("m2", 0.10), ("m1", 0.30))
    pick = recommend_one(ranked, [probe("m2", 0.10)], higher_is_better=False, k=3)
    assert pick is not None and (pick.model_id, pick.measured) == ("m2", True)
    pick = recommend_one(ranked, [probe("m1", 0.30)], higher_is_better=False, k=3)
    assert pick is not None and (pick.model_id, pick.measured) == ("m7", False)


def test_agreement_probes_never_count_as_measured() -> None:
    # XRD finders: a high agreement is no score in the library's metric, however high.
    ranked = ranking(("f3", 0.70), ("f1", 0.65))
    pick = recommend_one(
        ranked, [probe("f1", 0.99, "agreement"), probe("f3", 0.5, "agreement")], higher_is_better=True, k=2
    )
    assert pick is not None and (pick.model_id, pick.measured, pick.score) == ("f3", False, 0.70)
    assert "the probes measured agreement, not the library's metric" in pick.reason


def test_without_probes_the_top_1_is_recommended_saying_so() -> None:
    pick = recommend_one(ranking(("m7", 0.88), ("m2", 0.85)), [], higher_is_better=True, k=1)
    assert pick is not None and (pick.model_id, pick.measured) == ("m7", False)
    assert (
        pick.reason
        == "top of the ranking: predicted 0.880 ± 0.020; no probe measured the library's metric on your data"
    )
    assert recommend_one([], [probe("m2", 0.9)], higher_is_better=True, k=3) is None


def test_a_tie_with_the_best_prediction_goes_to_the_ranking() -> None:
    # Measured 0.88 = predicted 0.88: no better, so the top-1 stands (measured, as it happens).
    ranked = ranking(("m2", 0.88), ("m7", 0.88))
    pick = recommend_one(ranked, [probe("m2", 0.88)], higher_is_better=True, k=2)
    assert pick is not None and (pick.model_id, pick.measured) == ("m2", True)
    assert "as good as the best prediction (0.880 for m7)" in pick.reason
    ranked = ranking(("m7", 0.88), ("m2", 0.88))
    pick = recommend_one(ranked, [probe("m2", 0.88)], higher_is_better=True, k=2)
    assert pick is not None and (pick.model_id, pick.measured) == ("m7", False)
    # Two equal measurements, both better than any prediction: the one ranked higher.
    ranked = ranking(("m4", 0.9), ("m2", 0.9), ("m7", 0.8))
    pick = recommend_one(ranked, [probe("m2", 0.9), probe("m4", 0.9)], higher_is_better=True, k=3)
    assert pick is not None and pick.model_id == "m4"


def test_a_measured_model_below_the_top_k_is_recommended_and_takes_the_last_place() -> None:
    # An estimator that ranks by prediction only (kNN): m5 predicted low, measured higher than anything.
    ranked = ranking(("m1", 0.84), ("m2", 0.83), ("m3", 0.82), ("m4", 0.81), ("m5", 0.70))
    pick = recommend_one(ranked, [probe("m5", 0.90)], higher_is_better=True, k=3)
    assert pick is not None and (pick.model_id, pick.measured, pick.score) == ("m5", True, 0.90)
    assert pick.reason.endswith(
        "ranked #5 by the estimator, below the top 3 asked for, it takes the answer's last place"
    )
    assert answer_positions(len(ranked), 3, 4) == [0, 1, 4]
    assert answer_positions(len(ranked), 3, 1) == [0, 1, 2]
    assert answer_positions(2, 3, None) == [0, 1]


def test_probes_of_models_outside_the_ranking_are_ignored_and_several_are_averaged() -> None:
    # m9 was left out by the constraints: its measurement cannot be recommended.
    ranked = ranking(("m7", 0.88), ("m2", 0.80))
    pick = recommend_one(ranked, [probe("m9", 0.99)], higher_is_better=True, k=2)
    assert pick is not None and pick.model_id == "m7" and "left out by the constraints" in pick.reason
    pick = recommend_one(ranked, [probe("m2", 0.96), probe("m2", 0.86)], higher_is_better=True, k=2)
    assert pick is not None and (pick.model_id, pick.score) == ("m2", pytest.approx(0.91))


def test_every_model_measured_recommends_the_best_measurement() -> None:
    ranked = ranking(("m2", 0.91), ("m1", 0.80))
    pick = recommend_one(ranked, [probe("m1", 0.80), probe("m2", 0.91)], higher_is_better=True, k=2)
    assert pick is not None and pick.model_id == "m2"
    assert pick.reason == "measured 0.910 on your data, and every model left was probed"


def test_a_probe_put_on_the_records_scale_is_told_as_read_and_as_corrected() -> None:
    # The library's probe records taught it that a sample probe reads 0.015 low (`modsnet.data.probe_scale`): the
    # recommendation weighs the corrected value but tells the user what the probe read, as the answer lists it.
    scale = ProbeScale(shift=-0.015, sd=0.06, datasets=28, pairs=4251)
    corrected = on_record_scale(scale, [probe("m2", 0.653)])
    ranked = ranking(("m7", 0.673), ("m2", 0.668), uncertainty=0.1)
    pick = recommend_one(ranked, corrected, higher_is_better=True, k=2)
    assert pick is not None and pick.model_id == "m7" and not pick.measured
    assert pick.reason.endswith(
        "a probe measured 0.653 (0.668 on the library's record scale) for m2, within the prediction's uncertainty"
    )
    measured = recommend_one(ranking(("m2", 0.668), ("m7", 0.660)), corrected, higher_is_better=True, k=2)
    assert measured is not None and measured.measured and measured.score == pytest.approx(0.668)
    assert measured.reason.startswith("measured 0.653 (0.668 on the library's record scale) on your data")


def test_a_lucky_reading_weighed_by_its_estimate_no_longer_beats_a_confident_prediction() -> None:
    # m2 read a lucky 0.95 on a sample; the search's posterior (`policy.posterior`) puts it at 0.83 ± 0.027, below
    # m7's confident prediction 0.88 ± 0.01: m7 is the one to take, and the reason names the reading and estimate.
    ranked = [Prediction("m7", 0.88, 0.01), Prediction("m2", 0.83, 0.027), Prediction("m1", 0.70, 0.02)]
    estimates = {"m2": (0.83, 0.027)}
    pick = recommend_one(ranked, [probe("m2", 0.95)], higher_is_better=True, k=3, estimates=estimates)
    assert pick is not None and (pick.model_id, pick.measured) == ("m7", False)
    assert pick.reason.endswith("the best probe measured 0.950 (estimated 0.830 ± 0.027 with the probe's noise) for m2")
    # Its estimate above every prediction: the probed model is taken, at its estimate, not its reading.
    ranked = [Prediction("m2", 0.90, 0.027), Prediction("m7", 0.88, 0.01)]
    pick = recommend_one(ranked, [probe("m2", 0.95)], higher_is_better=True, k=2, estimates={"m2": (0.90, 0.027)})
    assert pick is not None and (pick.model_id, pick.measured, pick.score) == ("m2", True, 0.90)
    assert pick.reason.startswith("measured 0.950 (estimated 0.900 ± 0.027 with the probe's noise) on your data")
