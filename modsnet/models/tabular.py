"""TabZoo's runnable models: the settings of the built-in tabular library and how one is scored.

What a TabZoo model id stands for (`model_settings`: an estimator and its parameters behind one shared
preprocessing) and the protocol that measured it (`evaluate`: `FOLDS`-fold stratified CV, balanced accuracy,
each fit bounded by a time limit in any thread). The query service's probes (`modsnet.models.probing`) and
`modsnet run` (`modsnet.models.runner`) rebuild and score settings with exactly this code, and the library's
generator (`modsnet.offline.zoo.tabular`) measured the committed bundle with it, so a probe, a run and the
library agree. It needs scikit-learn only: nothing here imports the generator's dataset packages.
"""

from __future__ import annotations

import ctypes
import pickle
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis, QuadraticDiscriminantAnalysis
from sklearn.ensemble import (
    AdaBoostClassifier,
    BaggingClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Perceptron, RidgeClassifier, SGDClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold
from sklearn.naive_bayes import BernoulliNB, GaussianNB
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.tree import DecisionTreeClassifier

from modsnet.features.tabular import feature_columns

__all__ = [
    "FIT_TIMEOUT_S",
    "FOLDS",
    "ONE_HOT_LEVELS",
    "PREPROCESSING",
    "ROW_CAP",
    "TARGET",
    "ModelSetting",
    "evaluate",
    "model_settings",
]

TARGET = "class"  # the target column's name in the tables `evaluate` scores
ROW_CAP = 1_000  # the library measured each dataset on a stratified sample of at most this many rows
FOLDS = 3
FIT_TIMEOUT_S = 10.0  # the library's limit per fit; a fit past it is a timeout scored at chance level
ONE_HOT_LEVELS = 20
PREPROCESSING = (
    "numeric: median imputation, standardisation; "
    f"categorical: most-frequent imputation, one-hot (at most {ONE_HOT_LEVELS} levels)"
)

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
        QuadraticDiscriminantAnalysis,
        RidgeClassifier,
        SGDClassifier,
        Perceptron,
        NearestCentroid,
        AdaBoostClassifier,
        BaggingClassifier,
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
    """The library's settings: grids over 21 families, every random_state fixed at 0, one thread each.

    37 of the library's first 44 settings are kept with their ids and parameters, so results measured for
    them stay valid; the other 7 (gb-n200-d2-lr0.05, gb-n100-d3-lr0.1, hgb-i200-l31-lr0.05, mlp-h64x32-a0.0001,
    mlp-h64x32-a0.01, rf-n100-d8, et-n100-d8) were the costliest: on 300+ datasets they alone would have taken
    about a quarter of the run. The grids grow where a fit is cheap (linear models, neighbours, trees, naive
    Bayes, discriminant analysis, kernel SVMs); gradient boosting, HistGradientBoosting, MLPs, AdaBoost and
    forests take most of the time even so (fits of theirs are ~2 s where a linear model's are ~0.03 s), so they
    stay few and small: at most 100 trees or boosting iterations, 300 epochs.
    """
    settings: list[ModelSetting] = []

    def add(model_id: str, family: str, estimator: str, **params: Any) -> None:
        settings.append(ModelSetting(model_id, family, estimator, params))

    # Linear models.
    for c in (0.001, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0, 1000.0):
        add(f"logreg-c{c:g}", "logistic_regression", "LogisticRegression", C=c, max_iter=1000)
    for c in (0.01, 0.1, 1.0, 10.0):
        add(
            f"logreg-balanced-c{c:g}",
            "logistic_regression",
            "LogisticRegression",
            C=c,
            class_weight="balanced",
            max_iter=1000,
        )
    for c in (0.1, 1.0, 10.0):  # lasso: saga is the solver that takes l1 for any number of classes
        add(
            f"logreg-l1-c{c:g}",
            "logistic_regression",
            "LogisticRegression",
            C=c,
            l1_ratio=1.0,
            solver="saga",
            max_iter=300,
            random_state=0,
        )
    for c in (0.001, 0.01, 0.1, 1.0, 10.0, 100.0):
        add(f"linsvm-c{c:g}", "linear_svm", "LinearSVC", C=c, max_iter=5000, random_state=0)
    for c in (0.01, 1.0, 100.0):
        add(
            f"linsvm-balanced-c{c:g}",
            "linear_svm",
            "LinearSVC",
            C=c,
            class_weight="balanced",
            max_iter=5000,
            random_state=0,
        )
    for c in (0.1, 1.0):
        add(
            f"linsvm-l1-c{c:g}", "linear_svm", "LinearSVC", C=c, penalty="l1", dual=False, max_iter=5000, random_state=0
        )
    for alpha in (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0):
        add(f"ridge-a{alpha:g}", "ridge_classifier", "RidgeClassifier", alpha=alpha)
    for alpha in (1.0, 100.0):
        add(f"ridge-balanced-a{alpha:g}", "ridge_classifier", "RidgeClassifier", alpha=alpha, class_weight="balanced")
    for loss in ("hinge", "log_loss", "modified_huber"):
        for alpha in (1e-4, 1e-3, 1e-2):
            add(
                f"sgd-{loss.replace('_', '')}-a{alpha:g}",
                "sgd",
                "SGDClassifier",
                loss=loss,
                alpha=alpha,
                random_state=0,
            )
    for alpha in (1e-4, 1e-3):
        add(
            f"sgd-hinge-elasticnet-a{alpha:g}",
            "sgd",
            "SGDClassifier",
            loss="hinge",
            penalty="elasticnet",
            alpha=alpha,
            random_state=0,
        )
    add("perceptron", "perceptron", "Perceptron", random_state=0)
    for alpha in (1e-4, 1e-2):
        add(f"perceptron-l2-a{alpha:g}", "perceptron", "Perceptron", penalty="l2", alpha=alpha, random_state=0)

    # Discriminant analysis, naive Bayes, nearest centroids.
    add(
        "lda-shrinkage",
        "discriminant_analysis",
        "LinearDiscriminantAnalysis",
        solver="lsqr",
        shrinkage="auto",
    )
    add("lda-svd", "discriminant_analysis", "LinearDiscriminantAnalysis", solver="svd")
    for shrinkage in (0.1, 0.5, 0.9):
        add(
            f"lda-shrinkage{shrinkage:g}",
            "discriminant_analysis",
            "LinearDiscriminantAnalysis",
            solver="lsqr",
            shrinkage=shrinkage,
        )
    for qda_shrinkage in ("auto", 0.1, 0.3, 0.6, 0.9):  # shrinkage keeps a small class' covariance invertible
        add(
            f"qda-shrinkage{'-auto' if qda_shrinkage == 'auto' else f'{qda_shrinkage:g}'}",
            "quadratic_discriminant",
            "QuadraticDiscriminantAnalysis",
            solver="eigen",
            shrinkage=qda_shrinkage,
        )
    add("gaussian-nb", "naive_bayes", "GaussianNB")
    for smoothing in (1e-3, 1e-1):
        add(f"gaussian-nb-vs{smoothing:g}", "naive_bayes", "GaussianNB", var_smoothing=smoothing)
    add("bernoulli-nb", "naive_bayes", "BernoulliNB", binarize=0.0)  # after standardising: above the mean
    for alpha in (0.1, 10.0):
        add(f"bernoulli-nb-a{alpha:g}", "naive_bayes", "BernoulliNB", binarize=0.0, alpha=alpha)
    add("nearest-centroid", "nearest_centroid", "NearestCentroid")
    for threshold in (0.2, 0.5, 1.0):
        add(f"nearest-centroid-s{threshold:g}", "nearest_centroid", "NearestCentroid", shrink_threshold=threshold)
    add("nearest-centroid-manhattan", "nearest_centroid", "NearestCentroid", metric="manhattan")

    # Neighbours.
    for k in (1, 3, 5, 9, 15, 25, 45):
        add(f"knn-k{k}", "knn", "KNeighborsClassifier", n_neighbors=k, weights="uniform")
    for k in (3, 5, 9, 15, 25, 45):
        add(f"knn-k{k}-distance", "knn", "KNeighborsClassifier", n_neighbors=k, weights="distance")
    for k in (1, 5, 15, 45):
        add(f"knn-k{k}-manhattan", "knn", "KNeighborsClassifier", n_neighbors=k, weights="uniform", p=1)
    for k in (5, 15):
        add(f"knn-k{k}-distance-manhattan", "knn", "KNeighborsClassifier", n_neighbors=k, weights="distance", p=1)

    # Single trees.
    for depth in (1, 2, 3, 4, 5, 7, 10, 15, None):
        add(
            f"tree-d{depth or 'full'}",
            "decision_tree",
            "DecisionTreeClassifier",
            max_depth=depth,
            random_state=0,
        )
    for depth in (3, 5, 10, None):
        add(
            f"tree-d{depth or 'full'}-entropy",
            "decision_tree",
            "DecisionTreeClassifier",
            max_depth=depth,
            criterion="entropy",
            random_state=0,
        )
    for leaf in (5, 10, 20, 50):
        add(f"tree-leaf{leaf}", "decision_tree", "DecisionTreeClassifier", min_samples_leaf=leaf, random_state=0)
    for depth in (5, None):
        add(
            f"tree-d{depth or 'full'}-balanced",
            "decision_tree",
            "DecisionTreeClassifier",
            max_depth=depth,
            class_weight="balanced",
            random_state=0,
        )
    for alpha in (0.001, 0.01):
        add(f"tree-ccp{alpha:g}", "decision_tree", "DecisionTreeClassifier", ccp_alpha=alpha, random_state=0)

    # Kernel SVMs.
    for c in (0.1, 1.0, 10.0, 100.0):
        add(f"svc-rbf-c{c:g}", "svm_rbf", "SVC", C=c, kernel="rbf", gamma="scale")
    for c in (1.0, 10.0, 100.0):
        for gamma in (0.01, 0.1, 1.0):
            add(f"svc-rbf-c{c:g}-g{gamma:g}", "svm_rbf", "SVC", C=c, kernel="rbf", gamma=gamma)
    for c in (1.0, 10.0):
        add(f"svc-rbf-balanced-c{c:g}", "svm_rbf", "SVC", C=c, kernel="rbf", gamma="scale", class_weight="balanced")
    for degree in (2, 3):
        for c in (0.1, 1.0, 10.0):
            add(f"svc-poly{degree}-c{c:g}", "svm_poly", "SVC", C=c, kernel="poly", degree=degree, coef0=1.0)
    add("svc-sigmoid-c1", "svm_sigmoid", "SVC", C=1.0, kernel="sigmoid")

    # Forests.
    for prefix, family, estimator in (
        ("rf", "random_forest", "RandomForestClassifier"),
        ("et", "extra_trees", "ExtraTreesClassifier"),
    ):
        for n, depth in ((10, None), (30, 3), (30, 8), (30, None), (100, None)):
            add(
                f"{prefix}-n{n}-d{depth or 'full'}",
                family,
                estimator,
                n_estimators=n,
                max_depth=depth,
                n_jobs=1,
                random_state=0,
            )
        add(
            f"{prefix}-n30-balanced",
            family,
            estimator,
            n_estimators=30,
            class_weight="balanced",
            n_jobs=1,
            random_state=0,
        )

    # Boosting and bagging.
    for n, depth, rate in ((20, 3, 0.3), (50, 2, 0.1)):
        add(
            f"gb-n{n}-d{depth}-lr{rate:g}",
            "gradient_boosting",
            "GradientBoostingClassifier",
            n_estimators=n,
            max_depth=depth,
            learning_rate=rate,
            random_state=0,
        )
    for n, leaves, rate in ((20, 7, 0.3), (50, 15, 0.1), (100, 31, 0.1)):
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
    add("adaboost-n50-lr0.5", "adaboost", "AdaBoostClassifier", n_estimators=50, learning_rate=0.5, random_state=0)
    add(
        "bagging-tree-n10-s1",
        "bagging",
        "BaggingClassifier",
        n_estimators=10,
        max_samples=1.0,
        n_jobs=1,
        random_state=0,
    )

    # Networks: one trained the full 300 epochs, the rest stop early on a held-out tenth.
    add(
        "mlp-h32-a0.0001",
        "mlp",
        "MLPClassifier",
        hidden_layer_sizes=(32,),
        alpha=1e-4,
        max_iter=300,
        random_state=0,
    )
    for layers, alpha in (((64,), 1e-4), ((64, 32), 1e-4), ((128,), 1e-2)):
        shape = "x".join(map(str, layers))
        add(
            f"mlp-h{shape}-a{alpha:g}-early",
            "mlp",
            "MLPClassifier",
            hidden_layer_sizes=layers,
            alpha=alpha,
            max_iter=300,
            early_stopping=True,
            random_state=0,
        )
    return settings


# ----------------------------------------------------------------------------------------------- scoring


class _FitTimeout(BaseException):
    """A fit ran past its time limit (a BaseException, so no `except Exception` inside a library eats it)."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise `_FitTimeout` in this thread after `seconds`.

    In the main thread (the generator's workers, the CLI) SIGALRM does it; Python allows signals nowhere
    else, so in other threads (the query service probes from gRPC worker threads) a timer raises it
    asynchronously (CPython's PyThreadState_SetAsyncExc). Either way it lands between Python bytecodes:
    Python-level loops (boosting, forests, MLP epochs) are interrupted, a single long C call only when it
    returns, which the row caps keep short.
    """
    if threading.current_thread() is threading.main_thread():
        with _alarm(seconds):
            yield
    else:
        with _thread_timer(seconds):
            yield


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise _FitTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in the thread at its next bytecode; None withdraws one not raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


@contextmanager
def _thread_timer(seconds: float) -> Iterator[None]:
    # The lock orders the timer against leaving the block: nothing is raised, or left pending, after it.
    target, lock, state = threading.get_ident(), threading.Lock(), {"armed": True, "fired": False}

    def expire() -> None:
        with lock:
            if state["armed"]:
                state["fired"] = True
                _raise_in(target, _FitTimeout)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["armed"] = False
            if state["fired"]:
                _raise_in(target, None)
        timer.cancel()


def evaluate(setting: ModelSetting, data: pd.DataFrame, *, seed: int, timeout: float) -> dict[str, Any]:
    """Score a setting on a table by stratified k-fold CV; a timeout or an error is a result, not a crash.

    A failed pair scores what a constant predictor would (balanced accuracy 1/n_classes, accuracy the
    majority share), so it ranks low without being missing. Any thread may call it (see `_time_limit`).
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
