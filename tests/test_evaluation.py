"""The evaluation harness: metrics on hand-computed cases, the leave-one-dataset-out protocol, baselines."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from synthetic import write_library

from modsnet.data.bundle import Bundle, Table, read_bundle
from modsnet.data.graph import Snapshot
from services.recommender import evaluation
from services.recommender.calibration import FAMILY_RUN, holdout_folds
from services.recommender.estimators.knn import KnnPopularityEstimator
from services.recommender.evaluation import (
    Fold,
    ProbeBudgetExceeded,
    default_targets,
    evaluate,
    graph_from_bundle,
    popularity_method,
    published_result,
    target_metrics,
)


def tiny_bundle(scores: dict[tuple[str, str], float], *, probes: Sequence[tuple[str, str, float]] = ()) -> Bundle:
    """A bundle from {(dataset, model): score}; datasets carry one feature so kNN has something to use."""
    models = sorted({m for _, m in scores})
    datasets = sorted({d for d, _ in scores})
    meta = {"name": "tiny", "modality": "tabular", "metric": "accuracy", "higher_is_better": True}
    probe_table = None
    if probes:
        probe_table = Table(
            "probes.csv",
            ["model_id", "dataset_id", "probe", "value", "seconds"],
            [{"model_id": m, "dataset_id": d, "probe": "LogME", "value": str(v), "seconds": "2"} for d, m, v in probes],
        )
    return Bundle(
        meta,
        Table("models.csv", ["model_id"], [{"model_id": m} for m in models]),
        Table(
            "datasets.csv",
            ["dataset_id", "n_rows"],
            [{"dataset_id": d, "n_rows": str(100 + i)} for i, d in enumerate(datasets)],
        ),
        Table(
            "interactions.csv",
            ["model_id", "dataset_id", "score"],
            [{"model_id": m, "dataset_id": d, "score": str(s)} for (d, m), s in scores.items()],
        ),
        probes=probe_table,
    )


def test_metrics_on_a_hand_computed_case() -> None:
    true = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    # Predicted order: m1, m0, m3, m2, m5, m4.
    predicted = np.array([5.0, 6.0, 3.0, 4.0, 1.0, 2.0])
    out = target_metrics(true, predicted)
    assert out["p@1"] == 0.0  # true best m0, predicted best m1
    assert out["regret@1"] == pytest.approx(0.1)  # 0.9 - 0.8
    assert out["p@3"] == pytest.approx(2 / 3)  # {m0, m1, m2} ∩ {m1, m0, m3}
    assert out["regret@3"] == 0.0  # m0 is in the predicted top 3
    assert out["p@5"] == pytest.approx(4 / 5)
    assert out["spearman"] == pytest.approx(1 - 6 * 6 / (6 * 35))  # three swaps of one rank: Σd² = 6
    assert out["pearson"] == pytest.approx(np.corrcoef(true, predicted)[0, 1])


def test_perfect_and_constant_predictions() -> None:
    true = np.array([0.3, 0.9, 0.5, 0.7])
    perfect = target_metrics(true, 2 * true + 1)
    assert perfect["pearson"] == pytest.approx(1.0)
    assert perfect["weighted_tau"] == pytest.approx(1.0)
    assert all(perfect[f"p@{k}"] == 1.0 for k in (1, 3))
    assert all(perfect[f"regret@{k}"] == 0.0 for k in (1, 3, 5))
    constant = target_metrics(true, np.zeros(4))
    assert constant["pearson"] == constant["spearman"] == constant["weighted_tau"] == 0.0


def test_lower_is_better_flips_the_top() -> None:
    error = np.array([0.1, 0.4, 0.2])
    out = target_metrics(error, error, higher_is_better=False)
    assert out["p@1"] == 1.0 and out["regret@1"] == 0.0 and out["pearson"] == pytest.approx(1.0)
    wrong = target_metrics(error, -error, higher_is_better=False)  # predicts the worst as best
    assert wrong["regret@1"] == pytest.approx(0.3)


def test_unranked_models_count_for_the_top_but_not_the_correlations() -> None:
    true = np.array([0.9, 0.5, 0.4, 0.1])
    out = target_metrics(true, np.array([np.nan, 0.5, 0.4, 0.1]))
    assert out["pearson"] == pytest.approx(1.0)  # over the three it ranked
    assert out["p@1"] == 0.0 and out["regret@1"] == pytest.approx(0.4)  # it never saw the best


def _scores() -> dict[tuple[str, str], float]:
    # Model a is best everywhere but on d3, where c wins; b is in between.
    table = {"d0": (0.9, 0.6, 0.3), "d1": (0.8, 0.7, 0.2), "d2": (0.95, 0.5, 0.4), "d3": (0.5, 0.6, 0.9)}
    return {(d, m): s for d, row in table.items() for m, s in zip("abc", row, strict=True)}


def test_popularity_on_a_hand_example() -> None:
    bundle = tiny_bundle(_scores())
    snapshot, _ = graph_from_bundle(bundle)
    fold = Fold(snapshot, [], ["d3"], {"d3": ["a", "b", "c"]}, {}, False, 0, 0)
    predicted = popularity_method(fold)["d3"]
    # Popularity is the mean z over all four datasets here (the fold hides nothing): z of a row
    # (x - mean) / std, averaged per model.
    rows = np.array([[0.9, 0.6, 0.3], [0.8, 0.7, 0.2], [0.95, 0.5, 0.4], [0.5, 0.6, 0.9]])
    z = (rows - rows.mean(axis=1, keepdims=True)) / rows.std(axis=1, keepdims=True)
    np.testing.assert_allclose(predicted, z.mean(axis=0))


def _cheat(fold: Fold) -> dict[str, np.ndarray]:
    """Reads the target's real scores from the graph it was given: perfect only if they leaked."""
    found = {(r.dataset_id, r.model_id): r.score for r in fold.snapshot.interactions}
    return {t: np.array([found.get((t, m), 0.0) for m in fold.candidates[t]]) for t in fold.targets}


