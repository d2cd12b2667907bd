"""The served blend (services/recommender/estimators/blend.py): weights learned on held-out datasets, a bad
member left out, the answer of a search made of the blend, and the weights kept by the checkpoint."""

from __future__ import annotations

import dataclasses
import itertools
import math
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from synthetic import write_library

from modsnet.data.bundle import read_bundle
from modsnet.data.graph import Constraints, Snapshot
from modsnet.data.graph_build import dataset_raw_features
from services.recommender import checkpoints, policy
from services.recommender.calibration import (
    CALIBRATION_FITS,
    MAX_HOLDOUT,
    conformal_factor,
    group_holdout,
    holdout_folds,
)
from services.recommender.core import RecommenderCore
from services.recommender.estimators.base import ProbeRecord, Scored
from services.recommender.estimators.blend import (
    BlendWeights,
    PseudoTarget,
    ResidualScale,
    at_served_level,
    calibration_folds,
    cold_ratios,
    fit_blend,
    held_out_queries,
    held_out_targets,
    learn_residual_scale,
    learn_weights,
    level_factors,
    near_and_far,
    reference_query,
    shown_scales,
    sigma_level,
    simplex_grid,
    target_probe_ratios,
)
from services.recommender.estimators.gnn import GnnConfig
from services.recommender.estimators.knn import KnnPopularityEstimator
from services.recommender.evaluation import graph_from_bundle, target_metrics
from services.recommender.likeness import CHOICES as LIKENESS_CHOICES
from services.recommender.likeness import choose_likeness


class Contrarian:
    """A primary member that ranks every dataset's models about upside down: the kNN's scores mirrored about
    their mean, plus noise of their own spread (seeded by the query, so not a mere multiple of the kNN's).
    On the planted library, where the kNN ranks well, it is the worst member there is."""

    name = "contrarian/v1"

    def __init__(self, snapshot: Snapshot):
        self.knn = KnnPopularityEstimator(snapshot)
        self.sign, self.model_ids = self.knn.sign, self.knn.model_ids
        self.dataset_ids, self.feature_names = self.knn.dataset_ids, self.knn.feature_names

    def score_all(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> Scored:
        own = known_dataset if known_dataset in self.dataset_ids else None
        s = self.knn.score_all(features, known_dataset=own, probes=probes)
        rng = np.random.default_rng(zlib.crc32(repr(sorted(features.items())).encode()))
        mirrored = 2 * s.scores.mean() - s.scores + s.scores.std() * rng.normal(size=len(s.scores))
        return Scored(mirrored, s.uncertainty, lambda j: replace(s.build(j), score=float(mirrored[j])))

    def select_probes(
        self, features: dict[str, float], *, known_dataset: str | None = None, budget: int = 5,
        among: Collection[str] | None = None,
    ) -> list[str]:  # fmt: skip
        return self.knn.select_probes(features, known_dataset=known_dataset, budget=budget, among=among)

    def probes_used(self, probes: Sequence[ProbeRecord], *, known_dataset: str | None = None) -> int:
        return self.knn.probes_used(probes, known_dataset=known_dataset)

    def shared_features(self, features: dict[str, float]) -> list[str]:
        return self.knn.shared_features(features)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, Snapshot, list[str]]:
    """A library whose neighbours predict the winners: (training part, whole, test datasets never trained on)."""
    folder = tmp_path_factory.mktemp("planted") / "lib"
    snapshot, _ = graph_from_bundle(read_bundle(write_library(folder, n_datasets=80, n_models=12, seed=3)))
    rated = sorted({r.dataset_id for r in snapshot.interactions})
    test = rated[1::4]
    train = replace(snapshot, interactions=[r for r in snapshot.interactions if r.dataset_id not in set(test)])
    return train, snapshot, test


def _mean_pearson(estimator, whole: Snapshot, test: list[str]) -> float:  # type: ignore[no-untyped-def]
    nodes = {d.dataset_id: d for d in whole.datasets}
    truth: dict[str, dict[str, float]] = {}
    for r in whole.interactions:
        truth.setdefault(r.dataset_id, {})[r.model_id] = r.score
    values = []
    for t in test:
        scored = estimator.score_all(dataset_raw_features(nodes[t]))
        predicted = {m: float(scored.scores[j]) for j, m in enumerate(estimator.model_ids)}
        models = sorted(truth[t])
        got = target_metrics(np.array([truth[t][m] for m in models]), np.array([predicted[m] for m in models]))
        values.append(got["pearson"])
    return float(np.mean(values))


def test_a_member_bad_on_the_held_out_datasets_gets_no_weight(planted) -> None:  # type: ignore[no-untyped-def]
    train, whole, test = planted
    served = fit_blend(train, Contrarian)
    blend = served.blend
    assert blend.members == ("gnn", "knn", "popularity") and blend.targets >= 10
    assert blend.validation["gnn"] < 0 < blend.validation["knn"]  # the contrarian is as bad as it was built to be
    for weights in (blend.near, blend.far, blend.probed):
        assert weights[0] == 0.0, blend.describe()
    # On datasets neither fit saw, the blend is no worse than its best member alone.
    knn_alone = _mean_pearson(KnnPopularityEstimator(train), whole, test)
    assert _mean_pearson(served, whole, test) >= knn_alone - 0.02
    assert _mean_pearson(served.primary, whole, test) < 0


