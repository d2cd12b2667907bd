"""The classification heads the embedding libraries (TextZoo, ImageZoo) put on an encoder, and how one is scored.

Heads (`HEADS`): logistic regression at several C, linear SVM, ridge, kNN at two k, nearest centroid and
naive Bayes, always behind a scaler chosen by the library (standardisation for dense embeddings, max-abs
for sparse TF-IDF). `cross_validate` is the protocol both libraries were measured with (`FOLDS`-fold
stratified CV, balanced accuracy, on at most `ROW_CAP` items); `pipeline_npz` writes a fitted pipeline's
numbers as a NumPy .npz (never pickle). scikit-learn loads inside functions, on first use.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modsnet.data.graph import LibraryInfo, ModelNode

__all__ = ["FOLDS", "HEADS", "ROW_CAP", "Head", "cross_validate", "described_as", "estimator", "pipeline_npz"]

FOLDS = 3
ROW_CAP = 1_000  # items per dataset the libraries measured on (a stratified sample)


ZOO_METRIC = "balanced_accuracy"  # what TextZoo and ImageZoo measure, and what a probe of their models reports


@dataclass(frozen=True)
class Head:
    head_id: str
    family: str
    estimator: str
    params: Mapping[str, Any]


HEADS: Mapping[str, Head] = {
    h.head_id: h
    for h in (
        Head("logreg-c0.01", "logistic_regression", "LogisticRegression", {"C": 0.01, "max_iter": 300}),
        Head("logreg-c0.1", "logistic_regression", "LogisticRegression", {"C": 0.1, "max_iter": 300}),
        Head("logreg-c1", "logistic_regression", "LogisticRegression", {"C": 1.0, "max_iter": 300}),
        Head("logreg-c10", "logistic_regression", "LogisticRegression", {"C": 10.0, "max_iter": 300}),
        Head(
            "logreg-c1-balanced",
            "logistic_regression",
            "LogisticRegression",
            {"C": 1.0, "max_iter": 300, "class_weight": "balanced"},
        ),
        Head("linsvm-c0.01", "linear_svm", "LinearSVC", {"C": 0.01}),
        Head("linsvm-c0.1", "linear_svm", "LinearSVC", {"C": 0.1}),
        Head("linsvm-c1", "linear_svm", "LinearSVC", {"C": 1.0}),
        Head("ridge-a1", "ridge", "RidgeClassifier", {"alpha": 1.0}),
        Head("ridge-a10", "ridge", "RidgeClassifier", {"alpha": 10.0}),
        Head("knn-5", "knn", "KNeighborsClassifier", {"n_neighbors": 5}),
        Head("knn-15", "knn", "KNeighborsClassifier", {"n_neighbors": 15, "weights": "distance"}),
        Head("centroid", "nearest_centroid", "NearestCentroid", {}),
        Head("naive-bayes", "naive_bayes", "NaiveBayes", {}),  # Gaussian on dense, complement on TF-IDF
    )
}


def zoo_model_of(
    library: LibraryInfo, model: ModelNode, *, modality: str, build: Callable[[str], Any], builtin: str
) -> Any:
    """The encoder + head model `model` stands for (`build(model_id)`), when this version rebuilds it exactly;
    else None. The library must be of `modality` in balanced accuracy, and the model `described_as` it."""
    if library.meta.get("modality") != modality or library.meta.get("metric", ZOO_METRIC) != ZOO_METRIC:
        return None
    built = build(model.model_id)
    if built is None:
        return None
    return built if described_as(library, model, built.encoder.encoder_id, built.head, builtin) else None


def described_as(library: LibraryInfo, model: ModelNode, encoder_id: str, head: Head, builtin: str) -> bool:
    """Whether a library's model is the encoder + head this version rebuilds under its id.

    Where models.csv describes the model (encoder, estimator, params) the description must match, so another
    library's model sharing an id does not qualify; without a description only the library named `builtin`.
    """
    described = {k: model.metadata[k] for k in ("encoder", "estimator", "params") if k in model.metadata}
    if not described:
        return library.name == builtin
    try:
        params = json.loads(described["params"]) if "params" in described else dict(head.params)
    except (TypeError, ValueError):
        return False
    return (
        described.get("encoder", encoder_id) == encoder_id
        and described.get("estimator", head.estimator) == head.estimator
        and json.dumps(params, sort_keys=True) == json.dumps(dict(head.params), sort_keys=True)
    )


def estimator(head: Head, *, sparse: bool = False) -> Any:
    """A fresh, unfitted scikit-learn estimator for `head` (naive Bayes: complement on sparse counts)."""
    from sklearn.linear_model import LogisticRegression, RidgeClassifier
    from sklearn.naive_bayes import ComplementNB, GaussianNB
    from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
    from sklearn.svm import LinearSVC

    if head.estimator == "NaiveBayes":
        return ComplementNB() if sparse else GaussianNB()
    cls = {
        "LogisticRegression": LogisticRegression,
        "LinearSVC": LinearSVC,
        "RidgeClassifier": RidgeClassifier,
        "KNeighborsClassifier": KNeighborsClassifier,
        "NearestCentroid": NearestCentroid,
    }[head.estimator]
    return cls(**head.params)


def cross_validate(
    build: Callable[[], Any],
    x: Any,
    labels: Any,
    *,
    seed: int,
    artifact_bytes: Callable[[Any], int],
    encode_seconds_per_item: float = 0.0,
    fixed_bytes: int = 0,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Score `build()` pipelines by `FOLDS`-fold stratified CV (balanced accuracy); an error is a result, not a crash.

    `inference_seconds` is the head's prediction time per fold plus the encoder's time for that fold's
    items (`encode_seconds_per_item`, measured when the inputs were made). `memory_bytes` is `fixed_bytes`
    (the encoder's weights) plus `artifact_bytes` of the first fold's fitted pipeline. `deadline` (a
    `time.perf_counter` value) abandons the CV between folds with status "timeout".
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    y = np.asarray(labels, dtype=object).astype(str)
    _, counts = np.unique(y, return_counts=True)
    failed = {"score": 1.0 / len(counts), "accuracy": counts.max() / len(y), "inference_seconds": None}
    fits, predicts, balanced, plain = [], [], [], []
    size = 0
    try:
        # One BLAS/OpenMP thread, as the libraries were measured: on a busy node a threaded BLAS made a
        # 0.2 s logistic-regression CV take 21 s (threads spinning against each other and other work).
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore")  # convergence chatter; the score says what matters
            folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
            for fold, (train, test) in enumerate(folds.split(np.zeros(len(y)), y)):
                if deadline is not None and time.perf_counter() > deadline:
                    return {"status": "timeout", **failed, "train_seconds": None, "memory_bytes": None}
                pipeline = build()
                started = time.perf_counter()
                pipeline.fit(x[train], y[train])
                fitted = time.perf_counter()
                predicted = pipeline.predict(x[test])
                fits.append(fitted - started)
                predicts.append(time.perf_counter() - fitted + encode_seconds_per_item * len(test))
                balanced.append(balanced_accuracy_score(y[test], predicted))
                plain.append(accuracy_score(y[test], predicted))
                if fold == 0:
                    size = artifact_bytes(pipeline)
    except Exception as exc:
        return {"status": "error", **failed, "train_seconds": None, "memory_bytes": None, "error": f"{exc}"[:300]}
    return {
        "status": "ok",
        "score": float(np.mean(balanced)),
        "accuracy": float(np.mean(plain)),
        "train_seconds": float(np.mean(fits)),
        "inference_seconds": float(np.mean(predicts)),
        "memory_bytes": int(size + fixed_bytes),
    }


_FITTED = (
    "vocabulary_",
    "idf_",
    "scale_",
    "mean_",
    "max_abs_",
    "coef_",
    "intercept_",
    "classes_",
    "centroids_",
    "theta_",
    "var_",
    "class_prior_",
    "feature_log_prob_",
    "_fit_X",
    "_y",
)


def pipeline_npz(header: Mapping[str, Any], pipeline: Any) -> bytes:
    """A fitted pipeline's numbers (scaler, head parameters, TF-IDF vocabulary) and a JSON header as .npz bytes,
    loadable with allow_pickle=False."""
    arrays: dict[str, np.ndarray] = {}
    for name, step in pipeline.named_steps.items():
        for attribute in _FITTED:
            value = getattr(step, attribute, None)
            if value is None:
                continue
            if attribute == "vocabulary_":
                terms = sorted(value, key=value.get)
                arrays[f"{name}.terms"] = np.asarray(terms, dtype=str)
                continue
            array = np.asarray(value.toarray() if hasattr(value, "toarray") else value)
            if array.dtype == object:
                array = array.astype(str)
            arrays[f"{name}.{attribute.strip('_')}"] = array
    arrays["header"] = np.asarray(json.dumps(dict(header), sort_keys=True))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy stubs mistype **kwds
    return buffer.getvalue()