def test_leave_one_out_hides_the_target() -> None:
    bundle = tiny_bundle(_scores())
    snapshot, _ = graph_from_bundle(bundle)
    leaky = Fold(snapshot, [], ["d3"], {"d3": ["a", "b", "c"]}, {}, False, 0, 0)
    assert target_metrics(np.array([0.5, 0.6, 0.9]), _cheat(leaky)["d3"])["pearson"] == pytest.approx(1.0)
    report = evaluate(bundle, methods=["cheat", "popularity"], targets=["d0", "d3"], extra_methods={"cheat": _cheat})
    cheat = report.results[0]
    assert all(values["pearson"] == 0.0 for values in cheat.per_target.values())  # nothing to read
    popularity = report.results[1].per_target
    assert popularity["d3"]["p@1"] == 0.0  # a is popular on the others, c wins on d3: no leak
    assert popularity["d0"]["p@1"] == 1.0


def test_probes_are_budgeted_and_refused_in_cold_start() -> None:
    scores = _scores()
    probes = [(d, m, s * 10) for (d, m), s in scores.items()]
    bundle = tiny_bundle(scores, probes=probes)
    seen: dict[str, object] = {}

    def prober(fold: Fold) -> dict[str, np.ndarray]:
        target = fold.targets[0]
        assert all(p.dataset_id != target for p in fold.probes)  # a target's probes only through measure
        if not fold.with_probes:
            with pytest.raises(ProbeBudgetExceeded):
                fold.measure(target, ["a"])
            return {target: np.zeros(3)}
        taken = fold.measure(target, ["a", "b"])
        with pytest.raises(ProbeBudgetExceeded):
            fold.measure(target, ["c"])
        seen["taken"] = taken
        return {target: np.array([p.value for p in sorted(taken, key=lambda p: p.model_id)] + [0.0])}

    evaluate(bundle, methods=["prober"], targets=["d3"], extra_methods={"prober": prober})
    report = evaluate(
        bundle, methods=["prober"], targets=["d3"], with_probes=True, probe_budget=2, extra_methods={"prober": prober}
    )
    assert len(seen["taken"]) == 2  # type: ignore[arg-type]
    assert report.results[0].probes == 2 and report.results[0].probe_seconds == pytest.approx(4.0)