def test_the_weights_follow_the_pseudo_targets_and_the_sigma_is_rescaled() -> None:
    """Three members on synthetic pseudo-targets: truth, truth plus noise, noise. The noisy copy of the truth
    wins, and a σ ten times too small is scaled up to cover the residuals."""
    rng = np.random.default_rng(0)
    targets = []
    for i in range(30):
        truth = rng.normal(size=15)
        members = np.stack([rng.normal(size=15), truth + 0.3 * rng.normal(size=15), rng.normal(size=15)])
        targets.append(PseudoTarget(f"d{i}", truth, members, np.full((3, 15), 0.03), float(i)))
    blend = learn_weights(targets, ("gnn", "knn", "popularity"), sign=1.0)
    assert blend.near[1] >= 0.8 and blend.far[1] >= 0.8
    assert blend.threshold == pytest.approx(14.5)  # 15 pseudo-targets each side of the median distance
    assert blend.interval_scale > 5  # residuals of about 0.3 against σ = 0.03
    assert learn_weights([], ("knn", "popularity"), sign=1.0) == BlendWeights.primary_only(("knn", "popularity"))


def test_a_probed_query_gets_the_sigma_scale_of_the_probed_residuals(planted) -> None:  # type: ignore[no-untyped-def]
    """Probed pseudo-targets whose residuals are a tenth of the cold ones' (σ the same): the probed scale is a
    tenth of the cold one, and a served query with a measured probe is given that σ, one without the cold σ."""
    rng = np.random.default_rng(1)
    targets = []
    for i in range(30):
        truth = rng.normal(size=15)
        far_off = np.stack([truth + rng.normal(size=15)] * 2)
        probed = np.stack([truth[3:] + 0.1 * rng.normal(size=12)] * 2)
        sigma = np.full((2, 15), 0.5)
        targets.append(
            PseudoTarget(f"d{i}", truth, far_off, sigma, float(i), truth[3:], probed, truth[3:], probed, sigma[:, 3:])
        )
    blend = learn_weights(targets, ("knn", "popularity"), sign=1.0)
    assert blend.probed_interval_scale is not None
    assert blend.probed_interval_scale == pytest.approx(blend.interval_scale / 10, rel=0.4)
    assert BlendWeights.from_dict(blend.to_dict()) == blend
    old = {k: v for k, v in blend.to_dict().items() if k != "probed_interval_scale"}  # a checkpoint from before
    assert BlendWeights.from_dict(old).scale_for(probed=True) == blend.interval_scale
    assert BlendWeights.from_dict(old).shown_scale_for(probed=True) == blend.interval_scale

    train, whole, test = planted
    served = fit_blend(train, KnnPopularityEstimator)
    # Without a residual scale (`test_a_probed_querys_shown_sigma_follows_its_own_probes` has it), nor shown scales
    # apart (the σ level's, `test_the_sigma_level_moves_the_shown_intervals_only`): the policy's scales shown.
    served.blend = dataclasses.replace(
        served.blend, interval_scale=2.0, probed_interval_scale=0.5, residual_scale=None, shown_interval_scale=None,
        shown_probed_interval_scale=None, shown_far_interval_scale=None,
    )  # fmt: skip
    features = dataset_raw_features(next(d for d in whole.datasets if d.dataset_id == test[0]))
    probe = [ProbeRecord(served.model_ids[0], test[0], "score", 0.7)]
    with_probe = served.score_all(features, known_dataset=test[0], probes=probe)
    assert with_probe.uncertainty[1:] == pytest.approx(0.5 * _blended_sigma(served, features, probe)[1:])
    cold = served.score_all(features, known_dataset=test[0])
    assert cold.uncertainty == pytest.approx(2.0 * _blended_sigma(served, features, []))


