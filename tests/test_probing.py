"""Probes measure candidate models on the query's own data: within bounds, in any thread, never failing.

Tabular probes run TabZoo settings on a generated table with a planted signal; XRD probes run the committed
XRDZoo finders (read from the bundle as the service reads them: bytes) on planted scans whose true peaks
are known, and on a real measured scan where one can be had (pypowder's, as in test_exemplars).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import pytest

from modsnet.data.exemplar import Exemplar, load_exemplar
from modsnet.data.graph import LibraryInfo, ModelNode, ProbeRecord
from modsnet.features.xrd import Scan
from modsnet.models.peaks import f1_at_tolerance, load_finder
from modsnet.models.probing import (
    CLASS_FLOOR,
    KIND_AGREEMENT,
    KIND_SCORE,
    SAMPLE_ROWS,
    _consensus,
    can_probe,
    measure,
    needs_artifact,
    probe_sample,
)
from modsnet.models.tabular import TARGET, model_settings

ROOT = Path(__file__).resolve().parents[1]
XRDZOO_BUNDLE = ROOT / "modsnet" / "libraries" / "xrdzoo"
TABZOO = LibraryInfo("tabzoo", {"modality": "tabular", "metric": "balanced_accuracy"}, 44, 42, 0, 1, "", 0.0)
XRDZOO = LibraryInfo("xrdzoo", {"modality": "xrd", "metric": "peak_f1"}, 308, 270, 0, 1, "", 0.0)
STRONG, WEAK = "rf-n100-dfull", "tree-d1"  # a forest sees the planted interaction, a stump cannot
EVERYTHING = {"kind": "find_peaks", "prominence": 0.0}  # every local maximum: each noise wiggle is a peak
NOTHING = {"kind": "find_peaks", "prominence": 2.0}  # more than the scaled scan's whole range: no peak

_T = TypeVar("_T")


def _in_thread(work: Callable[[], _T]) -> _T:
    """Run `work` in a worker thread, as the query service's gRPC handlers run probes."""
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(work()))
    worker.start()
    worker.join()
    return out[0]


# ----------------------------------------------------------------------------------------------- tabular


@pytest.fixture(scope="module")
def planted_table() -> Exemplar:
    """462 rows whose label is the sign of x0·x1 (an interaction, 5% flipped), with a categorical column,
    missing values and a numeric feature called 'class' beside the real target 'label'."""
    rng = np.random.default_rng(3)
    rows = 462
    x = rng.normal(size=(rows, 6))
    label = np.where(x[:, 0] * x[:, 1] > 0, "same", "opposite")
    flip = rng.random(rows) < 0.05
    label[flip] = np.where(label[flip] == "same", "opposite", "same")
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    table.loc[rng.random(rows) < 0.05, "x3"] = np.nan
    table["colour"] = rng.choice(["red", "green", "blue"], rows)
    table["class"] = rng.normal(size=rows)
    table["label"] = label
    return Exemplar("tabular", "planted.csv", rows, table=table, target="label")


def _tabzoo(*ids: str) -> list[tuple[ModelNode, bytes | None]]:
    known = {s.model_id for s in model_settings()}
    assert set(ids) <= known, f"not TabZoo settings (any more): {sorted(set(ids) - known)}"
    return [(ModelNode("tabzoo", model_id, {}), None) for model_id in ids]