def test_logme_ranks_by_the_recorded_probe_and_pays_for_all() -> None:
    scores = _scores()
    bundle = tiny_bundle(scores, probes=[("d3", "a", 1.0), ("d3", "b", 2.0), ("d3", "c", 3.0)])
    report = evaluate(bundle, methods=["logme"], targets=["d3"])
    logme = report.results[0]
    assert logme.per_target["d3"]["p@1"] == 1.0
    assert logme.probes == 3 and logme.probe_seconds == pytest.approx(6.0)


def test_report_json_and_table(synth_bundle: Path) -> None:
    from modsnet.data.bundle import read_bundle

    targets = ["d0", "d5", "d9"]
    report = evaluate(read_bundle(synth_bundle), methods=["random", "popularity", "knn"], targets=targets, seed=3)
    data = json.loads(report.to_json())
    assert [m["method"] for m in data["methods"]] == ["random", "popularity", "knn"]
    for method in data["methods"]:
        assert set(method["mean"]) >= {"pearson", "spearman", "weighted_tau", "p@1", "regret@5"}
        assert sorted(method["per_target"]) == targets
    table = report.to_table(per_target=True)
    assert "popularity" in table and "regret@1" in table
    again = evaluate(read_bundle(synth_bundle), methods=["random"], targets=targets, seed=3)
    assert again.results[0].per_target == report.results[0].per_target  # seeded


def test_default_targets(tmp_path: Path) -> None:
    scores = {(f"d{i}", f"m{j}"): (i * j) % 7 / 7 for i in range(4) for j in range(12)}
    snapshot, _ = graph_from_bundle(tiny_bundle(scores))
    assert default_targets(snapshot) == ["d0", "d1", "d2", "d3"]  # every dataset has ≥ 10 records
    (tmp_path / "pearson_correlation.csv").write_text(",d2,d0,average\nx_without_transfer,0.5,0.7,0.6\n")
    assert default_targets(snapshot, published_dir=tmp_path) == ["d2", "d0"]


def test_published_row_is_the_best_cold_start_one(tmp_path: Path) -> None:
    (tmp_path / "pearson_correlation.csv").write_text(
        ",t1,t2,average\nwarm,0.99,0.99,0.99\na_without_transfer,0.6,0.8,0.5\nb_without_transfer,0.5,0.5,0.55\n"
    )
    (tmp_path / "top@1_correlation.csv").write_text(",t1,t2,average\nb_without_transfer,0.7,0.8,0\n")
    result = published_result(tmp_path, ["t1", "t2"], {"t1": 0.9, "t2": 0.8})
    assert result is not None and "b_without_transfer" in result.note  # by its 'average' column
    assert result.per_target["t1"]["pearson"] == 0.5
    assert result.per_target["t1"]["regret@1"] == pytest.approx(0.2)
    assert result.per_target["t1"]["p@1"] is None
    assert math.isclose(result.means["pearson"] or 0, 0.5)


def test_a_target_without_records_is_a_clear_error_not_a_traceback() -> None:
    from modsnet.runtime.errors import InvalidArgument

    bundle = tiny_bundle(_scores())
    with pytest.raises(InvalidArgument, match=r"target 'nope' of tiny has 0 record\(s\) \(no dataset of that id\)"):
        evaluate(bundle, methods=["popularity"], targets=["nope"])
    with pytest.raises(InvalidArgument, match="unknown method"):
        evaluate(bundle, methods=["oracle"], targets=["d3"])


def test_evaluation_command_prints_one_line_for_a_bad_target(synth_bundle: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "services.recommender.evaluation", str(synth_bundle), "--targets", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "evaluation: error: target 'nope' of synth has 0 record(s) (no dataset of that id); at least 2 are needed "
        "to rank"
    ]


