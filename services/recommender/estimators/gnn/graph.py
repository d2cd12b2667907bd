"""Graph preparation: a snapshot as the arrays and edges the network trains on and a query is built from.

`PreparedGraph` holds node ids, the score matrix and its per-dataset z, scaled node features, the static
relations (similar, near, source, alike) and the probe kind learnt from; `_inputs` gives the tensors of
the graph in which only some datasets' interactions are visible (a training episode, or the full graph).
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

from modsnet.data.columns import finite_number
from modsnet.data.graph import Snapshot, interaction_columns_of, pair_sums
from modsnet.data.graph_build import model_metadata, raw_features

from ...probes import MEASURED, model_similarity
from ..base import ProbeRecord
from .config import _Z_HIGH, _Z_LOW, DATA, MODEL, EdgeType, GnnConfig

_MIN_SPREAD = 1e-3
_HASH_BUCKETS = 64
_TOKEN = re.compile(r"[a-z0-9]+")
_DENSE_LIMIT = 4_000_000  # a relation with at most this many (dst, src) pairs aggregates by matmul


# ----------------------------------------------------------------------------------------------------
# Node features


def _signed_log(x: np.ndarray) -> np.ndarray:
    # Sizes and counts span orders of magnitude; a log keeps one huge dataset from dominating.
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class _DatasetScaler:
    """Signed log, then robust centring and scaling fitted on the scored datasets, clipped to ±5."""

    names: list[str]
    center: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, vectors: Sequence[dict[str, float]]) -> _DatasetScaler:
        counts: dict[str, int] = defaultdict(int)
        for vec in vectors:
            for name in vec:
                counts[name] += 1
        names = sorted(n for n, c in counts.items() if c >= max(1, len(vectors) // 2))
        raw = _signed_log(np.array([[v.get(n, np.nan) for n in names] for v in vectors], dtype=float))
        raw = raw.reshape(len(vectors), len(names))
        with np.errstate(all="ignore"):
            center = np.nan_to_num(np.nanmedian(raw, axis=0)) if len(vectors) else np.zeros(len(names))
            spread = np.nan_to_num(np.nanpercentile(raw, 75, axis=0) - np.nanpercentile(raw, 25, axis=0)) / 1.349
            std = np.nan_to_num(np.nanstd(raw, axis=0))
        scale = np.where(spread > 1e-9, spread, np.where(std > 1e-9, std, 1.0))
        return cls(names, center, scale)

    def transform(self, vectors: Sequence[dict[str, float]]) -> np.ndarray:
        raw = np.array([[v.get(n, np.nan) for n in self.names] for v in vectors], dtype=float)
        raw = raw.reshape(len(vectors), len(self.names))
        scaled = np.clip(np.nan_to_num((_signed_log(raw) - self.center) / self.scale), -5.0, 5.0)
        present = (~np.isnan(raw)).mean(axis=1, keepdims=True) if self.names else np.zeros((len(vectors), 1))
        return np.hstack([scaled, present])


def _model_features(model_ids: Sequence[str], metadata: Sequence[dict[str, str]]) -> np.ndarray:
    """Model metadata (junk columns left out, see `model_metadata`) as numbers: numeric columns scaled,
    categories one-hot, free text hashed.

    A column is numeric when 80% of its filled cells are numbers; categorical when its values repeat
    (one-hot for the 32 commonest values seen twice or more); otherwise free text, whose lowercase
    tokens are hashed (crc32, stable across runs) into 64 buckets together with the model id's tokens.
    """
    n = len(model_ids)
    columns = sorted({k for cells in metadata for k in cells})
    blocks: list[np.ndarray] = []
    text = np.zeros((n, _HASH_BUCKETS))
    for i, model_id in enumerate(model_ids):
        for token in _TOKEN.findall(model_id.lower()):
            text[i, zlib.crc32(token.encode()) % _HASH_BUCKETS] = 1.0
    for column in columns:
        cells = [m.get(column, "") for m in metadata]
        filled = [c for c in cells if c != ""]
        if not filled:
            continue
        numbers = [finite_number(c) for c in cells]
        if sum(v is not None for v in numbers) >= 0.8 * len(filled):
            values = _signed_log(np.array([np.nan if v is None else v for v in numbers]))
            std = np.nanstd(values)
            if not std > 1e-9:
                continue
            blocks.append(np.nan_to_num((values - np.nanmean(values)) / std)[:, None])
            if np.isnan(values).any():
                blocks.append(np.isnan(values).astype(float)[:, None])
            continue
        distinct: dict[str, int] = defaultdict(int)
        for c in filled:
            distinct[c] += 1
        if len(distinct) <= max(2, n // 2):
            common = [v for v, c in sorted(distinct.items(), key=lambda kv: (-kv[1], kv[0])) if c >= 2][:32]
            if common:
                blocks.append(np.array([[float(c == v) for v in common] for c in cells]))
            continue
        for i, c in enumerate(cells):
            for token in _TOKEN.findall(c.lower()):
                text[i, zlib.crc32(f"{column}:{token}".encode()) % _HASH_BUCKETS] = 1.0
    return np.hstack([*blocks, text]) if blocks else text


# ----------------------------------------------------------------------------------------------------
# Edges


def _kernel(distances: np.ndarray) -> np.ndarray:
    """Gaussian weights of a node's nearest distances, bandwidth their median, normalised to sum to 1."""
    bandwidth = max(float(np.median(distances)), 1e-6)
    w = np.exp(-0.5 * (distances / bandwidth) ** 2)
    return w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))


