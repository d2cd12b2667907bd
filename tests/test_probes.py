"""The probe-selector's Score(m) against the paper's formula, selection, and virtual probe edges."""

from __future__ import annotations

import numpy as np
import pytest

from services.recommender.evaluation import ProbeRecord
from services.recommender.probes import (
    ProbeSelector,
    behaviour_correlation,
    model_similarity,
    probe_scores,
    virtual_edges,
)


def test_score_on_a_hand_computed_case() -> None:
    sim_d = np.array([1.0, 0.5, 0.0])  # d2 is not similar: its edges are not in I_s
    z = np.array([[1.0, -1.0], [2.0, np.nan], [5.0, 5.0]])
    sim_m = np.array([[1.0, 0.5], [0.5, 1.0]])
    # I_s = {(d0, m0, 1), (d0, m1, -1), (d1, m0, 2)}, |I_s| = 3; lsim = sim_D · sim_M.
    # Score(m0) = (1·1·1 + 1·0.5·(-1) + 0.5·1·2) / 3 = 0.5
    # Score(m1) = (1·0.5·1 + 1·1·(-1) + 0.5·0.5·2) / 3 = 0
    np.testing.assert_allclose(probe_scores(sim_d, z, sim_m, similar=2), [0.5, 0.0])


def test_score_matches_the_double_sum() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 5))
    z[rng.random(z.shape) < 0.3] = np.nan
    sim_d = rng.random(6)
    sim_m = rng.random((5, 5))
    similar = 4
    chosen = np.argsort(-sim_d)[:similar]
    edges = [(d, m2, z[d, m2]) for d in chosen for m2 in range(5) if not np.isnan(z[d, m2])]
    expected = [sum(sim_d[d] * sim_m[m, m2] * p for d, m2, p in edges) / len(edges) for m in range(5)]
    np.testing.assert_allclose(probe_scores(sim_d, z, sim_m, similar=similar), expected)


def test_no_similar_dataset_gives_zero_scores() -> None:
    assert probe_scores(np.zeros(2), np.ones((2, 3)), np.eye(3)).tolist() == [0.0, 0.0, 0.0]


def test_select_takes_the_best_within_budget_and_can_be_switched_off() -> None:
    z = np.array([[0.1, 2.0, -1.0, 1.0]])
    selector = ProbeSelector(z, np.eye(4), ["a", "b", "c", "d"])
    assert selector.select(np.array([1.0]), 2) == ["b", "d"]
    assert selector.select(np.array([1.0]), 2, exclude=["b"]) == ["d", "a"]
    assert selector.select(np.array([1.0]), 2, among=["a", "c"]) == ["a", "c"]  # only what can be probed
    selector.enabled = False
    assert selector.select(np.array([1.0]), 2) == []


def test_select_trades_score_for_models_that_behave_differently() -> None:
    # "a" and "twin" win and lose together on the first four datasets; "other" disagrees with them.
    # On the query's one similar dataset (the last row) the twins score best, "other" a little less.
    z = np.array(
        [
            [1.0, 1.1, -1.0, 0.0],
            [-1.0, -0.9, 1.0, 0.0],
            [0.5, 0.6, -0.5, 0.0],
            [-0.5, -0.4, 0.5, 0.0],
            [2.0, 1.9, 1.5, -1.0],
        ]
    )
    similar = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    plain = ProbeSelector(z, np.eye(4), ["a", "twin", "other", "last"], similar=1, diversity=0.0)
    assert plain.select(similar, 2) == ["a", "twin"]  # the paper's top-2 by Score: one model twice
    diverse = ProbeSelector(z, np.eye(4), ["a", "twin", "other", "last"], similar=1, diversity=0.5)
    assert diverse.select(similar, 2) == ["a", "other"]
    assert diverse.select(similar, 3) == ["a", "other", "last"]  # a twin adds less than the worst unlike model
    assert diverse.select(similar, 2, among=["twin", "last"]) == ["twin", "last"]


def test_behaviour_correlation_counts_only_datasets_both_models_have() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(30, 4))
    z[rng.random(z.shape) < 0.3] = np.nan
    z[:28, 3] = np.nan  # model 3 has two datasets: too few to say anything
    corr = behaviour_correlation(z)
    both = ~np.isnan(z[:, 0]) & ~np.isnan(z[:, 1])
    assert corr[0, 1] == pytest.approx(np.corrcoef(z[both, 0], z[both, 1])[0, 1])
    assert corr[0, 3] == 0.0 and corr[3, 2] == 0.0
    np.testing.assert_allclose(np.diag(corr)[:3], 1.0)


def test_model_similarity_is_sparse_with_itself_first() -> None:
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    sim = model_similarity(features, neighbours=1).toarray()
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert (sim > 0).sum(axis=1).tolist() == [2, 2, 2, 1]  # model 3's nearest is opposite: cosine clipped to 0
    assert sim[0, 1] == pytest.approx(0.9 / np.hypot(0.9, 0.1))


def test_virtual_edges_z_score_one_probe_kind() -> None:
    probes = [
        ProbeRecord("a", "q", "LogME", 1.0),
        ProbeRecord("b", "q", "LogME", 3.0),
        ProbeRecord("b", "q", "LogME", 5.0),  # repeats average: b = 4
        ProbeRecord("c", "q", "HScore", 9.0),  # another kind: ignored
        ProbeRecord("x", "q", "LogME", 9.0),  # not in the library: ignored
    ]
    index, z = virtual_edges(probes, "LogME", {"a": 0, "b": 1, "c": 2})
    assert index.tolist() == [0, 1]
    np.testing.assert_allclose(z, [-1.0, 1.0])
    index, z = virtual_edges(probes[:1], "LogME", {"a": 0})
    assert z.tolist() == [0.0]  # one probe ranks nothing