def _blended_sigma(served, features: dict[str, float], probes: list[ProbeRecord]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The members' σ summed by the weights the query gets, before any scale."""
    weights = served.weights_for(features, known_dataset=None, probes=probes)
    scored = served.members_scored(features, probes=probes)
    return np.sum([w * s.uncertainty for w, s in zip(weights, scored, strict=True) if s is not None], axis=0)


def test_the_grid_covers_the_simplex() -> None:
    grid = simplex_grid(3)
    assert len(grid) == 66 and np.allclose(grid.sum(axis=1), 1.0) and (grid >= 0).all()


def test_weights_that_do_not_fit_their_members_are_refused() -> None:
    with pytest.raises(ValueError, match="members"):
        BlendWeights.from_dict({**BlendWeights.primary_only(("knn", "popularity")).to_dict(), "near": [1.0]})


def _sum_of_members(estimator, features: dict[str, float], weights: tuple[float, ...]) -> np.ndarray:  # type: ignore[no-untyped-def]
    scored = estimator.members_scored(features)
    return sum(w * s.scores for w, s in zip(weights, scored, strict=True))


@pytest.mark.parametrize("kind", ["knn", "gnn"])
def test_the_served_answer_is_the_blend(cluster, kind: str) -> None:  # type: ignore[no-untyped-def]
    """The scores a search answers with are the weighted sum of the members' vectors (the GNN through ONNX
    Runtime), and after a restart the checkpoint brings the same weights back."""
    knowledge, storage = cluster.client.knowledge, cluster.client.storage
    config = GnnConfig(members=1, steps=20, hidden=16, head=8)
    core = RecommenderCore(knowledge, storage, estimator=kind, gnn_config=config)
    served = core.fitted("synth")
    estimator = served.estimator
    learned = estimator.blend
    assert learned.targets > 0 and math.isfinite(estimator.interval_scale)
    # Weights no member has alone, so that the answer tells them apart.
    mixed = (0.35, 0.65) if len(learned.members) == 2 else (0.2, 0.3, 0.5)
    estimator.blend = dataclasses.replace(learned, near=mixed, far=mixed)
    node = next(d for d in knowledge.snapshot("synth").datasets)
    features = {k: v * 1.1 for k, v in dataset_raw_features(node).items()}  # a new dataset near a known one
    answer = core.recommend("synth", features, k=6, constraints=Constraints())
    expected = _sum_of_members(estimator, features, mixed)
    got = {r.prediction.model_id: r.prediction.score for r in answer.models}
    index = {m: j for j, m in enumerate(estimator.model_ids)}
    assert got and all(got[m] == pytest.approx(expected[index[m]], abs=1e-9) for m in got)
    primary_alone = estimator.primary.score_all(features).scores
    assert not np.allclose([got[m] for m in got], [primary_alone[index[m]] for m in got])
    if kind == "gnn":
        assert served.backend.startswith("onnxruntime")
        saved = checkpoints.load(storage, "synth", "gnn/v1")
        assert saved is not None and BlendWeights.from_dict(saved.blend) == learned
        again = RecommenderCore(knowledge, storage, gnn_config=config)
        loaded = again.fitted("synth")
        assert loaded.origin == "checkpoint" and loaded.estimator.blend == learned
        again.close()
    core.close()


def test_a_checkpoint_whose_blend_cannot_serve_is_refused() -> None:
    with pytest.raises(ValueError, match="not blend weights"):
        BlendWeights.from_dict({"members": ["gnn"]})
    broken = checkpoints.Checkpoint(
        library="synth", estimator="gnn/v1", bundle_blob_id="ab" * 32, models_digest="00", graph_version=1,
        interactions=1, trained_unix=1.0, train_seconds=1.0, config={}, weights=[],
        blend={**BlendWeights.primary_only(("gnn", "knn", "popularity")).to_dict(), "far": [1.0, 0.0]},
    )  # fmt: skip
    with pytest.raises(ValueError, match="do not match"):
        checkpoints.Checkpoint.from_bytes(broken.to_bytes())


def test_the_blend_can_learn_on_families_held_out(planted) -> None:  # type: ignore[no-untyped-def]
    """`family_run`: the calibration fit hides runs of consecutive ids (families), not datasets one by one."""
    train, _, _ = planted
    ids = sorted({r.dataset_id for r in train.interactions})
    hidden: list[list[str]] = []

    def fit(graph: Snapshot) -> KnnPopularityEstimator:
        kept = {r.dataset_id for r in graph.interactions}
        hidden.append([d for d in ids if d not in kept])
        return KnnPopularityEstimator(graph)

    served = fit_blend(train, fit, family_run=10)
    calibration_fit, whole = hidden
    assert whole == [] and len(calibration_fit) == served.blend.targets == 12  # a fifth of 60
    at = [ids.index(d) for d in calibration_fit]
    assert 1 + sum(b != a + 1 for a, b in itertools.pairwise(at)) <= 3  # two runs of 10, the first perhaps cut


def _by_sources(snapshot: Snapshot, size: int = 6) -> Snapshot:
    """`snapshot` with its datasets cut into sources (the `source_group` column) of `size` neighbours: the planted
    library's dataset d<i> is like d<i - 1> and d<i + 1> (features and scores move with i)."""
    ids = sorted((d.dataset_id for d in snapshot.datasets), key=lambda d: int(d[1:]))
    group = {d: f"source{i // size}" for i, d in enumerate(ids)}
    return replace(
        snapshot,
        datasets=[replace(d, metadata={**d.metadata, "source_group": group[d.dataset_id]}) for d in snapshot.datasets],
    )


def _recording_knn(snapshot: Snapshot) -> tuple[Callable[[Snapshot], KnnPopularityEstimator], list[list[str]]]:
    """A kNN fit that records, fit by fit, which of `snapshot`'s scored datasets it was not given."""
    ids = sorted({r.dataset_id for r in snapshot.interactions})
    hidden: list[list[str]] = []

    def fit(graph: Snapshot) -> KnnPopularityEstimator:
        kept = {r.dataset_id for r in graph.interactions}
        hidden.append([d for d in ids if d not in kept])
        return KnnPopularityEstimator(graph)

    return fit, hidden


def test_a_large_librarys_shown_intervals_learn_on_more_fifths_than_its_weights(tmp_path: Path) -> None:
    """Past calibration's cap (a fifth over MAX_HOLDOUT datasets) one fit's 40 datasets are a draw of 40: the shown
    intervals learn on two more disjoint fifths too, while the weights and the policy's σ stay those of the first
    fold alone, so every ranking and decision is as it was."""
    snapshot, _ = graph_from_bundle(read_bundle(write_library(tmp_path / "lib", n_datasets=220, n_models=6, seed=2)))
    fit, hidden = _recording_knn(snapshot)
    served = fit_blend(snapshot, fit)
    first, more = calibration_folds(snapshot)
    assert len(first) == 1 and len(more) == CALIBRATION_FITS - 1
    assert hidden == [*(sorted(f) for f in (*first, *more)), []]  # the first fifth, two more, the served fit
    assert [*first, *more] == holdout_folds(snapshot) and len({d for f in (*first, *more) for d in f}) == 120
    targets, members = held_out_targets(snapshot, KnnPopularityEstimator, first)
    alone = learn_weights(targets, members, sign=1.0)
    blend = served.blend
    assert blend.targets == MAX_HOLDOUT
    for name in ("near", "far", "probed", "threshold", "interval_scale", "probed_interval_scale"):
        assert getattr(blend, name) == getattr(alone, name), name
    assert blend.shown_interval_scale is not None and blend.shown_interval_scale != alone.interval_scale
    # The probing policy's likeness is replayed on all 120, with the first fold's weights and policy σ.
    pooled, _ = held_out_targets(snapshot, KnnPopularityEstimator, [*first, *more])
    replayed = choose_likeness(held_out_queries(pooled, alone, 1.0))
    assert replayed.targets == 120 and set(replayed.regrets) == set(LIKENESS_CHOICES)
    assert blend.likeness_regrets == {f"{k:g}": v for k, v in replayed.regrets.items()}
    assert served.likeness == blend.likeness == replayed.likeness
    assert BlendWeights.from_dict(blend.to_dict()) == blend
    assert calibration_folds(snapshot, shown_by_group=False) == (first, more)
    assert calibration_folds(_by_sources(snapshot))[1] == group_holdout(_by_sources(snapshot))  # sources come first


def test_a_library_of_sources_shows_intervals_learned_on_whole_sources_held_out(planted) -> None:  # type: ignore[no-untyped-def]
    """Weights and the policy's σ from the random fifth as before; the shown intervals from 3 more fits that hide
    whole sources, where a held-out dataset keeps no sibling in the graph (wider: it is harder to predict)."""
    train, _, _ = planted
    grouped = _by_sources(train)
    fit, hidden = _recording_knn(train)
    served = fit_blend(grouped, fit)
    folds = [sorted(f) for f in (*holdout_folds(grouped), *group_holdout(grouped))]
    assert hidden == [*folds, []]  # the random fifth, 3 by whole sources, the served fit
    assert calibration_folds(grouped) == (holdout_folds(grouped), group_holdout(grouped))
    # (The shown scales at the served fit's σ level apart: `test_the_sigma_level_moves_the_shown_intervals_only`.)
    alone = fit_blend(grouped, KnnPopularityEstimator, shown_by_group=False, shown_at_served_level=False).blend
    assert alone.shown_interval_scale is None and alone.shown_probed_interval_scale is None
    shown = served.blend
    # The residual scale of a probed query is learned where the shown scales are (here: on whole sources).
    apart = dict(
        shown_interval_scale=None, shown_probed_interval_scale=None, shown_far_interval_scale=None, residual_scale=None
    )
    assert dataclasses.replace(shown, **apart) == dataclasses.replace(alone, residual_scale=None)
    assert shown.shown_interval_scale is not None and shown.shown_probed_interval_scale is not None
    assert shown.shown_interval_scale > shown.interval_scale  # a whole source hidden is harder than one dataset
    assert served.interval_scale == shown.shown_interval_scale
    assert BlendWeights.from_dict(shown.to_dict()) == shown  # a checkpoint keeps them
    # Without sources, nothing is learned apart and no fit is added.
    assert calibration_folds(train)[1] == []
    assert fit_blend(train, KnnPopularityEstimator, shown_at_served_level=False).blend == alone
    # Weights already learned on whole sources: the shown intervals are theirs, no fit added.
    assert calibration_folds(grouped, by_group=True) == (group_holdout(grouped), [])


def _noisy_targets(noise: float, seed: int) -> list[PseudoTarget]:
    """30 pseudo-targets of two members whose predictions miss the truth by `noise` (σ 0.5), cold and with
    3 of 15 models measured (the same residuals: the condition does not matter here)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(30):
        truth = rng.normal(size=15)
        cold = np.stack([truth + noise * rng.normal(size=15)] * 2)
        sigma = np.full((2, 15), 0.5)
        out.append(PseudoTarget(f"d{i}", truth, cold, sigma, float(i), truth[3:], cold[:, 3:], truth[3:], cold[:, 3:],
                                sigma[:, 3:]))  # fmt: skip
    return out


def test_the_shown_intervals_are_no_narrower_than_the_policys() -> None:
    """Whole sources held out are no easier than datasets held out one by one: a shown scale learned on them
    that comes out smaller (the noise of a few sources) is raised to the policy's, condition by condition; a
    larger one is kept."""
    blend = learn_weights(_noisy_targets(1.0, 0), ("knn", "popularity"), sign=1.0)
    assert blend.probed_interval_scale is not None
    easier = shown_scales(blend, _noisy_targets(0.2, 1))
    assert easier.shown_interval_scale == blend.interval_scale
    assert easier.shown_probed_interval_scale == blend.probed_interval_scale
    harder = shown_scales(blend, _noisy_targets(3.0, 2))
    assert harder.shown_interval_scale is not None and harder.shown_probed_interval_scale is not None
    assert harder.shown_interval_scale > 2 * blend.interval_scale
    assert harder.shown_probed_interval_scale > 2 * blend.probed_interval_scale


def test_the_shown_sigma_and_the_policys_sigma_scale_apart_and_the_policy_decides_on_its_own(planted) -> None:  # type: ignore[no-untyped-def]
    train, whole, test = planted
    served = fit_blend(train, KnnPopularityEstimator)
    served.blend = dataclasses.replace(
        served.blend, interval_scale=2.0, probed_interval_scale=0.5, shown_interval_scale=3.0,
        shown_probed_interval_scale=0.25, residual_scale=None, shown_far_interval_scale=None,
    )  # fmt: skip
    features = dataset_raw_features(next(d for d in whole.datasets if d.dataset_id == test[0]))
    probe = [ProbeRecord(served.model_ids[0], test[0], "score", 0.7)]
    for probes, shown, used in (([], 3.0, 2.0), (probe, 0.25, 0.5)):
        sigma = _blended_sigma(served, features, probes)
        answer = served.score_all(features, known_dataset=test[0], probes=probes)
        inner = served.score_for_policy(features, known_dataset=test[0], probes=probes)
        assert np.array_equal(answer.scores, inner.scores)
        assert answer.uncertainty[1:] == pytest.approx(shown * sigma[1:])
        assert inner.uncertainty[1:] == pytest.approx(used * sigma[1:])
        assert answer.predictions()[1].uncertainty == pytest.approx(shown * sigma[1])

    truth = {r.model_id: r.score for r in whole.interactions if r.dataset_id == test[0]}

    def probed(blend: BlendWeights) -> list[str]:
        served.blend = blend
        measure = lambda ids: [ProbeRecord(m, test[0], "score", truth[m]) for m in ids]  # noqa: E731
        taken = policy.simulate(served, features, measure, budget=6, known_dataset=test[0], min_gain=0.01)
        return [p.model_id for p in taken]

    base = dataclasses.replace(served.blend, shown_interval_scale=None, shown_probed_interval_scale=None)
    before = probed(base)
    for scale in (1e-6, 1e3):
        shown = dataclasses.replace(base, shown_interval_scale=scale, shown_probed_interval_scale=scale)
        assert probed(shown) == before
    # The policy does read its σ: one that small stops probing after the selector's first pick.
    assert len(probed(dataclasses.replace(base, interval_scale=1e-6, probed_interval_scale=1e-6))) < len(before)


def _levelled(targets: list[PseudoTarget], level: float) -> list[PseudoTarget]:
    for t in targets:
        t.level = np.full(len(t.sigma), level)
    return targets


def test_a_served_fit_of_half_the_calibration_fits_sigma_shows_twice_the_scale() -> None:
    """The shown scales learned at the served fit's σ level: where the served fit's σ is half its calibration
    fits', |residual| / σ learned at theirs is half what it is served, so the shown scales double (cold, probed
    and the probes' residual scale); the policy's scales, learned on the targets as they are, do not move."""
    targets = _levelled(_targets_of_differing_difficulty(0), 2.0)
    blend = learn_weights(targets, ("knn", "popularity"), sign=1.0)
    as_learned = shown_scales(blend, targets, floor=())
    halved = at_served_level(targets, np.array([1.0, 1.0]))
    served = shown_scales(blend, halved, floor=())
    halves = near_and_far(blend, targets)  # the near and the far query each get their own shown scale
    assert halves is not None and as_learned.shown_far_interval_scale is not None
    learned_scales = (as_learned.shown_interval_scale, as_learned.shown_far_interval_scale)
    for learned, half in zip(learned_scales, halves, strict=True):
        assert learned == pytest.approx(conformal_factor(cold_ratios(half, blend)))
    assert served.shown_interval_scale == pytest.approx(2 * as_learned.shown_interval_scale)
    assert served.shown_far_interval_scale == pytest.approx(2 * as_learned.shown_far_interval_scale)
    assert blend.probed_interval_scale is not None and served.shown_probed_interval_scale is not None
    assert served.shown_probed_interval_scale == pytest.approx(2 * blend.probed_interval_scale)
    assert (served.interval_scale, served.probed_interval_scale) == (blend.interval_scale, blend.probed_interval_scale)
    residual, residual_served = learn_residual_scale(blend, targets), learn_residual_scale(blend, halved)
    assert residual is not None and residual_served is not None
    assert residual_served.power == residual.power and residual_served.reference == pytest.approx(
        4 * residual.reference
    )
    assert residual_served.scale == pytest.approx(2 * residual.scale)
    # The σ of the targets themselves is untouched (the weights and the policy learn on them).
    assert all(t.sigma[0, 0] == 0.5 for t in targets) and all(t.sigma[0, 0] == 0.25 for t in halved)


def _targets_missing_by_distance(seed: int, count: int = 40) -> list[PseudoTarget]:
    """Pseudo-targets of two members, σ 0.5 everywhere, whose predictions miss by 0.2 on the nearer half (distance
    0-19) and by 1.0 on the farther (20-39)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        truth = rng.normal(size=30)
        cold = np.stack([truth + (0.2 if i < count // 2 else 1.0) * rng.normal(size=30)] * 2)
        out.append(PseudoTarget(f"d{i}", truth, cold, np.full((2, 30), 0.5), float(i)))
    return out


def test_a_query_far_from_the_library_shows_wider_intervals_than_a_near_one() -> None:
    """Each half of the pseudo-targets, split where the weights split, learns its cold scale: a near query's
    interval covers what near ones miss by, not the mix (the mix is too wide near and too narrow far)."""
    targets = _targets_missing_by_distance(0)
    blend = learn_weights(targets, ("knn", "popularity"), sign=1.0)
    assert blend.threshold == pytest.approx(19.5)
    shown = shown_scales(blend, targets, floor=())
    near, far = shown.shown_scale_for(probed=False, distance=3.0), shown.shown_scale_for(probed=False, distance=30.0)
    assert far > 3 * near
    assert shown.shown_scale_for(probed=False) == near  # no distance (no features to compare): the near scale
    assert near < blend.interval_scale < far  # the policy keeps one scale: its decisions do not move
    for half, scale in zip(near_and_far(blend, targets) or (), (near, far), strict=True):
        coverage = np.mean(np.concatenate([np.abs(t.truth - t.cold[0]) <= scale * 0.5 * 1.2816 for t in half]))
        assert coverage == pytest.approx(0.8, abs=0.03)
    # The floor holds half by half: the same targets as the floor leave both scales as learned.
    assert shown_scales(blend, targets, floor=targets) == shown
    restored = BlendWeights.from_dict(shown.to_dict())
    assert restored == shown
    old = {k: v for k, v in shown.to_dict().items() if k != "shown_far_interval_scale"}  # a checkpoint from before
    assert BlendWeights.from_dict(old).shown_scale_for(probed=False, distance=30.0) == near
    # Too few on a side for a scale of its own: one for both, as before.
    few = shown_scales(blend, targets[:15] + targets[-5:], floor=())
    assert few.shown_far_interval_scale is None


def test_a_degenerate_sigma_level_leaves_the_sigma_as_it_is() -> None:
    assert level_factors(np.array([1.0, 2.0]), np.array([2.0, 1.0])) == pytest.approx([0.5, 2.0])
    for served, level in (([0.0, 1.0], [1.0, 1.0]), ([1.0, 1.0], [0.0, -1.0]), ([math.nan, 1.0], [1.0, math.inf])):
        assert level_factors(np.array(served), np.array(level)) == pytest.approx([1.0, 1.0])
    assert level_factors(None, np.ones(2)) is None and level_factors(np.ones(2), None) is None
    assert level_factors(np.ones(3), np.ones(2)) is None  # another blend's members
    targets = _noisy_targets(1.0, 0)  # no level taken: as they are
    assert at_served_level(targets, np.array([1.0, 1.0])) == targets
    levelled = _levelled(_noisy_targets(1.0, 0), 0.0)
    assert all(a is b for a, b in zip(at_served_level(levelled, np.array([1.0, 1.0])), levelled, strict=True))


class Shrinking(KnnPopularityEstimator):
    """The kNN with a σ that shrinks as it trains on more datasets (as the GNN ensemble's does): times 40 over
    the number of scored datasets it fits on."""

    def __init__(self, snapshot: Snapshot):
        super().__init__(snapshot)
        self.spread = 40 / len({r.dataset_id for r in snapshot.interactions})

    def score_all(
        self, features: dict[str, float], *, known_dataset: str | None = None, probes: Sequence[ProbeRecord] = ()
    ) -> Scored:
        s = super().score_all(features, known_dataset=known_dataset, probes=probes)
        sigma = s.uncertainty * self.spread
        return Scored(s.scores, sigma, lambda j: replace(s.build(j), uncertainty=float(sigma[j])))


def test_the_sigma_level_moves_the_shown_intervals_only(planted) -> None:  # type: ignore[no-untyped-def]
    """Served at its σ level, a blend whose served fit's σ is smaller than its calibration fits' shows wider
    intervals; its weights, the policy's σ and every prediction stay as they were."""
    train, whole, test = planted
    levelled = fit_blend(train, Shrinking)
    as_learned = fit_blend(train, Shrinking, shown_at_served_level=False)
    drop = ("shown_interval_scale", "shown_probed_interval_scale", "shown_far_interval_scale", "residual_scale")
    same = {k: v for k, v in levelled.blend.to_dict().items() if k not in drop}
    assert same == {k: v for k, v in as_learned.blend.to_dict().items() if k not in drop}
    assert as_learned.blend.shown_interval_scale is None  # no source groups: the policy's scale was shown
    assert levelled.blend.shown_interval_scale is not None
    # The served fit trains on every scored dataset, each calibration fit on four fifths: its σ is 0.8 of theirs.
    assert levelled.blend.shown_interval_scale > 1.1 * levelled.blend.interval_scale
    features = dataset_raw_features(next(d for d in whole.datasets if d.dataset_id == test[0]))
    for probes in ([], [ProbeRecord(train.models[0].model_id, test[0], "score", 0.7)]):
        answer, before = levelled.score_all(features, probes=probes), as_learned.score_all(features, probes=probes)
        assert np.array_equal(answer.scores, before.scores)
        # Cold: wider. A probed query's σ is further scaled by its own probes' residuals, by a power each blend
        # picks on its own pseudo-targets (so one query may come out either way); its scale is compared below.
        assert probes or np.all(answer.uncertainty >= before.uncertainty)
        inner = levelled.score_for_policy(features, probes=probes)
        inner_before = as_learned.score_for_policy(features, probes=probes)
        assert np.array_equal(inner.scores, inner_before.scores)
        assert np.array_equal(inner.uncertainty, inner_before.uncertainty)
    assert levelled.blend.shown_scale_for(probed=False) > as_learned.blend.shown_scale_for(probed=False)
    assert levelled.blend.shown_scale_for(probed=True) > as_learned.blend.shown_scale_for(probed=True)
    # The reference query every fit answers: the library's mean dataset.
    query = reference_query(train)
    assert query and all(math.isfinite(v) for v in query.values())


class Growing(Shrinking):
    """The kNN with a σ that grows as it trains on more datasets: the served fit's σ level above its
    calibration fits'."""

    def __init__(self, snapshot: Snapshot):
        super().__init__(snapshot)
        self.spread = len({r.dataset_id for r in snapshot.interactions}) / 40


def test_a_served_sigma_level_above_the_calibration_fits_never_narrows_the_shown_intervals(planted) -> None:  # type: ignore[no-untyped-def]
    """The level argument only says a served σ is too small: where the served fit's σ is the larger, the shown
    scales stay at least the policy's (TransferGraph text with features: cold coverage 0.623 without, 0.687 with)."""
    train, _, _ = planted
    levelled = fit_blend(train, Growing).blend
    assert levelled.shown_scale_for(probed=False) == pytest.approx(levelled.interval_scale)
    assert levelled.shown_scale_for(probed=True) >= levelled.scale_for(probed=True) - 1e-12
    # Unfloored, the scale learned at the served level would be below the policy's.
    targets, _ = held_out_targets(train, Growing, calibration_folds(train)[0])
    level = sigma_level(fit_blend(train, Growing, shown_at_served_level=False), reference_query(train))
    unfloored = shown_scales(levelled, at_served_level(targets, level), floor=())
    assert unfloored.shown_interval_scale is not None and unfloored.shown_interval_scale < levelled.interval_scale


def _targets_of_differing_difficulty(seed: int, count: int = 40) -> list[PseudoTarget]:
    """Pseudo-targets of two members whose σ (0.5) says nothing of how hard each is: target i's predictions miss
    by its own difficulty (0.1 to 3, cold and with its first 5 of 60 models measured alike)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, difficulty in enumerate(np.exp(rng.uniform(np.log(0.1), np.log(3.0), size=count))):
        truth = rng.normal(size=60)
        cold = np.stack([truth + difficulty * rng.normal(size=60)] * 2)
        probed = np.stack([truth[5:] + difficulty * rng.normal(size=55)] * 2)
        sigma = np.full((2, 60), 0.5)
        target = PseudoTarget(f"d{i}", truth, cold, sigma, float(i), truth[5:], probed, truth[5:], probed,
                              sigma[:, 5:], np.arange(5))  # fmt: skip
        out.append(target)
    return out


def _per_target_coverage(targets: list[PseudoTarget], blend: BlendWeights) -> np.ndarray:
    covered = []
    for t in targets:
        assert t.scaled is not None and t.scaled_truth is not None and t.scaled_sigma is not None
        residual = np.abs(t.scaled_truth - np.array(blend.probed) @ t.scaled)
        scale = blend.shown_scale_for(probed=True)
        if blend.residual_scale is not None:
            ratios = target_probe_ratios(t, blend)
            assert ratios is not None
            scale = blend.residual_scale.scale * blend.residual_scale.factor(ratios)
        covered.append(np.mean(residual <= 1.2816 * scale * (np.array(blend.probed) @ t.scaled_sigma)))
    return np.array(covered)


def test_the_probed_scale_learned_by_the_queries_own_probes_covers_hard_and_easy_datasets_alike() -> None:
    """Where σ does not follow a dataset's difficulty, one probed scale is too wide on the easy pseudo-targets and
    too narrow on the hard ones; scaled by each target's probe residuals, their coverage evens out, on
    pseudo-targets the scale was not learned on too."""
    blend = learn_weights(_targets_of_differing_difficulty(0), ("knn", "popularity"), sign=1.0)
    assert blend.residual_scale is None  # learned apart (`fit_blend`)
    learned = learn_residual_scale(blend, _targets_of_differing_difficulty(0))
    assert learned is not None and learned.power > 0
    fresh = _targets_of_differing_difficulty(1)
    before = _per_target_coverage(fresh, blend)
    after = _per_target_coverage(fresh, replace(blend, residual_scale=learned))
    assert np.mean(np.abs(after - 0.8)) < 0.7 * np.mean(np.abs(before - 0.8)), (before, after)
    assert abs(after.mean() - 0.8) < 0.06
    assert BlendWeights.from_dict(replace(blend, residual_scale=learned).to_dict()).residual_scale == learned
    assert BlendWeights.from_dict(blend.to_dict()).residual_scale is None  # and a checkpoint from before
    # Where σ does follow it (every target as hard), the probes add nothing: the probed scale as before.
    even = _noisy_targets(1.0, 0)
    for t in even:
        t.scaled_probes = np.arange(3)
    assert learn_residual_scale(learn_weights(even, ("knn", "popularity"), sign=1.0), even) is None


def test_with_one_or_two_probes_the_factor_is_shrunk_toward_one() -> None:
    scale = ResidualScale(power=1.0, reference=1.0, scale=1.0)
    assert scale.factor(np.array([])) == 1.0
    for ratio in (0.0, 10.0):
        factors = [scale.factor(np.full(k, ratio)) for k in (1, 2, 5, 50)]
        assert all(abs(a - 1) < abs(b - 1) for a, b in itertools.pairwise(factors)), factors
    assert scale.factor(np.full(2, 10.0)) == pytest.approx(math.sqrt((2 * 100 + 2) / 4))
    assert ResidualScale(power=0.0, reference=1.0, scale=1.0).factor(np.full(5, 10.0)) == 1.0


def test_a_probed_querys_shown_sigma_follows_its_own_probes(planted) -> None:  # type: ignore[no-untyped-def]
    """Probes that land on the cold predictions: narrower intervals than the probed scale alone gives; probes that
    miss by several σ: wider. The scores, the policy's σ and a query without probes are as before."""
    train, whole, test = planted
    served = fit_blend(train, KnnPopularityEstimator)
    learned = served.blend
    assert learned.residual_scale is not None and learned.residual_scale.power > 0
    before = dataclasses.replace(learned, residual_scale=None)
    features = dataset_raw_features(next(d for d in whole.datasets if d.dataset_id == test[0]))
    served.blend = before
    cold = served.score_all(features, known_dataset=test[0])
    raw = _blended_sigma(served, features, [])

    def answers(miss: float, count: int = 5) -> tuple[Scored, Scored, Scored, Scored]:
        probes = [ProbeRecord(served.model_ids[j], test[0], "score", float(cold.scores[j] + miss * raw[j]))
                  for j in range(count)]  # fmt: skip
        out = []
        for blend in (before, learned):
            served.blend = blend
            out += [served.score_all(features, known_dataset=test[0], probes=probes),
                    served.score_for_policy(features, known_dataset=test[0], probes=probes)]  # fmt: skip
        return out[0], out[1], out[2], out[3]

    widths = {}
    for miss in (0.0, 6.0):
        old, old_policy, new, new_policy = answers(miss)
        assert np.array_equal(old.scores, new.scores)
        assert np.array_equal(old_policy.uncertainty, new_policy.uncertainty)
        assert np.all(new.uncertainty[:5] == 0)
        widths[miss] = new.uncertainty[5:] / old.uncertainty[5:]
        assert np.allclose(widths[miss], widths[miss][0])  # one factor for the query's every unmeasured model
    assert widths[0.0][0] < 1 < widths[6.0][0]
    # One probe that misses as badly moves the width less than five do.
    one_old, _, one_new, _ = answers(6.0, count=1)
    assert 1 < one_new.uncertainty[1] / one_old.uncertainty[1] < widths[6.0][0]
    # No probes: the same answer, σ and all.
    served.blend = learned
    assert np.array_equal(served.score_all(features, known_dataset=test[0]).uncertainty, cold.uncertainty)
    assert np.array_equal(served.score_all(features, known_dataset=test[0]).scores, cold.scores)


def test_the_members_weighted_sum_is_the_sum_bit_for_bit() -> None:
    """`_weighted_sum` (one new vector, no temporaries per member) adds what `sum(w * s)` added, in its order."""
    from services.recommender.estimators.blend import _weighted_sum

    rng = np.random.default_rng(5)
    for members in (1, 2, 3):
        used = []
        for _ in range(members):
            s, u = rng.normal(size=1000), np.abs(rng.normal(size=1000))
            used.append((float(rng.random()), Scored(s, u, lambda j: None)))  # type: ignore[arg-type, return-value]
        for what in ("scores", "uncertainty"):
            want = sum(w * getattr(s, what) for w, s in used)
            assert np.array_equal(_weighted_sum(used, what), want), (members, what)
