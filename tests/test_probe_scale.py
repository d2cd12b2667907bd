"""Probe records (issue 16 point 2): `probe_records.csv` read and validated, the probe-to-record scale learned from
it, and what uses it: the search's correction and noise, the decision table's honest probes."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modsnet.data.bundle import PROBE_RECORDS, bundle_members, canonical, read_bundle, write_bundle
from modsnet.data.graph import QUERY_DATASET, Constraints, ProbeRecord
from modsnet.data.probe_scale import META_KEY, ProbeScale, learn_probe_scale, on_record_scale
from modsnet.models.probing import SAMPLE_ROWS
from modsnet.runtime.errors import InvalidArgument
from services.recommender import policy
from services.recommender.decisions import Ranking, pick_regret
from services.recommender.evaluation import decision_probes, evaluate, graph_from_bundle

SHIFT = -0.03  # probe - record planted in the tests' probe records


def _with_probe_records(bundle_dir: Path, *, shift: float = SHIFT, noise: float = 0.01, seed: int = 0) -> Path:
    """`bundle_dir` with a probe record of every pair: the record plus `shift` and normal noise."""
    rng = np.random.default_rng(seed)
    interactions = pd.read_csv(bundle_dir / "interactions.csv")
    records = pd.DataFrame(
        {
            "dataset_id": interactions["dataset_id"],
            "model_id": interactions["model_id"],
            "score": (interactions["score"] + shift + noise * rng.normal(size=len(interactions))).round(6),
            "rows": 100,
        }
    )
    records.to_csv(bundle_dir / PROBE_RECORDS, index=False)
    # Tables larger than a probe's sample, as TabZoo's probe records hold (a smaller one is probed whole).
    datasets = pd.read_csv(bundle_dir / "datasets.csv")
    datasets["n_rows"] = 2 * SAMPLE_ROWS
    datasets.to_csv(bundle_dir / "datasets.csv", index=False)
    return bundle_dir


@pytest.fixture
def bundle_dir(tmp_path: Path, synth_bundle: Path) -> Path:
    return Path(shutil.copytree(synth_bundle, tmp_path / "lib"))


# ------------------------------------------------------------------------------------------ learning the scale


def _gaps(datasets: int, models: int, family_of: dict[str, str], extra: dict[str, float], seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    recorded, probes = {}, []
    for d in range(datasets):
        level = 0.01 * rng.normal()  # a dataset's own gap
        for m in range(models):
            model = f"m{m}"
            recorded[(f"d{d}", model)] = 0.8
            gap = SHIFT + level + extra.get(family_of[model], 0.0) + 0.02 * rng.normal()
            probes.append((f"d{d}", model, 0.8 + gap))
    return probes, recorded


def test_the_level_and_the_noise_are_learned_and_a_family_only_beyond_noise() -> None:
    family_of = {f"m{m}": ("svm" if m < 4 else "tree" if m < 8 else "knn") for m in range(12)}
    probes, recorded = _gaps(30, 12, family_of, {"svm": -0.05})
    scale = learn_probe_scale(probes, recorded, family_of)
    assert scale is not None and scale.pairs == 360 and scale.datasets == 30
    # The svm family's own shift is far beyond its noise and set apart; the level is the other families' gap.
    assert scale.shift == pytest.approx(SHIFT, abs=0.005)
    assert set(scale.family_shift) == {"svm"} and scale.family_shift["svm"] == pytest.approx(SHIFT - 0.05, abs=0.01)
    assert scale.sd == pytest.approx(np.hypot(0.02, 0.01), abs=0.006)
    assert scale.corrected(0.7, "svm") == pytest.approx(0.7 - scale.family_shift["svm"])
    assert scale.corrected(0.7, "tree") == pytest.approx(0.7 - scale.shift)


def test_too_few_pairs_or_datasets_teach_nothing() -> None:
    family_of = {f"m{m}": "x" for m in range(20)}
    probes, recorded = _gaps(4, 20, family_of, {})  # 80 pairs, but 4 datasets
    assert learn_probe_scale(probes, recorded, family_of) is None
    probes, recorded = _gaps(30, 12, family_of, {})
    assert learn_probe_scale(probes, recorded, family_of, exclude={f"d{d}" for d in range(26)}) is None
    assert learn_probe_scale(probes, recorded, family_of, exclude={"d0"}).datasets == 29  # type: ignore[union-attr]


def test_the_scale_goes_through_the_librarys_metadata_and_refuses_nonsense() -> None:
    scale = ProbeScale(-0.02, 0.05, 100, 10, {"svm": -0.04})
    assert ProbeScale.from_meta(scale.to_meta()) == scale
    assert ProbeScale.of_library({META_KEY: scale.to_meta()}) == scale
    assert ProbeScale.of_library({}) is None
    for bad in ({"shift": "x", "sd": 1, "pairs": 1, "datasets": 1}, {"shift": 0, "sd": -1, "pairs": 1, "datasets": 1}):
        with pytest.raises(ValueError):
            ProbeScale.from_meta(bad)


def test_measurements_are_put_on_the_record_scale_and_other_kinds_are_not() -> None:
    probes = [
        ProbeRecord("m0", "q", "score", 0.70, 1.0, "balanced accuracy 0.700"),
        ProbeRecord("m1", "q", "LogME", 2.0),
    ]
    assert on_record_scale(None, probes) == probes
    shifted = on_record_scale(ProbeScale(-0.02, 0.05, 100, 10, {"svm": -0.04}), probes, {"m0": "svm"}.get)
    assert shifted[0].value == pytest.approx(0.74) and "+0.040 to the library's record scale" in shifted[0].detail
    assert shifted[1] == probes[1]


# ------------------------------------------------------------------------------------------ the bundle file


def test_a_bundle_with_probe_records_reads_writes_and_learns_its_scale(bundle_dir: Path, tmp_path: Path) -> None:
    plain = read_bundle(bundle_dir)
    assert plain.probe_records is None and META_KEY not in plain.meta  # the file is optional
    bundle = read_bundle(_with_probe_records(bundle_dir))
    assert bundle.probe_records is not None and len(bundle.probe_records.rows) == 60
    scale = ProbeScale.of_library(bundle.meta)
    assert scale is not None and scale.shift == pytest.approx(SHIFT, abs=0.005) and scale.datasets == 10
    assert PROBE_RECORDS in bundle_members(bundle)
    again = read_bundle(write_bundle(bundle, tmp_path / "copy"))
    assert canonical(again) == canonical(bundle) and again.meta[META_KEY] == bundle.meta[META_KEY]


@pytest.mark.parametrize(
    ("line", "column", "value", "message"),
    [
        (3, "model_id", "ghost", r"probe_records\.csv line 3, column 'model_id': 'ghost' is not in models\.csv"),
        (4, "dataset_id", "nowhere", r"probe_records\.csv line 4, column 'dataset_id': 'nowhere' is not in datasets"),
        (5, "score", "nan", r"probe_records\.csv line 5, column 'score': 'nan' is not a finite number"),
        (6, "rows", "0", r"probe_records\.csv line 6, column 'rows': '0' is not a positive whole number"),
        (7, "rows", "2.5", r"probe_records\.csv line 7, column 'rows': '2.5' is not a positive whole number"),
    ],
)
def test_bad_probe_records_are_refused_naming_file_line_and_column(
    bundle_dir: Path, line: int, column: str, value: str, message: str
) -> None:
    path = _with_probe_records(bundle_dir) / PROBE_RECORDS
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidArgument, match=message):
        read_bundle(bundle_dir)


def test_a_repeated_pair_and_a_score_outside_the_metric_range_are_refused(bundle_dir: Path) -> None:
    path = _with_probe_records(bundle_dir) / PROBE_RECORDS
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(InvalidArgument, match=r"probe_records\.csv line 62: .* repeats line 2"):
        read_bundle(bundle_dir)
    cells = lines[4].split(",")
    cells[2] = "1.5"
    path.write_text("\n".join([*lines[:4], ",".join(cells), *lines[5:]]) + "\n")
    meta = bundle_dir / "library.yaml"
    meta.write_text(meta.read_text() + "metric_range: [0.0, 1.0]\n")
    with pytest.raises(
        InvalidArgument, match=r"probe_records\.csv line 5, column 'score': '1.5' is outside the metric"
    ):
        read_bundle(bundle_dir)


def test_a_hand_written_scale_in_library_yaml_is_validated(bundle_dir: Path) -> None:
    meta = bundle_dir / "library.yaml"
    meta.write_text(meta.read_text() + "probe_scale: {shift: -0.02, sd: -1, pairs: 10, datasets: 2}\n")
    with pytest.raises(InvalidArgument, match=r"library\.yaml, key 'probe_scale'"):
        read_bundle(bundle_dir)


# ------------------------------------------------------------------------------------------ the search


class _Knowledge:
    """The recommender's view of knowledge over one snapshot."""

    def __init__(self, snapshot: Any) -> None:
        self.snapshot_ = snapshot

    def graph_head(self, library: str) -> tuple[int, str]:
        return self.snapshot_.graph_version, self.snapshot_.library.bundle_blob_id

    def graph_version(self, library: str) -> int:
        return self.snapshot_.graph_version

    def snapshot(self, library: str) -> Any:
        return self.snapshot_

    def snapshot_since(self, library: str, since_version: int) -> Any:
        return self.snapshot_

    def close(self) -> None:
        pass


