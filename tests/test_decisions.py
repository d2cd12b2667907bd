"""Decisions at a budget: the regret of what a user ends up with, per strategy (recommender decisions)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from services.recommender.decisions import (
    MODSNET,
    MODSNET_TOP,
    POPULAR,
    RANDOM,
    Ranking,
    decision_table,
    expected_random_regret,
    pick_regret,
)

TRUE = {"a": 0.9, "b": 0.8, "c": 0.5, "d": 0.1}
PREDICTED = {"c": 1.0, "d": 0.5, "a": 0.2, "b": 0.0}


def test_no_budget_trusts_the_predicted_best_unmeasured() -> None:
    assert pick_regret(TRUE, Ranking(PREDICTED), 0) == pytest.approx(0.4)


def test_a_budget_measures_the_predicted_best_in_order_and_keeps_the_best_measured() -> None:
    assert pick_regret(TRUE, Ranking(PREDICTED), 1) == pytest.approx(0.4)
    assert pick_regret(TRUE, Ranking(PREDICTED), 2) == pytest.approx(0.4)  # c, d
    assert pick_regret(TRUE, Ranking(PREDICTED), 3) == pytest.approx(0.0)  # c, d, a


def test_probes_count_as_measurements_and_the_rest_go_to_the_best_unprobed_prediction() -> None:
    probed = Ranking(PREDICTED, frozenset({"b", "d"}))
    assert pick_regret(TRUE, probed, 3) == pytest.approx(0.1)  # b, d probed, then c: best measured is b
    assert pick_regret(TRUE, Ranking(PREDICTED, frozenset({"a"})), 1) == pytest.approx(0.0)


def test_lower_is_better_metrics_flip_the_sign() -> None:
    errors = {"a": 0.1, "b": 0.2, "c": 0.5}
    assert pick_regret(errors, Ranking({"c": 1.0, "a": 0.0, "b": 0.5}), 0, sign=-1.0) == pytest.approx(0.4)
    assert expected_random_regret(errors, 1, sign=-1.0) == pytest.approx(np.mean([0.0, 0.1, 0.4]))


@pytest.mark.parametrize("budget", [0, 1, 2, 3, 4, 6])
def test_random_regret_is_the_exact_mean_over_every_draw(budget: int) -> None:
    draws = max(1, min(budget, len(TRUE)))
    regrets = [0.9 - max(TRUE[m] for m in pick) for pick in itertools.combinations(TRUE, draws)]
    assert expected_random_regret(TRUE, budget) == pytest.approx(np.mean(regrets))


def test_a_nan_prediction_ranks_last() -> None:
    assert pick_regret(TRUE, Ranking({"a": float("nan"), "b": 0.1, "c": 0.0, "d": -1.0}), 0) == pytest.approx(0.1)


def test_the_table_has_every_strategy_budget_and_target_with_wins_and_the_worst_target() -> None:
    truth = {"t1": TRUE, "t2": {"a": 0.2, "b": 0.3, "c": 0.9, "d": 0.8}}
    popularity = {"a": 1.0, "b": 0.5, "c": 0.0, "d": -0.5}  # a, b, c, d
    cold = {"t1": PREDICTED, "t2": {"c": 1.0, "d": 0.9, "a": 0.0, "b": 0.0}}
    adaptive = {3: {"t1": Ranking(PREDICTED, frozenset({"b", "d"})), "t2": Ranking(cold["t2"], frozenset({"a", "b"}))}}
    table = decision_table(
        truth, popularity={"t1": popularity, "t2": popularity}, cold=cold, adaptive=adaptive, budgets=(0, 1, 3)
    )
    assert set(table.regret) == {MODSNET, MODSNET_TOP, POPULAR, RANDOM}
    assert table.regret[POPULAR][0] == pytest.approx({"t1": 0.0, "t2": 0.7})
    assert table.regret[MODSNET_TOP][0] == pytest.approx({"t1": 0.4, "t2": 0.0})
    assert table.regret[MODSNET][3] == pytest.approx({"t1": 0.1, "t2": 0.0})  # B=3 from the adaptive run
    assert table.regret[MODSNET][1] == table.regret[MODSNET_TOP][1]  # B<=1 falls back to the cold ranking
    assert table.mean(POPULAR, 0) == pytest.approx(0.35)
    assert table.worst(POPULAR, 0) == ("t2", pytest.approx(0.7))
    assert table.wins(MODSNET_TOP, POPULAR, 0) == (1, 1)
    text = table.to_table()
    assert "| popular-B | 0.350 | " in text and "worst target, popular-B: B=0 t2 0.700" in text
    assert table.to_dict()["mean"][MODSNET]["3"] == pytest.approx(0.05)


def test_a_strategy_with_fewer_targets_is_compared_on_its_own_targets() -> None:
    """Where the adaptive run measured only some targets (TransferGraph: probes that are LogME on the others), its
    mean says how many it covers and popular-B's mean on those same targets, not popular-B's whole row."""
    truth = {"t1": TRUE, "t2": {"a": 0.2, "b": 0.3, "c": 0.9, "d": 0.8}}
    popularity = {"d": 1.0, "c": 0.5, "b": 0.0, "a": -0.5}  # d, c, b: t1 keeps b (0.1 below a), t2 keeps c
    adaptive = {3: {"t2": Ranking({"c": 1.0, "d": 0.9, "a": 0.0, "b": 0.0}, frozenset({"a", "b"}))}}
    table = decision_table(truth, popularity={"t1": popularity, "t2": popularity}, adaptive=adaptive, budgets=(3,))
    assert table.mean(POPULAR, 3) == pytest.approx(0.05) and table.mean_over(POPULAR, 3, ["t2"]) == pytest.approx(0.0)
    assert table.to_dict()["targets"] == {MODSNET: {"3": 1}, POPULAR: {"3": 2}, RANDOM: {"3": 2}}
    row = next(line for line in table.to_table().splitlines() if line.startswith(f"| {MODSNET} |"))
    assert "[1 of 2 targets; popular-B 0.000 on them]" in row
    assert "targets;" not in next(line for line in table.to_table().splitlines() if line.startswith(f"| {POPULAR} |"))


def _posterior(prior: dict[str, float], probed: dict[str, float]):  # type: ignore[no-untyped-def]
    """A toy posterior: a probed model's estimate is `probed`, a model measured in full is its score; sd 0.01."""

    def after(full):  # type: ignore[no-untyped-def]
        mean = {**prior, **probed, **full}
        return mean, {m: 0.0 if m in full else 0.01 for m in mean}

    return after