@pytest.fixture
def roomy_probe_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-probe limit no busy machine reaches: these tests check what a probe measures, not its limit (the
    limit's own tests are below); at 5 s, a random forest's fits missed it with every core taken."""
    import modsnet.models.probing as probing

    monkeypatch.setattr(probing, "PROBE_LIMIT_S", 120.0)


@pytest.mark.usefixtures("roomy_probe_limit")
def test_a_strong_setting_probes_higher_than_a_weak_one(planted_table: Exemplar) -> None:
    known = {s.model_id for s in model_settings()}
    assert {STRONG, WEAK, "gaussian-nb"} <= known
    probes = measure(TABZOO, planted_table, _tabzoo(STRONG, WEAK, "gaussian-nb"), budget_seconds=600)
    by_id = {p.model_id: p for p in probes}
    assert list(by_id) == [STRONG, WEAK, "gaussian-nb"]  # in the order given
    assert all(p.probe == KIND_SCORE and 0 <= p.value <= 1 and p.seconds > 0 for p in probes)
    assert by_id[STRONG].value > 0.7 and by_id[STRONG].value > by_id[WEAK].value + 0.15
    # 462 rows: under TabZoo's row cap, so probed whole, as the library measures such a table
    assert by_id[STRONG].detail == f"balanced accuracy {by_id[STRONG].value:.3f} by 3-fold CV on all 462 rows"
    assert all(p.whole for p in probes)


@pytest.mark.usefixtures("roomy_probe_limit")
def test_a_worker_thread_measures_the_same_as_the_main_thread(planted_table: Exemplar) -> None:
    """evaluate() bounds fits by SIGALRM in the main thread and by a timer elsewhere: the same results."""
    models = _tabzoo(STRONG, WEAK, "hgb-i50-l15-lr0.1")
    in_main = measure(TABZOO, planted_table, models, budget_seconds=600)
    in_worker = _in_thread(lambda: measure(TABZOO, planted_table, models, budget_seconds=600))
    assert [(p.model_id, p.value) for p in in_worker] == [(p.model_id, p.value) for p in in_main]
    assert len(in_main) == 3


@pytest.mark.parametrize("where", ["main", "worker"])
def test_a_probe_past_its_limit_is_cut_short_and_left_out(planted_table: Exemplar, where: str) -> None:
    """100 boosting iterations outlast 0.01 s a fold (a 0.03 s budget): interrupted in any thread, not waited for."""
    slow = _tabzoo("hgb-i100-l31-lr0.1", "mlp-h32-a0.0001")

    def probe() -> tuple[list[ProbeRecord], float]:
        started = time.perf_counter()
        return measure(TABZOO, planted_table, slow, budget_seconds=0.03), time.perf_counter() - started

    probes, seconds = probe() if where == "main" else _in_thread(probe)
    assert probes == [] and seconds < 1.5


def test_the_probe_sample_keeps_every_class_at_the_librarys_floor() -> None:
    # 3,000 rows, one class of 12 and one of 40: a uniform 300-row draw keeps ~1 and ~4 of them.
    rng = np.random.default_rng(0)
    label = np.array(["common"] * 2948 + ["rare"] * 12 + ["scarce"] * 40)
    table = pd.DataFrame({"x": rng.normal(size=len(label)), "y": rng.permutation(label)})
    sample = probe_sample(Exemplar("tabular", "rare.csv", len(label), table=table, target="y"), seed=0)
    assert sample is not None
    counts = sample[TARGET].value_counts()
    assert counts["rare"] == 12 and counts["scarce"] >= CLASS_FLOOR
    assert len(sample) <= SAMPLE_ROWS + 12 + CLASS_FLOOR


def test_a_probe_reads_what_the_library_records_for_the_table() -> None:
    """Issue 16 point 2: a probe samples a large table as TabZoo's generator sampled its own (same rows: the
    same function, seed and class floor) and scores it by the same protocol, so it reads the record the library
    would hold for the table, not a smaller sample's noisier, lower score."""
    from modsnet.models import tabular
    from modsnet.models.tabular import evaluate
    from modsnet.offline.zoo import tabular as zoo

    assert SAMPLE_ROWS == tabular.ROW_CAP
    rng = np.random.default_rng(11)
    rows = 2_500
    x = rng.normal(size=(rows, 4))
    label = np.where(x[:, 0] + 0.5 * x[:, 1] > 1.2, "rare", "common")  # ~14% minority
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    table["y"] = label

    class Source:  # the generator's view of a dataset: an id and a table to load
        dataset_id = "planted-large"

        @staticmethod
        def load() -> pd.DataFrame:
            return table.rename(columns={"y": TARGET})

    capped = zoo._prepare(Source(), seed=0).capped  # type: ignore[arg-type]
    exemplar = Exemplar("tabular", "large.csv", rows, table=table, target="y")
    sample = probe_sample(exemplar, seed=0)
    assert sample is not None and len(sample) == len(capped) < rows
    pd.testing.assert_frame_equal(sample.reset_index(drop=True), capped.reset_index(drop=True), check_dtype=False)
    setting = next(s for s in model_settings() if s.model_id == "logreg-c1")
    (probe,) = measure(TABZOO, exemplar, _tabzoo("logreg-c1"), budget_seconds=60.0)
    record = evaluate(setting, capped, seed=0, timeout=60.0)
    assert probe.value == pytest.approx(record["score"], abs=1e-12)
    assert probe.detail.endswith(f"on {len(capped)} of {rows} rows, as the library samples a table")


def test_no_target_or_no_budget_gives_no_probes(planted_table: Exemplar) -> None:
    models = _tabzoo(STRONG, WEAK)
    unlabelled = Exemplar("tabular", "planted.csv", 462, table=planted_table.table, target="")
    assert measure(TABZOO, unlabelled, models) == []
    assert measure(TABZOO, planted_table, models, budget_seconds=0) == []
    assert planted_table.table is not None
    one_class = planted_table.table.assign(label="same")
    assert measure(TABZOO, Exemplar("tabular", "x.csv", 462, table=one_class, target="label"), models) == []