def _nearest(distance: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and kernel weights of the k smallest finite distances."""
    order = np.argsort(distance, kind="stable")
    order = order[np.isfinite(distance[order])][:k]
    return order, (_kernel(distance[order]) if len(order) else np.zeros(0))


@dataclass
class _Edges:
    """Edges of one relation as numpy arrays (src, dst, weight)."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray

    @classmethod
    def empty(cls) -> _Edges:
        return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))

    @classmethod
    def of(cls, triples: Iterable[tuple[int, int, float]]) -> _Edges:
        rows = list(triples)
        if not rows:
            return cls.empty()
        src, dst, weight = zip(*rows, strict=True)
        return cls(np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), np.array(weight, dtype=float))

    def matrix(self, n_src: int, n_dst: int) -> sparse.csr_array:
        """The weights as a sparse (n_dst, n_src) matrix, repeated edges summed."""
        return sparse.csr_array((self.weight, (self.dst, self.src)), shape=(n_dst, n_src))

    def adjacency(self, n_src: int, n_dst: int) -> tuple[Tensor, Tensor | None]:
        """A dense (n_dst, n_src) weight matrix when small, else (edge_index, edge_weight) for a scatter."""
        if n_src * n_dst <= _DENSE_LIMIT:
            flat = np.bincount(self.dst * n_src + self.src, weights=self.weight, minlength=n_dst * n_src)
            return torch.from_numpy(flat.reshape(n_dst, n_src).astype(np.float32)), None
        return torch.from_numpy(np.stack([self.src, self.dst])), torch.from_numpy(self.weight.astype(np.float32))