def test_the_last_measurement_can_go_to_a_probed_model_and_the_kept_one_is_by_its_estimate() -> None:
    true = {"a": 0.70, "b": 0.90, "c": 0.85}
    # b was probed (an unlucky reading 0.84, estimated 0.88 from a high prediction): its estimate is the best, so
    # the last measurement is b in full (0.90), kept.
    after = _posterior({"a": 0.80, "b": 0.95, "c": 0.82}, {"b": 0.88})
    ranking = Ranking(after({})[0], frozenset({"b"}), {"b": 0.84}, posterior=after)
    assert pick_regret(true, ranking, 2) == pytest.approx(0.0)
    # The rule before: the last measurement goes to the best unprobed (c, 0.85), which beats b's reading: c kept.
    assert pick_regret(true, Ranking(after({})[0], frozenset({"b"}), {"b": 0.84}), 2) == pytest.approx(0.05)
    # A lucky reading: a probed, truly poor model (a: 0.70) read 0.99, estimated 0.83; c measured in full at 0.85
    # beats the estimate, so c is kept; the rule before kept a by its reading.
    after = _posterior({"a": 0.80, "b": 0.70, "c": 0.84}, {"a": 0.83})
    ranking = Ranking(after({})[0], frozenset({"a"}), {"a": 0.99}, posterior=after)
    assert pick_regret(true, ranking, 2) == pytest.approx(0.05)
    assert pick_regret(true, Ranking(after({})[0], frozenset({"a"}), {"a": 0.99}), 2) == pytest.approx(0.20)


def test_the_last_measurement_goes_where_it_ends_best_in_expectation(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.recommender import decisions

    # b probed, estimated 0.88 ± 0.01; c unprobed, 0.86 ± 0.05 and truly the best (0.95).
    true = {"a": 0.70, "b": 0.90, "c": 0.95}
    after = _posterior({"a": 0.80, "b": 0.95, "c": 0.86}, {"b": 0.88})

    def wide(full):  # type: ignore[no-untyped-def]
        mean, sd = after(full)
        return mean, {**sd, "c": 0.0 if "c" in full else 0.05}

    ranking = Ranking(after({})[0], frozenset({"b"}), {"b": 0.84}, posterior=wide)
    # By value: b's estimate is in hand already, so measuring c (E[max(c, 0.88)] > 0.88) is worth more: c kept.
    monkeypatch.setattr(decisions, "FINAL", decisions.VALUE)
    assert pick_regret(true, ranking, 2) == pytest.approx(0.0)
    # By the best posterior mean: b is measured in full (a probed model can take the last measurement), kept.
    monkeypatch.setattr(decisions, "FINAL", decisions.MEAN)
    assert pick_regret(true, ranking, 2) == pytest.approx(0.05)