def test_unknown_or_unprobeable_models_are_skipped(planted_table: Exemplar) -> None:
    models = [(ModelNode("tabzoo", "no-such-setting", {}), None), *_tabzoo(WEAK)]
    assert [p.model_id for p in measure(TABZOO, planted_table, models)] == [WEAK]


def test_which_tabular_models_can_be_probed() -> None:
    # Model metadata as the knowledge store keeps it: the models.csv row, less the id, as strings.
    table = pd.read_csv(ROOT / "modsnet" / "libraries" / "tabzoo" / "models.csv", dtype=str).set_index("model_id")
    rows = {model_id: dict(row) for model_id, row in table.iterrows()}
    assert can_probe(TABZOO, ModelNode("tabzoo", STRONG, rows[STRONG]))
    assert can_probe(TABZOO, ModelNode("tabzoo", WEAK, {}))
    assert not can_probe(TABZOO, ModelNode("tabzoo", "xgboost-1", {}))
    # TabZoo rebuilt under another name: its models.csv says they are this version's settings.
    renamed = LibraryInfo("tabzoo-2", TABZOO.meta, 44, 42, 0, 1, "", 0.0)
    assert can_probe(renamed, ModelNode("tabzoo-2", STRONG, rows[STRONG]))
    # Another tabular library: an id that is a TabZoo setting's name but another model, or undescribed.
    other = LibraryInfo("openml-cc18", {"modality": "tabular", "metric": "balanced_accuracy"}, 1, 1, 0, 1, "", 0.0)
    assert not can_probe(other, ModelNode("openml-cc18", "knn-k5", {"estimator": "XGBClassifier", "params": "{}"}))
    assert not can_probe(other, ModelNode("openml-cc18", "knn-k5", {}))
    changed = {**rows["knn-k5"], "params": json.dumps({"n_neighbors": 7, "weights": "uniform"})}
    assert not can_probe(renamed, ModelNode("tabzoo-2", "knn-k5", changed))
    other_metric = LibraryInfo("tabzoo", {"modality": "tabular", "metric": "accuracy"}, 1, 1, 0, 1, "", 0.0)
    assert not can_probe(other_metric, ModelNode("tabzoo", WEAK, {}))
    assert not needs_artifact(TABZOO)


# ----------------------------------------------------------------------------------------------- XRD


PLANTED = (
    np.array([15.3, 21.7, 28.2, 33.9, 38.45, 44.1, 50.6, 55.25, 61.8, 67.3, 72.9, 77.05]),
    np.array([18.1, 26.4, 31.0, 36.7, 43.3, 52.8, 57.6, 64.2, 70.1]),
    np.array([12.5, 19.9, 24.35, 29.8, 35.5, 41.2, 47.75, 53.3, 59.9, 66.6, 74.4]),
)


@pytest.fixture(scope="module")
def planted_scans() -> Exemplar:
    """Three Cu Kα scans with known Gaussian peaks on sloping backgrounds, with Poisson counting noise."""
    rng = np.random.default_rng(7)
    x = np.round(np.arange(10.0, 80.0 + 1e-9, 0.02), 4)
    scans = []
    for peaks in PLANTED:
        expected = 60 + 30 * (x - 10) / 70
        for centre, height in zip(peaks, rng.uniform(300, 3000, len(peaks)), strict=True):
            expected = expected + height * np.exp(-4 * math.log(2) * ((x - centre) / 0.15) ** 2)
        scans.append(Scan(x, rng.poisson(expected).astype(float), 1.5406, {"format": "xy"}))
    return Exemplar("xrd", "planted.zip", len(scans), scans=tuple(scans))


@pytest.fixture(scope="module")
def finders() -> list[tuple[ModelNode, bytes | None]]:
    """The committed XRDZoo's best finder (mean score) of each family, as (node, artifact bytes)."""
    models = pd.read_csv(XRDZOO_BUNDLE / "models.csv").set_index("model_id")
    mean = pd.read_csv(XRDZOO_BUNDLE / "interactions.csv").groupby("model_id")["score"].mean()
    chosen: list[tuple[ModelNode, bytes | None]] = []
    for family in ("cnn", "find_peaks", "derivative", "cwt"):
        best = mean[models.loc[mean.index, "family"] == family].idxmax()
        artifact = str(models.loc[best, "artifact"])
        data = (XRDZOO_BUNDLE / "artifacts" / artifact).read_bytes()  # what storage hands the service
        chosen.append((ModelNode("xrdzoo", best, {}, artifact_blob_id=f"blob-{artifact}"), data))
    return chosen


