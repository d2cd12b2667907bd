"""The classification heads the embedding libraries (TextZoo, ImageZoo) put on an encoder, and how one is scored.

Heads (`HEADS`): logistic regression at several C, linear SVM, ridge, kNN at two k, nearest centroid and
naive Bayes, always behind a scaler chosen by the library (standardisation for dense embeddings, max-abs
for sparse TF-IDF). `cross_validate` is the protocol both libraries were measured with (`FOLDS`-fold
stratified CV, balanced accuracy, on at most `ROW_CAP` items); `pipeline_npz` writes a fitted pipeline's
numbers as a NumPy .npz (never pickle). scikit-learn loads inside functions, on first use.

Transfer models (`TrunkSpec`, `Trunk`): an encoder, then a trunk, a one-hidden-layer MLP trained on one
source dataset's embeddings and labels (`train_trunk`, fixed seed), whose ReLU hidden layer is the
representation; on any target the trunk is frozen and a fresh scaled `TRANSFER_HEAD` is fitted on its
features by the same CV (`TrunkFeatures` is that pipeline step). Id `ENCODER--mlpN-on-SOURCE--HEAD`
(`parse_model_id`); the trunk ships as the model's artifact (`trunk_npz`, read back by `load_trunk`).
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from modsnet.data.graph import LibraryInfo, ModelNode

__all__ = [
    "FOLDS",
    "HEADS",
    "ROW_CAP",
    "TRANSFER_HEAD",
    "Head",
    "Trunk",
    "TrunkFeatures",
    "TrunkSource",
    "TrunkSpec",
    "artifact_trunk",
    "cross_validate",
    "described_as",
    "estimator",
    "load_trunk",
    "npz_bytes",
    "parse_model_id",
    "pipeline_npz",
    "required_trunk",
    "train_trunk",
    "transfer_model_id",
    "trunk_npz",
]

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
    if built is None or not described_as(library, model, built.encoder.encoder_id, built.head, builtin):
        return None
    if built.trunk is not None:  # a transfer model runs only with its trunk, which its artifact holds
        if model.metadata.get("trunk", built.trunk.trunk_id) != built.trunk.trunk_id:
            return None
        if not (model.artifact_blob_id or model.metadata.get("artifact")):
            return None
    return built


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
    build_for_fold: Callable[[np.ndarray], Any] | None = None,
) -> dict[str, Any]:
    """Score `build()` pipelines by `FOLDS`-fold stratified CV (balanced accuracy); an error is a result, not a crash.

    `build_for_fold`, when given, replaces `build` and is handed each fold's held-out row indexes (a transfer
    model's trunk trained without those rows; its training is not part of `train_seconds`, as a shipped
    trunk's is not).

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
                pipeline = build() if build_for_fold is None else build_for_fold(test)
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


# ----------------------------------------------------------------------------------------------- transfer trunks

TRANSFER_HEAD = "logreg-c1"  # the fresh head a transfer model fits on its trunk's features for each target
_TRUNK_ID = re.compile(r"mlp(?P<hidden>\d+)-on-(?P<source>[A-Za-z0-9_.][A-Za-z0-9_.-]*)")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # a fixed timestamp inside .npz files, so the same arrays give the same bytes


@dataclass(frozen=True)
class TrunkSpec:
    """A small MLP trained on one source dataset's embeddings and labels; its hidden layer is the representation.

    One hidden layer of `hidden` ReLU units on standardised embeddings, scikit-learn's `MLPClassifier`
    (Adam, L2 `alpha`, at most `max_iter` epochs, `random_state=seed`): `params` is everything that fixes it.
    """

    source: str  # the dataset id it was trained on
    hidden: int = 128
    seed: int = 0

    @property
    def trunk_id(self) -> str:
        return f"mlp{self.hidden}-on-{self.source}"

    @property
    def params(self) -> dict[str, Any]:
        return {
            "hidden_layer_sizes": [self.hidden],
            "activation": "relu",
            "alpha": 1e-3,
            "batch_size": 200,
            "learning_rate_init": 1e-3,
            "max_iter": 100,
            "random_state": self.seed,
        }


def parse_model_id(model_id: str) -> tuple[str, TrunkSpec | None, str] | None:
    """(encoder, trunk, head) of `ENCODER--HEAD` or of a transfer model's `ENCODER--mlpN-on-SOURCE--HEAD`;
    None when the id has neither shape."""
    parts = model_id.split("--")
    if len(parts) == 2:
        return parts[0], None, parts[1]
    if len(parts) == 3:
        match = _TRUNK_ID.fullmatch(parts[1])
        if match and int(match["hidden"]) > 0:
            return parts[0], TrunkSpec(match["source"], int(match["hidden"])), parts[2]
    return None


def transfer_model_id(encoder_id: str, trunk: TrunkSpec, head_id: str = TRANSFER_HEAD) -> str:
    return f"{encoder_id}--{trunk.trunk_id}--{head_id}"


@dataclass(frozen=True)
class Trunk:
    """A trained trunk's numbers: input standardisation, then relu(z @ coef + intercept)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (input dims, hidden)
    intercept: np.ndarray  # (hidden,)

    def features(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float32) - self.mean) / self.scale
        return np.maximum(z @ self.coef + self.intercept, 0.0).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "trunk.mean": self.mean,
            "trunk.scale": self.scale,
            "trunk.coef": self.coef,
            "trunk.intercept": self.intercept,
        }


def train_trunk(x: np.ndarray, labels: Any, spec: TrunkSpec) -> Trunk:
    """Fit `spec`'s MLP on embeddings `x` and `labels` (one BLAS thread: the same numbers on every run)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    params = spec.params | {"hidden_layer_sizes": tuple(spec.params["hidden_layer_sizes"])}
    y = np.asarray(labels, dtype=object).astype(str)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")  # a trunk stopped at max_iter is the trunk: its transfer score says the rest
        scaler = StandardScaler().fit(np.asarray(x, dtype=np.float64))
        mlp = MLPClassifier(**params).fit(scaler.transform(np.asarray(x, dtype=np.float64)), y)
    return Trunk(
        scaler.mean_.astype(np.float32),
        scaler.scale_.astype(np.float32),
        mlp.coefs_[0].astype(np.float32),
        mlp.intercepts_[0].astype(np.float32),
    )


