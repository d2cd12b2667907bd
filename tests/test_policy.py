"""The adaptive probing policy (`services/recommender/policy.py`) on a small estimator with known behaviour."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

import numpy as np
import pytest

from modsnet.data.graph import QUERY_DATASET, ProbeRecord
from services.recommender import policy
from services.recommender.estimators.base import Prediction, Scored
from services.recommender.estimators.matrix import ScoreMatrix


class Fake:
    """Prior scores per model; a measured probe of model m moves every model of m's group by its surprise, and
    the selector's diverse batch is a fixed list (as a real selector's is for one query)."""

    def __init__(self, prior: dict[str, float], groups: dict[str, str], batch: list[str], sd: float = 0.05):
        self.model_ids = list(prior)
        self.prior, self.groups, self.batch, self.sd = prior, groups, batch, sd
        self.sign = 1.0
        self.truth: dict[str, float] = {}
        self.seen: list[list[str]] = []  # the probes each score_all was given

    def select_probes(
        self,
        features: dict[str, float],
        *,
        known_dataset: str | None = None,
        budget: int = 5,
        among: Collection[str] | None = None,
    ) -> list[str]:
        return [m for m in self.batch if among is None or m in among][:budget]

    def score_all(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> Scored:
        self.seen.append([p.model_id for p in probes])
        scores = dict(self.prior)
        for p in probes:
            shift = p.value - self.prior[p.model_id]
            for m in scores:
                if self.groups[m] == self.groups[p.model_id]:
                    scores[m] = self.prior[m] + shift
        spread = {m: 0.0 if m in {p.model_id for p in probes} else self.sd for m in scores}
        for p in probes:
            scores[p.model_id] = p.value
        vector = np.array([scores[m] for m in self.model_ids])
        sd = np.array([spread[m] for m in self.model_ids])
        return Scored(vector, sd, lambda j: Prediction(self.model_ids[j], float(vector[j]), float(sd[j])))

    def measure(self, model_ids: list[str]) -> list[ProbeRecord]:
        return [ProbeRecord(m, QUERY_DATASET, "score", self.truth[m]) for m in model_ids if m in self.truth]


def fake() -> Fake:
    # Group a looks best a priori; on this query group b is far better (b2 best of all).
    prior = {"a1": 0.80, "a2": 0.79, "b1": 0.70, "b2": 0.69, "c1": 0.60}
    groups = {"a1": "a", "a2": "a", "b1": "b", "b2": "b", "c1": "c"}
    estimator = Fake(prior, groups, batch=["b1", "a1", "c1"])
    estimator.truth = {"a1": 0.60, "a2": 0.59, "b1": 0.90, "b2": 0.95, "c1": 0.50}
    return estimator


def test_the_first_probe_is_the_selectors_and_later_ones_are_greedy_given_the_results() -> None:
    estimator = fake()
    taken = policy.simulate(estimator, {}, estimator.measure, budget=2, informative=1)
    # b1 (the selector's first) measured 0.90: its group rises above a, so the next pick is b2, not a1.
    assert [p.model_id for p in taken] == ["b1", "b2"]
    assert estimator.seen[-1] == ["b1"]  # the second choice was made given the first result


def test_pure_greedy_follows_the_predictions_and_a_first_round_of_several_is_the_selectors_batch() -> None:
    estimator = fake()
    assert [p.model_id for p in policy.simulate(estimator, {}, estimator.measure, budget=2, informative=0)] == [
        "a1",
        "b1",  # a1 measured 0.60 drags a2 down to 0.59: b1 (0.70) is the best prediction left
    ]
    estimator = fake()
    first = policy.next_probes(estimator, {}, count=2, informative=1)
    assert first.model_ids == ["b1", "a1"]  # measured together, chosen together: the diverse batch


def test_measured_and_tried_models_are_never_asked_again_and_among_limits_the_choice() -> None:
    estimator = fake()
    estimator.sd = 0.5  # unsure enough that a probe below the best measured may still gain
    measured = [ProbeRecord("b1", QUERY_DATASET, "score", 0.90)]
    step = policy.next_probes(estimator, {}, measured=measured, tried=["b2"], count=2, among={"a1", "b1", "b2", "c1"})
    assert step.model_ids == ["a1", "c1"]
    assert step.expected_gain >= 0.0


def test_probing_stops_when_the_expected_gain_is_negligible() -> None:
    estimator = fake()
    measured = [ProbeRecord("c1", QUERY_DATASET, "score", 2.0)]  # far above every other model's prediction
    step = policy.next_probes(estimator, {}, measured=measured, informative=1)
    assert step.stop and step.model_ids == [] and "expected gain" in step.reason
    assert step.expected_gain < policy.MIN_GAIN
    # With a larger uncertainty the same gap is worth another probe.
    estimator.sd = 2.0
    assert policy.next_probes(estimator, {}, measured=measured, informative=1).model_ids
    # Nothing left to measure: stop, and say so.
    done = policy.next_probes(estimator, {}, measured=measured, among={"c1"})
    assert done.stop and "every model" in done.reason


def test_expected_improvement_is_the_normal_formula() -> None:
    ei = policy.expected_improvement(np.array([0.5, 0.5, 0.7]), np.array([0.1, 0.0, 0.0]), 0.6)
    z = -1.0
    normal = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    assert ei == pytest.approx([-0.1 * cdf + 0.1 * normal, 0.0, 0.1])


def test_correlation_with_matches_numpy_on_the_datasets_two_models_share() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(40, 4))
    z[:, 1] = z[:, 0] + 0.1 * rng.normal(size=40)
    z[5:9, 2] = np.nan
    got = policy.correlation_with(z, np.array([0]), shrink=0.0)
    shared = ~np.isnan(z[:, 2])
    assert got[1, 0] == pytest.approx(np.corrcoef(z[:, 0], z[:, 1])[0, 1])
    assert got[2, 0] == pytest.approx(np.corrcoef(z[shared, 0], z[shared, 2])[0, 1])
    assert policy.correlation_with(z[:5], np.array([0]))[1, 0] == 0.0  # too few datasets in common
    assert policy.correlation_with(z, np.array([0]), shrink=40.0)[1, 0] == pytest.approx(got[1, 0] / 2)


class Behaving(Fake):
    """A fake with library behaviour: a1 and a2 rise and fall together across datasets, b1 does the opposite."""

    def behaviour(self) -> np.ndarray:
        rng = np.random.default_rng(2)
        base = rng.normal(size=60)
        columns = {"a1": base, "a2": base + 0.05 * rng.normal(size=60), "b1": -base, "b2": rng.normal(size=60)}
        columns["c1"] = rng.normal(size=60)
        return np.column_stack([columns[m] for m in self.model_ids])


def test_conditioning_moves_models_with_the_probed_ones_surprise() -> None:
    estimator = Behaving(fake().prior, fake().groups, batch=["b1"], sd=0.1)
    index = {m: j for j, m in enumerate(estimator.model_ids)}
    low = [ProbeRecord("a1", QUERY_DATASET, "score", 0.50)]  # 0.30 below its prediction
    mean, sd, _ = policy._predicted(estimator, {}, None, low, index, condition=True, level=0.0)
    got = dict(zip(estimator.model_ids, mean, strict=True))
    # A probe is a noisy reading (here the NOISE share, 0.1, of the prediction's variance): the probed model's
    # posterior lies between its reading and its prediction, nearer the reading, and keeps an sd of its own.
    assert 0.50 < got["a1"] < 0.55 and 0.0 < sd[index["a1"]] < estimator.sd * math.sqrt(policy.NOISE)
    # A full measurement is exact: the model is its value.
    exact, exact_sd, _ = policy._predicted(estimator, {}, None, [], index, condition=True, level=0.0, exact=low)
    assert exact[index["a1"]] == 0.50 and exact_sd[index["a1"]] == 0.0
    assert got["a2"] < estimator.prior["a2"] - 0.2  # moves with a1
    assert got["b1"] > estimator.prior["b1"] + 0.2  # moves against it
    assert abs(got["c1"] - estimator.prior["c1"]) < 0.05  # unrelated: stays about put
    assert sd[index["a2"]] < estimator.sd  # and is surer for it
    # A level share moves every model a little the same way.
    level, _, _ = policy._predicted(estimator, {}, None, low, index, condition=True, level=0.5)
    assert level[index["c1"]] < estimator.prior["c1"] - 0.1
    # Off, the estimator's own prediction given the probes is used.
    own, _, _ = policy._predicted(estimator, {}, None, low, index, condition=False, level=0.0)
    assert own[index["a2"]] == pytest.approx(0.49)  # the fake's group shift


class Twins(Fake):
    """s1 and s2 rise and fall together across the library; a moves on its own."""

    def behaviour(self) -> np.ndarray:
        rng = np.random.default_rng(3)
        base = rng.normal(size=80)
        columns = {"a": rng.normal(size=80), "s1": base, "s2": base + 0.1 * rng.normal(size=80)}
        return np.column_stack([columns[m] for m in self.model_ids])

    def score_all(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> Scored:
        vector = np.array([self.prior[m] for m in self.model_ids])
        sd = np.array([0.001 if m == "a" else 0.2 for m in self.model_ids])  # a is near certain, s1 and s2 are not
        return Scored(vector, sd, lambda j: Prediction(self.model_ids[j], float(vector[j]), float(sd[j])))


def test_the_lookahead_probes_what_informs_the_final_pick_where_greedy_takes_the_predicted_best() -> None:
    estimator = Twins({"a": 0.90, "s1": 0.85, "s2": 0.85}, {"a": "a", "s1": "s", "s2": "s"}, batch=["a"])
    greedy = policy.next_probes(estimator, {}, informative=0, level=0.0, rule=policy.GREEDY)
    assert greedy.model_ids == ["a"]
    # Measuring a changes nothing (its score is all but known); measuring s1 tells whether s2 beats a, so the
    # final pick after it is better in expectation.
    look = policy.next_probes(estimator, {}, informative=0, level=0.0, rule=policy.LOOKAHEAD)
    assert look.model_ids[0] in {"s1", "s2"}
    with pytest.raises(ValueError, match="rule"):
        policy.next_probes(estimator, {}, informative=0, rule="random")


def test_exploit_value_is_the_expected_best_of_the_floor_and_the_predicted_best() -> None:
    mu, sd = np.array([0.5, 0.7]), np.array([0.3, 0.1])
    assert policy._exploit_value(mu, sd, -np.inf) == 0.7  # nothing measured: the predicted best's mean
    expected = 0.6 + float(policy.expected_improvement(mu[1:], sd[1:], 0.6)[0])
    assert policy._exploit_value(mu, sd, 0.6) == pytest.approx(expected)


class Lucky(Fake):
    """`hot` is predicted 0.80 ± 0.03 and `sure` 0.88 ± 0.01; a probe of `hot` on a sample (noise sd 0.06) reads a
    lucky 0.95. The library's behaviour: every model moves on its own."""

    def behaviour(self) -> np.ndarray:
        return np.random.default_rng(5).normal(size=(80, len(self.model_ids)))

    def score_all(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> Scored:
        vector = np.array([self.prior[m] for m in self.model_ids])
        sd = np.array([{"hot": 0.03, "sure": 0.01}.get(m, 0.05) for m in self.model_ids])
        return Scored(vector, sd, lambda j: Prediction(self.model_ids[j], float(vector[j]), float(sd[j])))


def lucky() -> Lucky:
    return Lucky({"sure": 0.88, "hot": 0.80, "low": 0.60}, {"sure": "s", "hot": "h", "low": "l"}, batch=["hot"])


def test_a_lucky_sample_reading_is_shrunk_below_a_confident_prediction() -> None:
    estimator = lucky()
    index = {m: j for j, m in enumerate(estimator.model_ids)}
    read = [ProbeRecord("hot", QUERY_DATASET, "score", 0.95)]
    mean, sd, _ = policy._predicted(estimator, {}, None, read, index, condition=True, level=0.0, noise_sd=0.06)
    # The posterior of `hot`: 0.80 + 0.03² / (0.03² + 0.06²) x 0.15 = 0.83, below `sure`'s 0.88; its sd stays > 0.
    assert mean[index["hot"]] == pytest.approx(0.83, abs=1e-3) and mean[index["hot"]] < mean[index["sure"]]
    assert 0.0 < sd[index["hot"]] < 0.03
    # The probing loop: the best probed is weighed by its posterior (0.83), so the next probe goes to `sure`.
    step = policy.next_probes(estimator, {}, measured=read, informative=0, noise_sd=0.06, level=0.0)
    assert step.model_ids == ["sure"] and not step.stop


def test_a_level_every_probe_shares_says_little_of_which_model_is_better() -> None:
    # Two models read 0.1 above their predictions: with the noise a shared level (a sample easier than the table),
    # most of it is the sample's, and the two stay close to their predictions; as each probe's own noise of the
    # same total size, each keeps more of its surprise.
    estimator = Lucky({"a": 0.70, "b": 0.70, "c": 0.60}, {"a": "a", "b": "b", "c": "c"}, batch=["a"])
    index = {m: j for j, m in enumerate(estimator.model_ids)}
    read = [ProbeRecord(m, QUERY_DATASET, "score", 0.80) for m in ("a", "b")]
    shared, _, _ = policy._predicted(
        estimator, {}, None, read, index, condition=True, level=0.0, noise_sd=0.01, noise_level=0.06
    )
    own, _, _ = policy._predicted(estimator, {}, None, read, index, condition=True, level=0.0, noise_sd=0.061)
    assert shared[index["a"]] - 0.70 < own[index["a"]] - 0.70


def test_a_probe_of_the_whole_table_is_exact() -> None:
    estimator = lucky()
    index = {m: j for j, m in enumerate(estimator.model_ids)}
    whole = [ProbeRecord("hot", QUERY_DATASET, "score", 0.95, whole=True)]
    mean, sd, _ = policy._predicted(estimator, {}, None, whole, index, condition=True, level=0.0, noise_sd=0.06)
    assert mean[index["hot"]] == 0.95 and sd[index["hot"]] == 0.0


class Library(Fake):
    """A fake whose library behaviour (datasets x models z) is given, with flat predictions of its own."""

    def __init__(self, prior: dict[str, float], z: np.ndarray, sd: float = 0.05):
        super().__init__(prior, {m: m for m in prior}, batch=list(prior), sd=sd)
        self.z = z

    def behaviour(self) -> np.ndarray:
        return self.z


def twins_library() -> Library:
    # s1 and s2 rise and fall together across 80 datasets; t moves on its own. Predicted: s1 = s2 > t, barely.
    rng = np.random.default_rng(7)
    base = rng.normal(size=80)
    z = np.column_stack([base, base + 0.05 * rng.normal(size=80), rng.normal(size=80), rng.normal(size=80) - 1.0])
    return Library({"s1": 0.80, "s2": 0.80, "t": 0.79, "low": 0.60}, z)


def test_the_portfolio_measures_what_adds_to_the_best_measured_not_the_twin_of_a_measured_model() -> None:
    estimator = twins_library()
    estimator.truth = {"s1": 0.80, "s2": 0.80, "t": 0.79, "low": 0.60}  # as predicted: no surprise to move anything
    greedy = policy.simulate(estimator, {}, estimator.measure, budget=2, rule=policy.GREEDY)
    assert [p.model_id for p in greedy] == ["s1", "s2"]  # the best two predictions: twins
    estimator.seen.clear()
    taken = policy.simulate(estimator, {}, estimator.measure, budget=2, rule=policy.PORTFOLIO)
    # s2 adds nothing where s1 is measured (they fail together); t wins where s1 fails.
    assert [p.model_id for p in taken] == ["s1", "t"]
    # A later round of two measured together is chosen the same way: t first. (A first round of several is the
    # selector's diverse batch.)
    measured = [ProbeRecord("s1", QUERY_DATASET, "score", 0.80)]
    step = policy.next_probes(estimator, {}, measured=measured, count=2, rule=policy.PORTFOLIO)
    assert step.model_ids[0] == "t" and len(step.model_ids) == 2
    assert policy.PORTFOLIO == policy.RULE  # the served rule


def clusters_library() -> Library:
    # 60 datasets where x shines and y fails, 20 where y shines and x fails; w is average everywhere.
    rng = np.random.default_rng(8)
    a = np.column_stack([np.full(60, 1.5), np.full(60, -1.0), np.zeros(60), np.full(60, -0.5)])
    b = np.column_stack([np.full(20, -1.0), np.full(20, 1.5), np.zeros(20), np.full(20, -0.5)])
    z = np.vstack([a, b]) + 0.05 * rng.normal(size=(80, 4))
    # The prediction ranks the models as the 20 y-datasets do: y > w > x ≈ v.
    return Library({"x": 0.70, "y": 0.75, "w": 0.72, "v": 0.69}, z)


def test_the_datasets_like_the_prediction_decide_the_portfolio(monkeypatch: pytest.MonkeyPatch) -> None:
    estimator = clusters_library()
    assert policy.next_probes(estimator, {}, rule=policy.PORTFOLIO).model_ids == ["y"]
    # Weighed all alike, the library's majority decides: x is best on most datasets.
    monkeypatch.setattr(policy, "LIKENESS", 0.0)
    assert policy.next_probes(estimator, {}, rule=policy.PORTFOLIO).model_ids == ["x"]
    # Only the single most alike dataset: a y-dataset.
    monkeypatch.setattr(policy, "LIKENESS", 10.0)
    monkeypatch.setattr(policy, "PARTICLES", 1)
    assert policy.next_probes(estimator, {}, rule=policy.PORTFOLIO).model_ids == ["y"]


def test_an_estimators_own_likeness_weighs_the_datasets_unless_the_call_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A served estimator carries the likeness chosen for its library (`likeness.choose_likeness`); the policy
    takes it in place of the module's default for its first `CHOSEN_PROBES` probes."""
    estimator = clusters_library()
    estimator.likeness = 0.0  # type: ignore[attr-defined]
    assert policy.next_probes(estimator, {}, rule=policy.PORTFOLIO).model_ids == ["x"]  # the majority decides
    assert policy.next_probes(estimator, {}, rule=policy.PORTFOLIO, likeness=10.0).model_ids == ["y"]
    monkeypatch.setattr(policy, "CHOSEN_PROBES", 0)  # past the chosen likeness's probes: the default again
    assert policy.next_probes(estimator, {}, rule=policy.PORTFOLIO).model_ids == ["y"]
    monkeypatch.undo()
    estimator.likeness = None  # type: ignore[attr-defined]  # none chosen: the default
    assert policy.next_probes(estimator, {}, rule=policy.PORTFOLIO).model_ids == ["y"]


def test_the_portfolio_reads_a_sparse_library_as_a_dense_one_and_skips_a_hidden_dataset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(policy, "_CELLS_AT_ONCE", 30)  # a dense library read in blocks (of 7 rows) gives the same
    estimator = twins_library()
    z = estimator.z.copy()
    z[::7, 2] = np.nan  # t has no record on every 7th dataset: counted there as the dataset's average
    index = {m: j for j, m in enumerate(estimator.model_ids)}
    options = np.arange(4)
    mean = np.array([0.80, 0.80, 0.79, 0.60])
    measured = [ProbeRecord("s1", QUERY_DATASET, "score", 0.80)]
    dense = policy._portfolio(z, measured, index, options[1:], mean)
    sparse = policy._portfolio(ScoreMatrix.of_dense(z), measured, index, options[1:], mean)
    assert dense.tolist() == sparse.tolist() and dense[0] == 2
    # A hidden row (a dataset held out of its own prediction) is not one of the draws: the same as leaving it out.
    hidden = policy._portfolio(ScoreMatrix.of_dense(z).without(0), measured, index, options[1:], mean)
    assert hidden.tolist() == policy._portfolio(z[1:], measured, index, options[1:], mean).tolist()
    # No prediction to weigh the datasets by: no ranking (the caller keeps the greedy order).
    assert len(policy._portfolio(z, measured, index, options[1:], np.full(4, np.nan))) == 0


def test_a_datasets_likeness_is_the_pearson_correlation_of_its_z_with_the_prediction() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 9))
    z[rng.random((50, 9)) < 0.2] = np.nan
    z[4, :7] = np.nan  # two models left: too few to correlate
    mean = rng.normal(size=9)
    mean[3] = np.nan  # no prediction for this model: left out
    expected = []
    for row in z:
        both = np.isfinite(row) & np.isfinite(mean)
        expected.append(np.corrcoef(row[both], mean[both])[0, 1] if both.sum() >= 3 else np.nan)
    np.testing.assert_allclose(policy._likeness(z, mean), expected, atol=1e-12)
    np.testing.assert_allclose(policy._likeness(ScoreMatrix.of_dense(z), mean), expected, atol=1e-12)