def _spec(name: str, spec: dict[str, Any]) -> tuple[ModelNode, bytes | None]:
    return ModelNode("xrdzoo", name, {}, artifact_blob_id=f"blob-{name}"), json.dumps(spec).encode()


def _check_agreement(probes: list[ProbeRecord], good: list[str]) -> dict[str, float]:
    value = {p.model_id: p.value for p in probes}
    assert all(p.probe == KIND_AGREEMENT and 0 <= p.value <= 1 and p.seconds >= 0 for p in probes)
    assert max(value[m] for m in good) > 0.5
    assert max(value["everything"], value["nothing"]) < min(value[m] for m in good)
    return value


def test_finders_agreeing_with_the_consensus_score_high_and_bad_ones_low(
    planted_scans: Exemplar, finders: list[tuple[ModelNode, bytes | None]]
) -> None:
    models = [*finders, _spec("everything", EVERYTHING), _spec("nothing", NOTHING)]
    probes = measure(XRDZOO, planted_scans, models, budget_seconds=20)
    assert [p.model_id for p in probes] == [m.model_id for m, _ in models]
    good = [m.model_id for m, _ in finders]
    value = _check_agreement(probes, good)
    assert "consensus of 6 probed finders on 3 of 3 scans" in probes[0].detail
    # On planted scans the truth is known: agreement ranks the finders as their real F1 does, roughly.
    truth = {}
    for model, artifact in models:
        assert artifact is not None
        finder = load_finder(artifact)
        found = [finder.find(s.two_theta, s.intensity) for s in planted_scans.scans]
        truth[model.model_id] = np.mean([f1_at_tolerance(f, t, 0.1) for f, t in zip(found, PLANTED, strict=True)])
    assert max(value, key=value.__getitem__) in {m for m in good if truth[m] >= 0.9}
    assert np.corrcoef([value[m] for m in value], [truth[m] for m in value])[0, 1] > 0.9


def test_agreement_needs_three_finders(planted_scans: Exemplar, finders: list[tuple[ModelNode, bytes | None]]) -> None:
    assert measure(XRDZOO, planted_scans, finders[:2]) == []
    broken = (ModelNode("xrdzoo", "broken", {}, artifact_blob_id="blob-broken"), b"not an onnx model")
    no_artifact = (ModelNode("xrdzoo", "bare", {}), None)
    assert measure(XRDZOO, planted_scans, [*finders[:2], broken, no_artifact]) == []
    assert len(measure(XRDZOO, planted_scans, [*finders[:3], broken])) == 3
    assert measure(XRDZOO, planted_scans, finders, budget_seconds=0) == []


def test_a_real_scan_in_a_worker_thread(finders: list[tuple[ModelNode, bytes | None]]) -> None:
    """pypowder's measured pattern (ASG1_1, 4,999 points), probed as the service probes: from a worker thread."""
    from test_exemplars import _sdist  # the shared download cache of the real-file tests

    exemplar = load_exemplar(_sdist("pypowder", "1.0") / "tests" / "ASG1_1.xy", name="ASG1_1.xy")
    models = [*finders, _spec("everything", EVERYTHING), _spec("nothing", NOTHING)]
    probes = _in_thread(lambda: measure(XRDZOO, exemplar, models, budget_seconds=20))
    assert len(probes) == len(models)
    _check_agreement(probes, [m.model_id for m, _ in finders])


def test_which_xrd_models_can_be_probed(finders: list[tuple[ModelNode, bytes | None]]) -> None:
    assert can_probe(XRDZOO, finders[0][0]) and needs_artifact(XRDZOO)
    assert not can_probe(XRDZOO, ModelNode("xrdzoo", "bare", {}))
    # As a graph snapshot has it: the bundle's artifact path, resolved to a blob by `get_model` later.
    assert can_probe(XRDZOO, ModelNode("xrdzoo", "named", {"artifact": "artifacts/named.json"}))
    text = LibraryInfo("textzoo", {"modality": "text"}, 1, 1, 0, 1, "", 0.0)
    # A text probe takes the artifact too: a transfer model's holds its trunk.
    assert not can_probe(text, ModelNode("textzoo", "m", {}, artifact_blob_id="blob")) and needs_artifact(text)


def test_a_query_of_another_modality_gives_no_probes(
    planted_table: Exemplar, finders: list[tuple[ModelNode, bytes | None]]
) -> None:
    assert measure(XRDZOO, planted_table, finders) == []