def _core(snapshot: Any) -> Any:
    from services.recommender.core import RecommenderCore

    return RecommenderCore(_Knowledge(snapshot), None, estimator="knn", device="cpu")


def test_the_search_corrects_probes_by_the_librarys_scale_and_a_library_without_is_as_before(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot, _ = graph_from_bundle(read_bundle(bundle_dir))
    assert META_KEY not in snapshot.library.meta
    scale = ProbeScale(-0.05, 0.04, 60, 10)
    scaled = dataclasses.replace(
        snapshot,
        library=dataclasses.replace(snapshot.library, meta={**snapshot.library.meta, META_KEY: scale.to_meta()}),
    )
    features = dict(snapshot.datasets[3].features)
    probes = [ProbeRecord("m1", "", "score", 0.97, 1.0, "balanced accuracy 0.970")]
    noises: list[object] = []
    choose = policy.next_probes

    def recording(*args: object, **kwargs: object) -> policy.NextProbes:
        noises.append(kwargs.get("noise_sd"))
        return choose(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(policy, "next_probes", recording)
    # The synthetic models are no TabZoo settings: let the search take them as measurable.
    monkeypatch.setattr("services.recommender.core._probeable", lambda library, models: [m.model_id for m in models])
    answers = {}
    for name, graph in (("plain", snapshot), ("scaled", scaled)):
        core = _core(graph)
        try:
            answers[name] = core.recommend("synth", features, k=3, constraints=Constraints(), probes=probes)
            core.select_probes("synth", features, budget=2, measured=probes)
        finally:
            core.close()
    # The measured model beats every prediction either way, weighed by its posterior estimate (the reading shrunk
    # toward its prediction): the reading as measured without a scale, shifted with one.
    plain, scaled_pick = answers["plain"].recommendation, answers["scaled"].recommendation
    assert plain.measured and plain.score < 0.97 and plain.reason.startswith("measured 0.970 (estimated")
    assert scaled_pick.measured and scaled_pick.score < 0.97 + 0.05
    assert scaled_pick.reason.startswith("measured 0.970 (1.020 on the library's record scale; estimated")
    assert noises == [None, scale.sd]  # the policy's noise: as before without a scale, the measured sd with one


def test_the_policys_probe_noise_is_the_measured_sd_where_known() -> None:
    sd = np.array([0.1, 0.3])
    assert policy._noise(None, sd) == pytest.approx(policy.NOISE * 0.05)
    assert policy._noise(0.05, sd) == pytest.approx(0.0025)


# ------------------------------------------------------------------------------------------ the decision table


def test_the_user_keeps_the_model_that_measured_best_as_they_saw_it() -> None:
    true = {"a": 0.90, "b": 0.85, "c": 0.60, "d": 0.70}
    predicted = {"a": 0.1, "b": 0.2, "c": 0.9, "d": 0.3}  # c is the predicted best
    # Probed a and b; a sample read b above a, so the user keeps b (0.05 under the best), c measured after them worse.
    honest = Ranking(predicted, frozenset({"a", "b"}), {"a": 0.70, "b": 0.75})
    assert pick_regret(true, honest, 3) == pytest.approx(0.05)
    assert pick_regret(true, Ranking(predicted, frozenset({"a", "b"})), 3) == 0.0  # as the records: a
    # A probe that read high is kept over the model measured in full after it, though that one is better.
    other = {"a": 0.6, "b": 0.7, "c": 0.8, "d": 0.5}
    assert pick_regret(other, Ranking(predicted, frozenset({"a", "b"}), {"a": 0.6, "b": 0.95}), 3) == pytest.approx(0.1)
    assert pick_regret(other, Ranking(predicted, frozenset({"a", "b"}), {"a": 0.6, "b": 0.65}), 3) == 0.0


def test_decision_probes_read_a_targets_own_records_else_the_record_shifted_with_seeded_noise(
    bundle_dir: Path,
) -> None:
    bundle_dir = _with_probe_records(bundle_dir)
    records = pd.read_csv(bundle_dir / PROBE_RECORDS)
    records[records["dataset_id"] != "d5"].to_csv(bundle_dir / PROBE_RECORDS, index=False)  # d5: no probe records
    bundle = read_bundle(bundle_dir)
    truth = {
        t: {r["model_id"]: float(r["score"]) for r in bundle.interactions.rows if r["dataset_id"] == t}
        for t in ("d0", "d5")
    }
    scale = ProbeScale(-0.04, 0.02, 54, 9)
    reads = decision_probes(bundle, ["d0", "d5"], truth, scale, {}, seed=0)
    own = {r["model_id"]: float(r["score"]) for r in bundle.probe_records.rows if r["dataset_id"] == "d0"}  # type: ignore[union-attr]
    assert reads["d0"] == own
    gaps = np.array([reads["d5"][m] - truth["d5"][m] for m in truth["d5"]])
    assert abs(gaps.mean() - scale.shift) < 3 * scale.sd and gaps.std() > 0
    assert decision_probes(bundle, ["d5"], truth, scale, {}, seed=0) == {"d5": reads["d5"]}  # seeded
    assert decision_probes(bundle, ["d5"], truth, None, {}, seed=0) == {}  # no scale: the records


def test_the_decision_table_reads_sample_probes_and_the_old_table_stays_available(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kNN stands in for the served estimator: the same probing loop and table, fast."""
    from services.recommender.estimators.knn import KnnPopularityEstimator
    from services.recommender.evaluation import Fold, _decision_rankings

    def knn(fold: Fold) -> dict[str, np.ndarray]:
        estimator = KnnPopularityEstimator(fold.snapshot)
        nodes = {d.dataset_id: d for d in fold.snapshot.datasets}
        out = {}
        for target in fold.targets:
            features = dict(nodes[target].features)
            predicted = {p.model_id: p.score for p in estimator.predict(features)}
            out[target] = np.array([predicted[m] for m in fold.candidates[target]])
            _decision_rankings(fold, estimator, target, features)
        return out

    # Probes read far below the records (-0.3, no noise): taken as measured, they lose to the model measured after
    # them; corrected by the shift learned on the other datasets, they read the records.
    bundle = read_bundle(_with_probe_records(bundle_dir, shift=-0.3, noise=0.0))
    truth = {(r["dataset_id"], r["model_id"]): float(r["score"]) for r in bundle.interactions.rows}
    reads: list[tuple[str, float]] = []
    simulate = policy.simulate

    def recording(estimator, features, measure, **kwargs):  # type: ignore[no-untyped-def]
        def measured(model_ids):  # type: ignore[no-untyped-def]
            taken = measure(model_ids)
            reads.extend((kwargs["known_dataset"], p.model_id, p.value) for p in taken)  # type: ignore[misc]
            return taken

        return simulate(estimator, features, measured, **kwargs)

    monkeypatch.setattr(policy, "simulate", recording)
    run = {"methods": ["modsnet"], "targets": ["d0", "d5", "d9"], "budgets": (3, 5), "extra_methods": {"modsnet": knn}}
    records = evaluate(bundle, probes_as_records=True, **run).decisions
    assert reads and all(value == truth[(t, m)] for t, m, value in reads)  # type: ignore[misc]
    reads.clear()
    sample = evaluate(bundle, correct_probes=False, **run).decisions
    assert reads and all(value == pytest.approx(truth[(t, m)] - 0.3) for t, m, value in reads)  # type: ignore[misc]
    reads.clear()
    corrected = evaluate(bundle, **run).decisions
    assert reads and all(value == pytest.approx(truth[(t, m)], abs=1e-5) for t, m, value in reads)  # type: ignore[misc]
    assert records is not None and sample is not None and corrected is not None
    for budget in (3, 5):
        for target in run["targets"]:  # type: ignore[union-attr]
            assert sample.regret["modsnet"][budget][target] >= records.regret["modsnet"][budget][target] - 1e-12


def test_an_imported_librarys_export_keeps_its_probe_records_and_scale(tmp_path: Path, bundle_dir: Path) -> None:
    from modsnet.embedded import EmbeddedCluster

    bundle = read_bundle(_with_probe_records(bundle_dir))
    with EmbeddedCluster(tmp_path / "home", import_builtins=False, estimator="knn") as cluster:
        cluster.client.import_library(bundle_dir)
        (info,) = cluster.client.list_libraries()  # through gRPC, as the recommender reads the library
        assert ProbeScale.of_library(info.meta) == ProbeScale.of_library(bundle.meta) is not None
        exported = read_bundle(cluster.client.export_library("synth", tmp_path / "synth.tar.gz"))
    assert exported.probe_records is not None and canonical(exported)[PROBE_RECORDS] == canonical(bundle)[PROBE_RECORDS]
    assert exported.meta[META_KEY] == bundle.meta[META_KEY]


def test_a_probe_of_the_whole_table_keeps_its_reading_and_its_mark_over_the_wire() -> None:
    from modsnet.runtime.convert import probe_from_pb, probe_to_pb

    scale = ProbeScale(-0.02, 0.05, 100, 10)
    probes = [
        ProbeRecord("m0", QUERY_DATASET, "score", 0.70, whole=True),
        ProbeRecord("m1", QUERY_DATASET, "score", 0.70),
    ]
    whole, sample = on_record_scale(scale, probes)
    assert (whole.value, whole.to_record_scale) == (0.70, 0.0)  # the record's protocol: no sample shift
    assert sample.value == pytest.approx(0.72)
    assert probe_from_pb(probe_to_pb(probes[0])).whole and not probe_from_pb(probe_to_pb(probes[1])).whole


def test_the_scale_splits_its_noise_into_a_shared_level_and_each_probes_own() -> None:
    recorded, probes = {}, []
    rng = np.random.default_rng(1)
    for d in range(30):
        level = 0.04 * rng.normal()
        for m in range(20):
            recorded[(f"d{d}", f"m{m}")] = 0.7
            probes.append((f"d{d}", f"m{m}", 0.7 - 0.01 + level + 0.02 * rng.normal()))
    scale = learn_probe_scale(probes, recorded)
    assert scale is not None and scale.level_sd is not None and scale.own_sd is not None
    assert scale.level_sd == pytest.approx(0.04, abs=0.012) and scale.own_sd == pytest.approx(0.02, abs=0.003)
    assert ProbeScale.from_meta(scale.to_meta()).noise() == pytest.approx(scale.noise(), abs=1e-6)
    assert ProbeScale(-0.02, 0.05, 100, 10).noise() == (0.0, 0.05)  # not split: each probe's own sd


def test_a_target_of_at_most_sample_rows_is_probed_whole_and_reads_its_record(bundle_dir: Path) -> None:
    from services.recommender.evaluation import probed_whole

    datasets = pd.read_csv(bundle_dir / "datasets.csv")
    datasets["n_rows"] = [SAMPLE_ROWS if i % 2 else SAMPLE_ROWS + 1 for i in range(len(datasets))]
    datasets.to_csv(bundle_dir / "datasets.csv", index=False)
    bundle = read_bundle(bundle_dir)
    ids = list(datasets["dataset_id"])
    assert probed_whole(bundle, ids) == frozenset(ids[1::2])