@dataclass(frozen=True)
class TrunkSource:
    """A transfer model's source sample, for scoring it on a task that shares rows with that sample: its
    embeddings, labels and each row's key (what the row is: a text, an image's pixel digest), and the keys
    of the task's rows."""

    vectors: np.ndarray
    labels: tuple[str, ...]
    keys: tuple[str, ...]
    target_keys: tuple[str, ...]

    def without(self, held_out: np.ndarray, spec: TrunkSpec) -> Trunk:
        """The trunk trained on the source rows whose key is none of the task's `held_out` rows' keys."""
        unseen = {self.target_keys[i] for i in held_out}
        keep = np.array([key not in unseen for key in self.keys], dtype=bool)
        return train_trunk(self.vectors[keep], [label for label, k in zip(self.labels, keep, strict=True) if k], spec)

    def fold_builder(
        self, model_id: str, spec: TrunkSpec | None, build: Callable[[Trunk], Any]
    ) -> Callable[[np.ndarray], Any]:
        """`cross_validate`'s `build_for_fold` for a transfer model of trunk `spec`: each fold's pipeline
        (`build`) on a trunk trained `without` the fold's held-out rows."""
        if spec is None:
            raise ValueError(f"{model_id} is not a transfer model: it has no trunk to train")
        trunk_spec = spec

        def build_without(held_out: np.ndarray) -> Any:
            return build(self.without(held_out, trunk_spec))

        return build_without


class TrunkFeatures:
    """Pipeline step: a frozen trunk's features, or (no trunk given) a trunk trained on the fit's own rows.

    The second is how a transfer model is scored on its own source dataset: the trunk is trained inside each
    CV training fold, so the held-out fold was never seen. Fitted numbers are `mean_`, `scale_`, `coef_`,
    `intercept_` (what `pipeline_npz` writes).
    """

    def __init__(self, spec: TrunkSpec, trunk: Trunk | None = None):
        self.spec, self.trunk = spec, trunk

    def fit(self, x: np.ndarray, y: Any = None) -> TrunkFeatures:
        if self.trunk is None:
            if y is None:
                raise ValueError("training a trunk needs labels")
            self.trunk = train_trunk(x, y, self.spec)
        self.mean_, self.scale_ = self.trunk.mean, self.trunk.scale
        self.coef_, self.intercept_ = self.trunk.coef, self.trunk.intercept
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.trunk is None:
            raise ValueError("TrunkFeatures is not fitted")
        return self.trunk.features(x)

    def fit_transform(self, x: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(x, y).transform(x)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"spec": self.spec, "trunk": self.trunk}


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Arrays as .npz bytes (deflated, no pickle), identical for identical arrays (np.savez stamps the time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.asarray(array), allow_pickle=False)
            archive.writestr(entry, payload.getvalue())
    return buffer.getvalue()


def trunk_npz(header: Mapping[str, Any], trunk: Trunk) -> bytes:
    """A transfer model's library artifact: the trunk's arrays and a JSON header (its spec), as .npz bytes."""
    return npz_bytes({**trunk.arrays(), "header": np.asarray(json.dumps(dict(header), sort_keys=True))})


def load_trunk(data: bytes, model_id: str) -> Trunk:
    """The trunk of a transfer model's artifact; a file that is not that model's trunk is refused."""
    from modsnet.runtime.errors import InvalidArgument

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            header = json.loads(str(saved["header"]))
            trunk = Trunk(
                *(np.asarray(saved[f"trunk.{k}"], dtype=np.float32) for k in ("mean", "scale", "coef", "intercept"))
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise InvalidArgument(f"artifact of {model_id!r} is not a trunk .npz: {exc}") from exc
    if header.get("model_id") != model_id:
        raise InvalidArgument(f"artifact of {model_id!r} holds the trunk of {header.get('model_id')!r}")
    dims, hidden = trunk.coef.shape if trunk.coef.ndim == 2 else (-1, -1)
    if trunk.mean.shape != (dims,) or trunk.scale.shape != (dims,) or trunk.intercept.shape != (hidden,):
        raise InvalidArgument(f"artifact of {model_id!r}: trunk arrays of inconsistent shapes")
    return trunk


def required_trunk(built: Any, model_id: str, artifact: bytes | None) -> Trunk | None:
    """The trunk `modsnet run` needs: none for a plain model; a transfer model without its artifact is NotFound."""
    from modsnet.runtime.errors import NotFound

    if built.trunk is None:
        return None
    if artifact is None:
        raise NotFound(f"{model_id!r} is a transfer model and its trunk (the model's artifact) is missing")
    return load_trunk(artifact, model_id)


def artifact_trunk(built: Any, model_id: str, artifact: bytes | None) -> tuple[bool, Trunk | None]:
    """(runnable, trunk) for a probe: a transfer model runs with the trunk its artifact holds (none or a bad
    one: not runnable, logged); any other model needs none."""
    from modsnet.runtime.errors import InvalidArgument

    if built.trunk is None:
        return True, None
    if artifact is None:
        return False, None
    try:
        return True, load_trunk(artifact, model_id)
    except InvalidArgument:
        logging.getLogger(__name__).debug("not probed: %s has no usable trunk artifact", model_id, exc_info=True)
        return False, None