def test_a_library_without_dataset_features_evaluates(synth_bundle: Path) -> None:
    """A score matrix with dataset ids only (as many published ones are): kNN has nothing to compare, no crash."""
    from modsnet.data.bundle import read_bundle
    from services.recommender.evaluation import without_dataset_features

    bundle = read_bundle(synth_bundle)
    ids_only = without_dataset_features(bundle)
    assert ids_only.datasets.columns == ["dataset_id"] and not ids_only.features and ids_only.probes is None
    assert [r["dataset_id"] for r in ids_only.datasets.rows] == [r["dataset_id"] for r in bundle.datasets.rows]
    assert bundle.datasets.columns != ["dataset_id"]  # the original is left as it was
    snapshot, _ = graph_from_bundle(ids_only)
    assert all(not d.features for d in snapshot.datasets)
    report = evaluate(ids_only, methods=["popularity", "knn"], targets=["d0", "d5", "d9"])
    knn = report.results[1]
    assert sorted(knn.per_target) == ["d0", "d5", "d9"]
    assert all(-1 <= v["pearson"] <= 1 for v in knn.per_target.values())


def test_the_command_evaluates_a_library_without_its_dataset_features(
    synth_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.recommender.evaluation import main

    args = [str(synth_bundle), "--methods", "popularity", "knn", "--targets", "d0", "d5", "d9", "--budgets", "--json"]
    assert main(args) == 0
    with_features = json.loads(capsys.readouterr().out)
    assert main([*args, "--no-features"]) == 0
    without = json.loads(capsys.readouterr().out)
    knn_with, knn_without = with_features["methods"][1], without["methods"][1]
    assert knn_with["method"] == knn_without["method"] == "knn"
    # Popularity never reads features; the kNN without them has nothing to compare datasets by.
    assert with_features["methods"][0]["per_target"] == without["methods"][0]["per_target"]
    assert knn_with["per_target"] != knn_without["per_target"]
    assert isinstance(knn_without["below_popularity"], dict)


def test_the_report_counts_targets_far_under_popularity() -> None:
    from services.recommender.evaluation import EvaluationReport, MethodResult

    popularity = MethodResult("popularity", {"a": {"pearson": 0.5}, "b": {"pearson": 0.9}, "c": {"pearson": 0.2}})
    # a: 0.35 under, b: 0.05 under (within the bound), c: above popularity's.
    other = MethodResult("knn", {"a": {"pearson": 0.15}, "b": {"pearson": 0.85}, "c": {"pearson": 0.6}})
    report = EvaluationReport("lib", False, 0, ["a", "b", "c"], [popularity, other], 1)
    assert report.below_popularity(other) == pytest.approx({"a": 0.35})
    assert report.below_popularity(popularity) == {}
    assert "1 target(s) > 0.10 Pearson under popularity's (most: a by 0.350)" in report.to_table()
    assert json.loads(report.to_json())["methods"][1]["below_popularity"] == pytest.approx({"a": 0.35})
    alone = EvaluationReport("lib", False, 0, ["a"], [other], 1)
    assert alone.below_popularity(other) is None and "under popularity" not in alone.to_table()


def test_the_report_gives_the_coverage_of_near_and_far_targets_apart() -> None:
    from services.recommender.evaluation import EvaluationReport, MethodResult

    per_target = {t: {"pearson": 0.5, "coverage80": c} for t, c in (("a", 0.9), ("b", 0.7), ("c", 0.6), ("d", 0.8))}
    split = MethodResult("modsnet", per_target, far={"a": False, "b": False, "c": True})  # d: no split made
    assert split.coverage_by_distance() == {
        "near": {"coverage80": pytest.approx(0.8), "targets": 2},
        "far": {"coverage80": pytest.approx(0.6), "targets": 1},
    }
    report = EvaluationReport("lib", False, 0, list(per_target), [split], 1)
    assert "coverage80 by distance to the library: near 0.800 (2 targets), far 0.600 (1 target)" in report.to_table()
    assert json.loads(report.to_json())["methods"][0]["coverage80_by_distance"]["far"]["targets"] == 1
    unsplit = MethodResult("knn", per_target)
    assert (
        unsplit.coverage_by_distance() is None
        and "by distance" not in EvaluationReport("lib", False, 0, list(per_target), [unsplit], 1).to_table()
    )


def test_calibration_on_a_hand_computed_case() -> None:
    from services.recommender.evaluation import calibration_metrics

    true = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    predicted = np.array([0.95, 0.8, 0.6, 0.6, 0.7, 0.2])  # top 5 by prediction: all but the last
    sigma = np.array([0.01, 0.01, 0.1, 0.01, 0.1, 0.1])
    out = calibration_metrics(true, predicted, sigma)
    assert out["top5_mae"] == pytest.approx((0.05 + 0 + 0.1 + 0 + 0.2) / 5)
    assert out["top5_bias"] == pytest.approx((0.05 + 0 - 0.1 + 0 + 0.2) / 5)
    # |error| <= 1.2816 sigma: 0.8 (0), 0.6 (0), 0.7 (0.1 <= 0.128), 0.1 (0.1 <= 0.128); not 0.9, not 0.5
    assert out["coverage80"] == pytest.approx(4 / 6)


@pytest.mark.slow
def test_the_report_carries_the_decision_table_and_the_worst_target(
    synth_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functools import partial

    from modsnet.data.bundle import read_bundle
    from services.recommender import policy
    from services.recommender.decisions import MODSNET, MODSNET_TOP, POPULAR, PORTFOLIO, RANDOM
    from services.recommender.estimators.gnn import GnnConfig
    from services.recommender.evaluation import modsnet_method

    # The table's ModsNet row is the search's policy: one probe at a time, each given the earlier results.
    steps: list[tuple[list[str], list[str]]] = []
    choose = policy.next_probes

    def recording(*args: object, **kwargs: object) -> policy.NextProbes:
        step = choose(*args, **kwargs)  # type: ignore[arg-type]
        steps.append(([p.model_id for p in kwargs["measured"]], step.model_ids))  # type: ignore[attr-defined]
        return step

    monkeypatch.setattr(policy, "next_probes", recording)
    targets = ["d0", "d5", "d9"]
    small = partial(modsnet_method, config=GnnConfig(steps=60, members=2, hidden=16, head=8))
    report = evaluate(
        read_bundle(synth_bundle),
        methods=["modsnet", "popularity", "knn"],
        targets=targets,
        budgets=(0, 1, 3),
        fold_size=3,
        extra_methods={"modsnet": small},
    )
    assert report.decisions is not None
    # B = 3 is 2 probes then the predicted best: per target a step with nothing measured, then one given the first.
    assert [len(measured) for measured, _ in steps] == [0, 1] * len(targets)
    assert all(picks and len(picks) == 1 for _, picks in steps)
    assert all(steps[i + 1][0] == steps[i][1] for i in range(0, len(steps), 2))
    assert set(report.decisions.regret) == {MODSNET, MODSNET_TOP, POPULAR, PORTFOLIO, RANDOM}
    for strategy in (MODSNET, POPULAR, PORTFOLIO, RANDOM):
        assert sorted(report.decisions.regret[strategy][3]) == targets
        assert all(r >= 0 for b in (0, 1, 3) for r in report.decisions.regret[strategy][b].values())
    # More measurements never end worse for a strategy that keeps the best measured of a nested set.
    for t in targets:
        assert report.decisions.regret[POPULAR][3][t] <= report.decisions.regret[POPULAR][1][t] + 1e-12
    text = report.to_table()
    assert "decisions: regret of the best measured model after B measurements" in text
    assert "worst target per method" in text and "coverage80" in text
    data = json.loads(report.to_json())
    assert set(data["decisions"]["mean"]) == {MODSNET, MODSNET_TOP, POPULAR, PORTFOLIO, RANDOM}
    assert data["methods"][0]["worst"]["pearson"][0] in targets


def test_the_knns_scale_is_learned_on_datasets_hidden_as_its_fold_hides_targets(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The evaluation's kNN learns its scale with the library's ids hidden in the shape its fold hides the targets
    (`fold_family`): 4 targets spread over 10 consecutive ids, runs of 10 ids with 4 of each hidden; one target,
    one by one (a random fifth)."""
    bundle = read_bundle(write_library(tmp_path / "lib", n_datasets=40, n_models=6))
    ids = sorted(d["dataset_id"] for d in bundle.datasets.rows)
    fitted: list[Snapshot] = []

    class Recording(KnnPopularityEstimator):
        def __init__(self, snapshot: Snapshot, **kwargs: Any):
            super().__init__(snapshot, **kwargs)
            fitted.append(snapshot)

    def hidden_by_calibration(targets: list[str]) -> tuple[list[list[str]], Snapshot]:
        fitted.clear()
        evaluate(bundle, methods=["knn"], targets=targets, fold_size=len(targets))
        *calibration_fits, served = fitted
        every = {r.dataset_id for r in served.interactions}
        hidden = [sorted(every - {r.dataset_id for r in fit.interactions}) for fit in calibration_fits]
        return hidden, served

    monkeypatch.setattr(evaluation, "KnnPopularityEstimator", Recording)
    held, served = hidden_by_calibration(ids[4:14:3])  # ids 4, 7, 10, 13: a span of 10 at 40%
    assert held == holdout_folds(served, run=10, density=0.4)
    assert held != holdout_folds(served, run=FAMILY_RUN) and held != [sorted(f) for f in holdout_folds(served)]
    held, served = hidden_by_calibration(["d0"])
    assert held == [sorted(f) for f in holdout_folds(served)]  # one by one


def test_folds_interleave_the_sorted_targets_unless_asked_for_runs() -> None:
    """A fold of the default evaluation spreads its targets over the sorted ids, as leave-one-dataset-out's are
    spread; runs of consecutive ids (a family at once in TabZoo and XRDZoo) only when asked."""
    targets = [f"t{i:02d}" for i in range(23)]
    interleaved = evaluation._folds(targets, 10)
    assert interleaved == [targets[0::3], targets[1::3], targets[2::3]]
    assert sorted(t for fold in interleaved for t in fold) == targets
    assert evaluation._folds(targets, 10, contiguous=True) == [targets[:10], targets[10:20], targets[20:]]
    assert evaluation._folds(targets, 1) == [[t] for t in targets]


def test_the_report_says_how_its_folds_hid_the_targets(tmp_path: Path) -> None:
    bundle = read_bundle(write_library(tmp_path / "lib", n_datasets=12, n_models=5))
    targets = sorted(d["dataset_id"] for d in bundle.datasets.rows)[:6]
    interleaved = evaluate(bundle, methods=["popularity"], targets=targets, fold_size=3)
    assert interleaved.folds == 2 and interleaved.fold_rule == "targets hidden in interleaved folds"
    assert "2 fits per method (targets hidden in interleaved folds)" in interleaved.to_table().splitlines()[0]
    assert json.loads(interleaved.to_json())["fold_rule"] == interleaved.fold_rule
    runs = evaluate(bundle, methods=["popularity"], targets=targets, fold_size=3, contiguous_folds=True)
    assert runs.fold_rule == "targets hidden in runs of consecutive ids"
    assert evaluate(bundle, methods=["popularity"], targets=targets).fold_rule == "one target hidden at a time"


def test_the_portfolio_baseline_measures_what_wins_where_the_popular_twins_fail() -> None:
    from services.recommender.decisions import POPULAR, PORTFOLIO

    # a and b are twins, best on most datasets; c wins where they fail (d0, d5). Lower is better (an error).
    scores: dict[tuple[str, str], float] = {}
    for i in range(10):
        fail = i % 5 == 0
        row = {"a": 0.6 if fail else 0.1, "b": 0.61 if fail else 0.11, "c": 0.05 if fail else 0.3, "e": 0.5}
        scores.update({(f"d{i}", m): v for m, v in row.items()})
    bundle = tiny_bundle(scores)
    bundle = dataclasses.replace(bundle, meta={**bundle.meta, "metric": "error", "higher_is_better": False})
    # (the table comes with the modsnet method; popularity stands in for it here: only the baselines are read)
    report = evaluate(
        bundle,
        methods=["modsnet"],
        targets=["d0", "d5"],
        budgets=(0, 1, 2),
        fold_size=1,
        extra_methods={"modsnet": popularity_method},
    )
    assert report.decisions is not None
    regret = report.decisions.regret
    # popular-B measures the twins a and b (lowest mean error): both fail on d0 and d5. The portfolio adds c.
    assert regret[POPULAR][2] == pytest.approx({"d0": 0.55, "d5": 0.55})
    assert regret[PORTFOLIO][2] == pytest.approx({"d0": 0.0, "d5": 0.0})
    # With one measurement both trust the best on the most datasets: a.
    assert regret[PORTFOLIO][1] == regret[POPULAR][1] == pytest.approx({"d0": 0.55, "d5": 0.55})