def test_consensus_takes_the_peaks_half_the_votes_agree_on() -> None:
    finders = [np.array([20.0, 30.0]), np.array([20.05, 40.0]), np.array([19.95, 30.02, 50.0])]
    # 20 by all three (at their median), 30 by two of three; 40 and 50 by one.
    np.testing.assert_allclose(_consensus(finders), [20.0, 30.01])
    np.testing.assert_array_equal(_consensus(finders, weights=[1.0, 1.0, 1.0]), _consensus(finders))
    # One finder holding most of the weight decides alone.
    np.testing.assert_allclose(_consensus(finders, weights=[0.1, 5.0, 0.1]), [20.0, 40.0])


def test_a_three_percent_minority_is_probed_on_enough_rows_to_be_scored() -> None:
    """Issue 16's table (a 3% minority, a probe of 0.698 for a setting truly scoring 0.910): a uniform 300-row draw
    keeps ~9 minority rows, three a CV fold; the probe's sample keeps the library's floor, so a minority a stump
    separates cleanly scores as it does on the whole table."""
    rng = np.random.default_rng(5)
    rows = 3000
    label = np.where(rng.random(rows) < 0.03, "minority", "majority")
    x = np.where(label == "minority", 3.0, 0.0) + rng.normal(scale=0.3, size=rows)  # one cut separates them
    table = pd.DataFrame({"x": x, "noise": rng.normal(size=rows), "y": label})
    exemplar = Exemplar("tabular", "minority.csv", rows, table=table, target="y")
    sample = probe_sample(exemplar, seed=0)
    assert sample is not None and sample[TARGET].value_counts()["minority"] >= CLASS_FLOOR
    (probe,) = measure(TABZOO, exemplar, _tabzoo("tree-d1"), budget_seconds=30.0)
    assert probe.value > 0.95  # balanced accuracy: both classes recognised, the minority on >= 6 rows a fold


class _Selector:
    """The recommender's probe selection as the query core calls it: the next `budget` models of a fixed order that
    were not tried, with each call's arguments kept."""

    def __init__(self, order: list[str]) -> None:
        self.order, self.calls = order, []

    def select_probes(self, library: str, features: dict[str, float], **kwargs: Any) -> Any:
        from modsnet.data.graph import ProbeChoice

        self.calls.append(kwargs)
        done = {p.model_id for p in kwargs["measured"]} | set(kwargs["tried"])
        return ProbeChoice([m for m in self.order if m not in done][: kwargs["budget"]])


@pytest.mark.parametrize("modality", ["tabular", "text", "xrd"])
def test_a_probe_that_could_not_be_measured_costs_no_measurement_of_the_budget_where_probes_go_in_rounds(
    modality: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tabular and text probes go one round a model, each given the last; a model that could not be measured (a
    failed fit, a transformer too slow for the time left) is replaced by the next pick, up to `budget` more tries.
    XRD's finders go in one round (their agreement is relative to the set), as the selector's batch."""
    from services.query.core import QueryCore

    order = ["slow-a", "m1", "slow-b", "m2", "slow-c", "slow-d", "slow-e", "m3"]
    selector = _Selector(order)
    core = QueryCore(None, None, selector, max_upload_bytes=1 << 20, probe_round=1)  # type: ignore[arg-type]
    rounds: list[list[str]] = []

    def measure(library: LibraryInfo, exemplar: Exemplar, chosen: list[str], seconds: float) -> list[ProbeRecord]:
        rounds.append(chosen)
        return [ProbeRecord(m, "query", KIND_SCORE, 0.5) for m in chosen if not m.startswith("slow")]

    monkeypatch.setattr(core, "_measure", measure)
    library = LibraryInfo("lib", {"modality": modality}, 8, 1, 8, 1, "", 0.0)
    probes, _ = core._probe(library, Exemplar(modality, "x", 10), "fs", {}, 2, "")
    if modality == "xrd":
        assert rounds == [["slow-a", "m1"]] and [p.model_id for p in probes] == ["m1"]
        return
    assert rounds == [["slow-a"], ["m1"], ["slow-b"], ["m2"]] and [p.model_id for p in probes] == ["m1", "m2"]
    assert selector.calls[2]["tried"] == ["slow-a"]  # the failed one is not picked again
    # Never more than `budget` tries past the budget: 4 for a budget of 2, here 1 measured of them.
    rounds.clear()
    selector.order = ["slow-a", "slow-b", "slow-c", "m1", "slow-d", "m2"]
    probes, _ = core._probe(library, Exemplar(modality, "x", 10), "fs", {}, 2, "")
    assert len(rounds) == 4 and [p.model_id for p in probes] == ["m1"]