def _mean_weights(dst: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """values / in-degree of the destination: the relation becomes a (value-weighted) mean."""
    degree = np.bincount(dst, minlength=n).astype(float)
    return values / np.maximum(degree[dst], 1.0)


def _relations(names: Iterable[str]) -> list[EdgeType]:
    ends = {
        "rated": (MODEL, DATA),
        "rated_z": (MODEL, DATA),
        "similar": (DATA, DATA),
        "near": (DATA, DATA),
        "agree": (DATA, DATA),
        "source_of": (MODEL, DATA),
        "probed": (MODEL, DATA),
        "probed_z": (MODEL, DATA),
        "rates": (DATA, MODEL),
        "rates_z": (DATA, MODEL),
        "source": (DATA, MODEL),
        "alike": (MODEL, MODEL),
    }
    return [(ends[n][0], n, ends[n][1]) for n in ends if n in set(names)]


def _tensor(values: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def _nan_stats(values: np.ndarray, *, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation ignoring NaN; NaN where a row has no value (without a warning)."""
    present = ~np.isnan(values)
    count = present.sum(axis=axis)
    filled = np.where(present, values, 0.0)
    safe = np.maximum(count, 1)
    mean = filled.sum(axis=axis) / safe
    centred = np.where(present, values - np.expand_dims(mean, axis), 0.0)
    std = np.sqrt((centred**2).sum(axis=axis) / safe)
    return np.where(count > 0, mean, np.nan), np.where(count > 0, std, np.nan)


def model_summaries(
    count: np.ndarray, mean: np.ndarray, std: np.ndarray, worst: np.ndarray, fails: np.ndarray, visible: int
) -> np.ndarray:
    """The models' popularity summaries, a model node's input beside its static features (models, 5): each
    model's mean clipped z over the visible datasets, its spread, its worst (over -`_Z_LOW`), the share of its
    records under z = -2 (failures) and its coverage (records over `visible` datasets); 0 where it has no record.
    From the per-model reads of either GNN (dense: `PreparedGraph._popularity`, from the dense z; sparse: from
    its per-model sums less the hidden datasets' records), so that both feed the network the same inputs."""
    seen = count > 0
    columns = [
        np.where(seen, mean, 0.0),
        np.where(seen, std, 0.0),
        np.where(seen & np.isfinite(worst), worst, 0.0) / -_Z_LOW,
        fails / np.maximum(count, 1),
        count / max(1, visible),
    ]
    return np.stack(columns, axis=1)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


# ----------------------------------------------------------------------------------------------------
# The prepared graph


class PreparedGraph:
    """A snapshot as arrays: scores and z, node features, static edges, the probe kind learnt from."""

    def __init__(self, snapshot: Snapshot, probes: Sequence[ProbeRecord], config: GnnConfig):
        self.config = config
        self.sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
        self._prepare(snapshot)
        self._prepare_probes(probes)

    def _prepare(self, snapshot: Snapshot) -> None:
        self._prepare_scores(snapshot)
        self._prepare_features(snapshot)
        self._prepare_edges(snapshot)

    def _prepare_scores(self, snapshot: Snapshot) -> None:
        """Node ids, the score matrix and its per-dataset z (NaN where a pair has no record)."""
        self.model_ids = [m.model_id for m in snapshot.models]
        self.model_index = {m: j for j, m in enumerate(self.model_ids)}
        self.nodes = [d.dataset_id for d in snapshot.datasets]
        records = interaction_columns_of(snapshot)
        rated = records.rated_dataset_ids()
        for d in rated:  # records of a dataset that has no node of its own still count
            if d not in self.nodes:
                self.nodes.append(d)
        self.node_index = {d: i for i, d in enumerate(self.nodes)}
        self.dataset_ids = rated  # the scored datasets: what `known_dataset` may name transductively
        self.rated = np.array([self.node_index[d] for d in rated], dtype=np.int64)

        total, count = pair_sums(records, self.model_ids, self.nodes)
        self.scores = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        goodness = self.sign * self.scores
        row_mean, spread = _nan_stats(goodness, axis=1)
        scored = ~np.isnan(row_mean)
        typical = float(np.median(spread[scored & (spread > _MIN_SPREAD)])) if np.any(spread > _MIN_SPREAD) else 0.05
        self.row_mean = np.where(scored, row_mean, 0.0)
        self.row_spread = np.where(scored & (spread > _MIN_SPREAD), spread, typical)
        self.z = (goodness - self.row_mean[:, None]) / self.row_spread[:, None]
        self.has = ~np.isnan(self.z)
        self._z_filled = np.where(self.has, np.clip(np.nan_to_num(self.z), _Z_LOW, _Z_HIGH), 0.0)

    def _prepare_features(self, snapshot: Snapshot) -> None:
        by_id = raw_features(snapshot.datasets)
        raw = [by_id.get(d, {}) for d in self.nodes]
        self.scaler = _DatasetScaler.fit([raw[i] for i in self.rated])
        self.feature_names = self.scaler.names
        self.x_data = self.scaler.transform(raw)
        self.model_metadata = model_metadata(snapshot)
        self.x_model_static = _model_features(self.model_ids, self.model_metadata)
        popularity_dim = 5 if self.config.use_popularity else 0  # the `_popularity` summaries
        self.model_dim = self.x_model_static.shape[1] + popularity_dim
        self.near_rated = self.x_data[self.rated, :-1] if len(self.feature_names) else np.zeros((len(self.rated), 0))

    def _prepare_edges(self, snapshot: Snapshot) -> None:
        """The static relations (similar, near, source, alike) and which relations the network has."""
        cfg = self.config
        n_nodes, n_models = len(self.nodes), len(self.model_ids)
        names = ["rated", "rated_z", "rates", "rates_z"]
        self.distance = np.full((n_nodes, n_nodes), np.inf)
        for s in snapshot.similarities:
            if s.dataset_a in self.node_index and s.dataset_b in self.node_index and s.dataset_a != s.dataset_b:
                a, b = self.node_index[s.dataset_a], self.node_index[s.dataset_b]
                self.distance[a, b] = self.distance[b, a] = s.distance
        self.static: dict[str, _Edges] = {}
        self._static_tensors: dict[EdgeType, tuple[Tensor, Tensor | None]] = {}
        if cfg.use_similarity and np.isfinite(self.distance).any():
            names.append("similar")
            self.static["similar"] = _Edges.of(
                (int(s), i, float(w))
                for i in range(n_nodes)
                for s, w in zip(*_nearest(self.distance[i], cfg.neighbours), strict=True)
            )
        if cfg.use_near and len(self.feature_names):
            names.append("near")
            triples: list[tuple[int, int, float]] = []
            for i in range(n_nodes):
                order, w = self._near(self.x_data[i, :-1], exclude=i)
                triples.extend((int(self.rated[o]), i, float(wi)) for o, wi in zip(order, w, strict=True))
            self.static["near"] = _Edges.of(triples)
        self.sources: dict[int, list[int]] = defaultdict(list)  # dataset node -> models naming it
        for j, cells in enumerate(self.model_metadata):
            for cell in cells.values():
                if cell in self.node_index:
                    self.sources[self.node_index[cell]].append(j)
        if cfg.use_sources and self.sources:
            names += ["source_of", "source"]
            pairs = [(j, i) for i, js in self.sources.items() for j in js]
            src = np.array([j for j, _ in pairs], dtype=np.int64)
            dst = np.array([i for _, i in pairs], dtype=np.int64)
            self.static["source_of"] = _Edges(src, dst, _mean_weights(dst, np.ones(len(dst)), n_nodes))
            self.static["source"] = _Edges(dst, src, _mean_weights(src, np.ones(len(src)), n_models))
        self.model_similarity = self._model_similarity()
        if cfg.use_alike and n_models > 1:
            names.append("alike")
            coo = self.model_similarity.tocoo()
            off = (coo.row != coo.col) & (coo.data > 0)
            src, dst = coo.col[off].astype(np.int64), coo.row[off].astype(np.int64)
            degree = np.bincount(dst, weights=coo.data[off], minlength=n_models)
            self.static["alike"] = _Edges(src, dst, coo.data[off] / np.maximum(degree[dst], 1e-9))
        if cfg.probes:
            names += ["probed", "probed_z", "agree"]
        self.relations = _relations(names)
        # The prior averages over the same edges a query receives from datasets (similar and near).
        self._neighbours = sparse.csr_array((n_nodes, n_nodes))
        for name in ("similar", "near"):
            if name in self.static:
                self._neighbours = self._neighbours + self.static[name].matrix(n_nodes, n_nodes)

    @functools.cached_property
    def _interactions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every record's (dataset node, model, clipped z): what a training episode and the precomputed embeddings
        read (a served estimator never does)."""
        d_idx, m_idx = np.nonzero(self.has)
        return d_idx, m_idx, np.clip(self.z[d_idx, m_idx], _Z_LOW, _Z_HIGH)

    # What a pickle of it leaves out (a refreshed estimator sent back by its worker, `training.refresh_in_worker`):
    # what is rebuilt from the rest when needed (`_interactions`; `_static_tensors`, the static relations' dense
    # adjacency, which only a fit and the precomputed embeddings read), and the node distance matrix held as its
    # finite cells (dataset_similarity.csv's pairs: none for most libraries, where the matrix is all infinite and
    # was a quarter of the estimator sent back, 4.9 of 19.9 MB at 779 dataset nodes).

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_interactions", None)
        if "_static_tensors" in state:
            state["_static_tensors"] = {}
        distance = state.pop("distance", None)
        if isinstance(distance, np.ndarray):
            rows, cols = np.nonzero(np.isfinite(distance))
            state["_finite_distance"] = (distance.shape, rows, cols, distance[rows, cols])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        finite: tuple[tuple[int, int], np.ndarray, np.ndarray, np.ndarray] | None = state.pop("_finite_distance", None)
        self.__dict__.update(state)
        if finite is not None:
            shape, rows, cols, values = finite
            distance = np.full(shape, np.inf)
            distance[rows, cols] = values
            self.distance = distance

    def _model_similarity(self) -> sparse.csr_array:
        """sim_M: the `alike` relation's weights and the probe-selector's redundancy."""
        return model_similarity(self.x_model_static, neighbours=self.config.model_neighbours)

    def _near(self, x: np.ndarray, *, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The nearest scored datasets in feature space (positions in `rated`) and their kernel weights."""
        if not len(self.feature_names) or not len(self.rated):
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        distance = np.sqrt(np.mean((self.near_rated - x) ** 2, axis=1))
        if exclude is not None:
            distance[self.rated == exclude] = np.inf
        return _nearest(distance, self.config.neighbours)

    def _prepare_probes(self, probes: Sequence[ProbeRecord]) -> None:
        """Which probe kind the estimator learns from: real measurements, or the best recorded kind.

        A recorded kind (LogME, H-score) is used when scored datasets carry it; among several, the one
        whose values rank models most like their real scores there (mean Spearman) wins.
        """
        self.recorded: dict[int, dict[int, float]] = {}
        self.probe_kind = MEASURED
        by_kind: dict[str, dict[int, dict[int, list[float]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(list))
        )
        for p in probes:
            i, j = self.node_index.get(p.dataset_id), self.model_index.get(p.model_id)
            if i is not None and j is not None and self.has[i].any():
                by_kind[p.probe][i][j].append(p.value)
        best = -math.inf
        for kind, per_dataset in sorted(by_kind.items()):
            agreement = []
            for i, values in per_dataset.items():
                js = [j for j in values if self.has[i, j]]
                if len(js) >= 3:
                    v = np.array([np.mean(values[j]) for j in js])
                    agreement.append(_spearman(v, self.z[i, js]))
            if len(agreement) >= 2 and float(np.mean(agreement)) > best:
                best = float(np.mean(agreement))
                self.probe_kind = kind
                self.recorded = {
                    i: {j: float(np.mean(v)) for j, v in values.items()} for i, values in per_dataset.items()
                }

    # -- the graph of a training step --------------------------------------------------------------

    def _popularity(self, visible: np.ndarray) -> np.ndarray:
        """Per-model summaries of the visible z rows (`model_summaries`), read from the dense z."""
        seen = self.has[visible]
        z = np.where(seen, np.clip(np.nan_to_num(self.z[visible]), _Z_LOW, _Z_HIGH), 0.0)
        counts = seen.sum(axis=0)
        mean, std = _nan_stats(np.where(seen, z, np.nan), axis=0)
        worst = np.where(seen, z, np.inf).min(axis=0)
        return model_summaries(counts, mean, std, worst, (seen & (z < -2.0)).sum(axis=0), len(visible))

    def _inputs(
        self, visible: np.ndarray, probe_edges: Sequence[tuple[int, np.ndarray, np.ndarray]], summaries: np.ndarray
    ) -> tuple[Tensor, Tensor, dict[EdgeType, Tensor], dict[EdgeType, Tensor]]:
        """Node features and edges of the graph in which only `visible` datasets' interactions exist."""
        n_nodes, n_models = len(self.nodes), len(self.model_ids)
        keep = np.isin(self._interactions[0], visible)
        d, m, z = (a[keep] for a in self._interactions)
        x_model = np.hstack([self.x_model_static, summaries if self.config.use_popularity else summaries[:, :0]])
        edges = {
            "rated": _Edges(m, d, _mean_weights(d, np.ones(len(d)), n_nodes)),
            "rated_z": _Edges(m, d, _mean_weights(d, z, n_nodes)),
            "rates": _Edges(d, m, _mean_weights(m, np.ones(len(m)), n_models)),
            "rates_z": _Edges(d, m, _mean_weights(m, z, n_models)),
        }
        if self.config.probes:
            src = np.concatenate([idx for _, idx, _ in probe_edges]) if probe_edges else np.zeros(0, dtype=np.int64)
            dst = np.concatenate([np.full(len(idx), i) for i, idx, _ in probe_edges]) if probe_edges else src
            value = np.concatenate([v for _, _, v in probe_edges]) if probe_edges else np.zeros(0)
            edges["probed"] = _Edges(src, dst, _mean_weights(dst, np.ones(len(dst)), n_nodes))
            edges["probed_z"] = _Edges(src, dst, _mean_weights(dst, value, n_nodes))
            edges["agree"] = self._agree_edges(probe_edges, visible)
        index, weight = {}, {}
        sizes = {DATA: n_nodes, MODEL: n_models}
        for rel in self.relations:
            if rel[1] in self.static:  # the same every step: built once
                if rel not in self._static_tensors:
                    self._static_tensors[rel] = self.static[rel[1]].adjacency(sizes[rel[0]], sizes[rel[2]])
                index[rel], edge_weight = self._static_tensors[rel]
            else:
                index[rel], edge_weight = edges[rel[1]].adjacency(sizes[rel[0]], sizes[rel[2]])
            if edge_weight is not None:
                weight[rel] = edge_weight
        return _tensor(self.x_data), _tensor(x_model), index, weight

    def _agree_edges(self, probe_edges: Sequence[tuple[int, np.ndarray, np.ndarray]], visible: np.ndarray) -> _Edges:
        triples: list[tuple[int, int, float]] = []
        for i, index, probe_z in probe_edges:
            order, w = self._agreeing(index, probe_z, visible)
            triples.extend((int(o), i, float(wi)) for o, wi in zip(order, w, strict=True))
        return _Edges.of(triples)

    def _z_block(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """z of datasets `rows` on models `columns`, NaN where no record."""
        return self.z[np.ix_(rows, columns)]

    def _agreeing(self, index: np.ndarray, probe_z: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Datasets on which the probed models ranked as the probes rank them: nodes and kernel weights.

        Agreement is the Pearson correlation of the probes' z with the dataset's z over the probed
        models it has records of (at least 3); the `neighbours` most agreeing get exp(r / 0.25),
        normalised. This is what probes add beyond their own models: they point at similar datasets.
        """
        if len(index) < 3 or probe_z.std() == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        block = self._z_block(visible, index)
        present = ~np.isnan(block)
        count = present.sum(axis=1)
        filled = np.where(present, block, 0.0)
        q = np.where(present, probe_z[None, :], 0.0)
        safe = np.maximum(count, 1)
        mean_b, mean_q = filled.sum(axis=1) / safe, q.sum(axis=1) / safe
        db = np.where(present, block - mean_b[:, None], 0.0)
        dq = np.where(present, probe_z[None, :] - mean_q[:, None], 0.0)
        denominator = np.sqrt((db**2).sum(axis=1) * (dq**2).sum(axis=1))
        r = np.where((count >= 3) & (denominator > 0), (db * dq).sum(axis=1) / np.maximum(denominator, 1e-12), np.nan)
        order = np.argsort(-np.nan_to_num(r, nan=-np.inf), kind="stable")
        order = order[np.isfinite(r[order])][: self.config.neighbours]
        if not len(order):
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        w = np.exp((r[order] - r[order].max()) / 0.25)
        return visible[order], w / w.sum()
