"""The ModsNet estimator ε: an inductive heterogeneous GNN over the bipartite graph G of datasets and models.

Graph (one node per dataset and per model of the snapshot; every relation is a weighted mean, so a
node's degree does not scale its messages):
* interactions, both ways: `rated`/`rates` (plain mean) and `rated_z`/`rates_z` (weighted by the edge's
  score z-scored within its dataset: scores compare within a dataset, not across);
* `similar`: a dataset's nearest datasets by the library's similarity rows (Gaussian kernel weights);
* `near`: a dataset's nearest scored datasets in dataset-feature space (same kernel);
* `source_of`/`source`: a model and a dataset its metadata names (the data it was pre-trained on);
* `alike`: a model's nearest models by metadata (numbers scaled, categories one-hot, text hashed);
* `probed`/`probed_z`: virtual probe edges from the probe-selector, and `agree`: the datasets on which
  the probed models ranked as the probes rank them (only on a query node, or a training node made cold).
Each layer is a `HeteroConv` of `GraphConv`s (summed over relations, residual, ReLU). The head is

    P̂(d, m) = <A h_d, B h_m> + b(h_m) + α · popularity_m + β · prior(d, m)

where popularity is the model's mean z and prior(d, m) the kNN estimator's z from d's `similar`,
`near` and `agree` neighbours shrunk toward popularity: the graph learns a correction on top of the two
structural signals that carry most of the figures (see the ablation in docs/benchmarks-recommender.md).

Training is episodic, to match how the estimator is used: each step hides every interaction of a few
scored datasets (they become cold nodes, half of them given simulated probe edges) and fits their
z-scores from the rest of the graph. Loss: MSE on z (labels clipped to [-6, 3]) + a ListNet ranking
term per dataset (weight `rank_weight`) + λ‖Θ‖² (Adam's weight decay). A few members with different
seeds form an ensemble; their spread is the reported uncertainty.

Inductive path: a query dataset is a new node that only receives messages. That path is a small torch
module with every library-side embedding precomputed (`QueryScorer`), which is what `export_onnx`
writes; `serve_onnx` makes `predict` run it under ONNX Runtime. Transductive path: a scored dataset is
read off the full graph, and its own records are returned as measured. Predicted z turns back into the
metric through the (neighbour-weighted) mean and spread of the neighbouring datasets' scores, as the
kNN estimator does.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import warnings
import zlib
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from scipy import sparse
from torch import Tensor, nn
from torch_geometric.nn import GraphConv, HeteroConv

from modsnet.data.graph import DatasetNode, ModelNode, Snapshot

from ..probes import DIVERSITY, MEASURED, PROXY_KINDS, ProbeSelector, model_similarity, virtual_edges
from .base import Evidence, Prediction, ProbeRecord

if TYPE_CHECKING:
    from ..evaluation import Fold

NAME = "gnn/v1"
DATA, MODEL = "dataset", "model"
EdgeType = tuple[str, str, str]
# Relations into a dataset node, in the order the query module takes them.
QUERY_DATA_RELATIONS = ("similar", "near", "agree")  # from datasets: dense weights over dataset nodes
QUERY_MODEL_RELATIONS = ("source_of", "probed", "probed_z")  # from models: sparse (index, weight)
_Z_LOW, _Z_HIGH = -6.0, 3.0  # z beyond these is one odd dataset speaking (food101: +10 for its own model)
_MIN_SPREAD = 1e-3
# A scored dataset with fewer records is predicted from its neighbours, its records calibrating the rest:
# the mean and spread of two or three scores are no scale to turn predicted z into the metric with.
_OWN_SCALE_RECORDS = 5
_HASH_BUCKETS = 64
_TOKEN = re.compile(r"[a-z0-9]+")
_DENSE_LIMIT = 4_000_000  # a relation with at most this many (dst, src) pairs aggregates by matmul


@dataclass(frozen=True)
class GnnConfig:
    hidden: int = 32
    layers: int = 2
    head: int = 16
    steps: int = 200
    lr: float = 0.01
    weight_decay: float = 1e-4  # λ of the L2 term
    dropout: float = 0.1
    rank_weight: float = 0.5
    mask_fraction: float = 0.1  # share of scored datasets made cold in each training step
    members: int = 3  # ensemble size
    neighbours: int = 8  # k of the similar / near relations
    model_neighbours: int = 5  # k of the alike relation
    use_similarity: bool = True
    use_near: bool = True
    use_alike: bool = True
    use_sources: bool = True
    use_popularity: bool = True  # the model's popularity as a feature and as a term of the score
    use_prior: bool = True  # the neighbour prior (kNN over similar / near datasets) as a term of the score
    prior_strength: float = 0.5  # c: how many pseudo-neighbours of popularity the prior is shrunk with
    probes: bool = True  # learn and use probe edges (the switch for the ablation)
    probe_budget: int = 10
    probe_diversity: float = DIVERSITY  # redundancy weight of the probe-selector (0: top by Score)
    seed: int = 0
    threads: int = 1


@dataclass(frozen=True)
class FitInfo:
    datasets: int
    models: int
    interactions: int
    feature_names: list[str]
    seconds: float
    members: int
    relations: list[str]
    probe_kind: str


# ----------------------------------------------------------------------------------------------------
# Node features


def _signed_log(x: np.ndarray) -> np.ndarray:
    # Sizes and counts span orders of magnitude; a log keeps one huge dataset from dominating.
    return np.sign(x) * np.log1p(np.abs(x))


def _float(cell: object) -> float | None:
    try:
        value = float(cell)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _is_id_column(name: str) -> bool:
    # An id (OpenML's dataset id, say) is a number with no meaning as a magnitude.
    return name == "id" or name.endswith("_id")


def _dataset_raw(node: DatasetNode) -> dict[str, float]:
    """A dataset's feature vector, or its numeric metadata (sizes, class counts) when it has none."""
    if node.features:
        return dict(node.features)
    out = {}
    for key, cell in node.metadata.items():
        value = _float(cell)
        if value is not None and not _is_id_column(key):
            out[key] = value
    return out


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


def _model_features(models: Sequence[ModelNode]) -> np.ndarray:
    """Model metadata as numbers: numeric columns scaled, categories one-hot, free text hashed.

    A column is numeric when 80% of its filled cells are numbers; categorical when its values repeat
    (one-hot for the 32 commonest values seen twice or more); otherwise free text, whose lowercase
    tokens are hashed (crc32, stable across runs) into 64 buckets together with the model id's tokens.
    """
    n = len(models)
    columns = sorted({k for m in models for k in m.metadata if not _is_id_column(k)})
    blocks: list[np.ndarray] = []
    text = np.zeros((n, _HASH_BUCKETS))
    for i, m in enumerate(models):
        for token in _TOKEN.findall(m.model_id.lower()):
            text[i, zlib.crc32(token.encode()) % _HASH_BUCKETS] = 1.0
    for column in columns:
        cells = [m.metadata.get(column, "") for m in models]
        filled = [c for c in cells if c != ""]
        if not filled:
            continue
        numbers = [_float(c) for c in cells]
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


# ----------------------------------------------------------------------------------------------------
# The network


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


class _RelationConv(GraphConv):
    """GraphConv that also takes its edges as a dense (n_dst, n_src) weight matrix.

    On CPU a scatter over 90k edges costs ~15x the matmul of the same edges held densely, so small
    relations (all of the dataset-model ones here) go dense; the arithmetic is GraphConv's:
    lin_rel(Σ_j w_ij x_j) + lin_root(x_i).
    """

    def forward(self, x, edge_index, edge_weight=None, size=None):  # type: ignore[no-untyped-def, override]
        if edge_index.is_floating_point():
            source, target = x if isinstance(x, tuple) else (x, x)
            return self.lin_rel(edge_index @ source) + self.lin_root(target)
        return super().forward(x, edge_index, edge_weight, size)


class _Net(nn.Module):
    """Encoders, HeteroConv layers and the head of one ensemble member.

    P̂(d, m) = <A h_d, B h_m> + b(h_m) + α · popularity_m + β · prior(d, m): the graph learns a
    correction on top of the two structural signals, each with a learned weight (α, β start at 1).
    """

    def __init__(self, dataset_dim: int, model_dim: int, relations: list[EdgeType], config: GnnConfig):
        super().__init__()
        h = config.hidden
        self.relations = relations
        self.encode_dataset = nn.Sequential(nn.Linear(dataset_dim, h), nn.ReLU(), nn.Linear(h, h))
        self.encode_model = nn.Sequential(nn.Linear(model_dim, h), nn.ReLU(), nn.Linear(h, h))
        self.convs = nn.ModuleList(
            HeteroConv({rel: _RelationConv(h, h, aggr="add") for rel in relations}, aggr="sum")
            for _ in range(config.layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.project_dataset = nn.Linear(h, config.head)
        self.project_model = nn.Linear(h, config.head)
        self.model_bias = nn.Linear(h, 1)
        self.popularity_gain = _gain(config.use_popularity)
        self.prior_gain = _gain(config.use_prior)
        self.scale = 1.0 / math.sqrt(config.head)

    def embed(
        self, x_data: Tensor, x_model: Tensor, edges: dict[EdgeType, Tensor], weights: dict[EdgeType, Tensor]
    ) -> list[dict[str, Tensor]]:
        """Node embeddings after each layer (index 0: the encoders' output)."""
        h = {DATA: self.dropout(self.encode_dataset(x_data)), MODEL: self.dropout(self.encode_model(x_model))}
        out = [h]
        for conv in self.convs:
            update = conv(h, edges, edge_weight_dict=weights)
            h = {kind: h[kind] + self.dropout(torch.relu(update[kind])) for kind in h}
            out.append(h)
        return out

    def model_side(self, h_model: Tensor, popularity: Tensor) -> tuple[Tensor, Tensor]:
        """Per-model projection and bias: all a query needs from the model side."""
        bias = self.model_bias(h_model).squeeze(-1) + self.popularity_gain * popularity
        return self.project_model(h_model) * self.scale, bias

    def score(self, h_data: Tensor, side: tuple[Tensor, Tensor], prior: Tensor) -> Tensor:
        projected, bias = side
        return self.project_dataset(h_data) @ projected.T + bias + self.prior_gain * prior


def _relation(layer: nn.Module, rel: EdgeType) -> GraphConv:
    """The GraphConv of one relation inside a HeteroConv layer (PyG keys its ModuleDict by edge type)."""
    return cast(GraphConv, cast(Any, layer).convs[rel])


def _gain(enabled: bool) -> nn.Parameter:
    return nn.Parameter(torch.tensor(1.0 if enabled else 0.0), requires_grad=enabled)


def _neighbour_prior(weights: Tensor, z: Tensor, has: Tensor, popularity: Tensor, strength: float) -> Tensor:
    """The kNN estimator's z: neighbours' z weighted by edge weight, shrunk toward popularity.

    prior(d, m) = (Σ_d' w(d, d') z(d', m) + c · pop_m) / (Σ_d' w(d, d') [d' scored m] + c)
    """
    return (weights @ z + strength * popularity) / (weights @ has + strength)


class QueryScorer(nn.Module):
    """Scores every model for one new dataset node, with all library-side embeddings as constants.

    Inputs: `features` (1, F) the query's scaled features; `dataset_weights` (R_d, n_datasets) one row
    per dataset relation it receives (`similar`, `near`); `model_index` (K,) and `model_weights`
    (R_m, K) its sparse edges from models (`source_of`, `probed`, `probed_z`). Outputs the ensemble's
    mean and standard deviation of predicted z for every model. Exactly the HeteroConv update of a
    node that only receives messages, so it equals the graph computation (see the tests).
    """

    z: Tensor
    has: Tensor
    popularity: Tensor

    def __init__(self, members: Sequence[_Net], constants: _Constants):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.nets = list(members)  # the same modules, typed
        relations = members[0].relations
        self.data_relations = [r for r in relations if r[2] == DATA and r[1] in QUERY_DATA_RELATIONS]
        self.model_relations = [r for r in relations if r[2] == DATA and r[1] in QUERY_MODEL_RELATIONS]
        self.silent = [r for r in relations if r[2] == DATA and r not in self.data_relations + self.model_relations]
        self.strength = constants.strength
        self.register_buffer("z", constants.z.clone())
        self.register_buffer("has", constants.has.clone())
        self.register_buffer("popularity", constants.popularity.clone())
        for e, member in enumerate(constants.members):
            for layer, (hd, hm) in enumerate(zip(member.data, member.model, strict=True)):
                self.register_buffer(f"data_{e}_{layer}", hd.clone())
                self.register_buffer(f"model_{e}_{layer}", hm.clone())
            self.register_buffer(f"projected_{e}", member.projected.clone())
            self.register_buffer(f"bias_{e}", member.bias.clone())

    def forward(  # type: ignore[no-untyped-def]
        self, features: Tensor, dataset_weights: Tensor, model_index: Tensor, model_weights: Tensor
    ):
        together = dataset_weights.sum(dim=0, keepdim=True)
        prior = _neighbour_prior(together, self.z, self.has, self.popularity, self.strength)
        scores = []
        for e, net in enumerate(self.nets):
            h = net.encode_dataset(features)
            for layer, conv in enumerate(net.convs):
                hd: Tensor = getattr(self, f"data_{e}_{layer}")
                hm: Tensor = getattr(self, f"model_{e}_{layer}")
                update = torch.zeros_like(h)
                for row, rel in enumerate(self.data_relations):
                    c = _relation(conv, rel)
                    update = update + c.lin_rel(dataset_weights[row : row + 1] @ hd) + c.lin_root(h)
                gathered = hm.index_select(0, model_index)
                for row, rel in enumerate(self.model_relations):
                    c = _relation(conv, rel)
                    update = update + c.lin_rel(model_weights[row : row + 1] @ gathered) + c.lin_root(h)
                for rel in self.silent:  # relations the query has no edge of still add their bias and root term
                    c = _relation(conv, rel)
                    update = update + c.lin_rel(torch.zeros_like(h)) + c.lin_root(h)
                h = h + torch.relu(update)
            projected: Tensor = getattr(self, f"projected_{e}")
            bias: Tensor = getattr(self, f"bias_{e}")
            scores.append((net.project_dataset(h) @ projected.T + bias + net.prior_gain * prior).squeeze(0))
        stacked = torch.stack(scores)
        mean = stacked.mean(dim=0)
        std = torch.sqrt(((stacked - mean) ** 2).mean(dim=0))
        return mean, std


@dataclass
class _MemberConstants:
    data: list[Tensor]  # dataset embeddings entering each layer
    model: list[Tensor]  # model embeddings entering each layer
    projected: Tensor  # B h_m of the last layer, scaled
    bias: Tensor  # b(h_m) + α · popularity


@dataclass
class _Constants:
    """The library side of a query: embeddings per member, and the z matrix the prior averages."""

    members: list[_MemberConstants]
    z: Tensor  # (n_datasets, n_models) clipped z, 0 where no record
    has: Tensor  # (n_datasets, n_models) 1 where a record
    popularity: Tensor  # (n_models,)
    strength: float


# ----------------------------------------------------------------------------------------------------
# The estimator


@dataclass
class _Query:
    """The inputs of one query plus what turns its z back into the metric."""

    inputs: dict[str, np.ndarray]
    anchor: np.ndarray  # weights over scored datasets (sum 1) for the metric's mean and spread
    similarity: np.ndarray  # sim_D over scored datasets in [0, 1], for the probe-selector and evidence
    measured: dict[int, float] = field(default_factory=dict)  # model position -> measured score


class GnnEstimator:
    """Heterogeneous GNN estimator with the public surface of `KnnPopularityEstimator`."""

    name = NAME

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        probes: Sequence[ProbeRecord] = (),
        config: GnnConfig | None = None,
        evidence: int = 3,
        weights: Sequence[Mapping[str, Tensor]] | None = None,
    ):
        """Fit on `snapshot`, or with `weights` (from `state()`) put trained members on it without training.

        Weights fit any snapshot of the same models and feature sets: only the node counts differ between
        graph versions, and the members' parameters do not depend on them. Loading them onto a newer
        version folds new records into the precomputed embeddings in seconds instead of a refit; weights
        of another shape raise `ValueError`.
        """
        start = time.perf_counter()
        self.config = config or GnnConfig()
        self.evidence_count = evidence
        torch.set_num_threads(self.config.threads)
        self.sign = 1.0 if snapshot.library.meta.get("higher_is_better", True) else -1.0
        self._prepare(snapshot)
        self._prepare_probes(probes)
        if weights is not None:
            self._load(weights)
        else:
            # Tiny Adam moments otherwise turn into denormals, 100x slower on CPU. The flag is process-wide
            # processor state (it breaks subnormal floats for everything else), so it is on for training only.
            torch.set_flush_denormal(True)
            try:
                self._fit()
            finally:
                torch.set_flush_denormal(False)
        self.scorer: Any = None  # an OnnxScorer once `serve_onnx` ran; torch otherwise
        self.fit_info = FitInfo(
            len(self.dataset_ids),
            len(self.model_ids),
            len(snapshot.interactions),
            self.feature_names,
            time.perf_counter() - start,
            self.config.members,
            [r[1] for r in self.relations],
            self.probe_kind,
        )

    # -- graph preparation --------------------------------------------------------------------------

    def _prepare(self, snapshot: Snapshot) -> None:
        self._prepare_scores(snapshot)
        self._prepare_features(snapshot)
        self._prepare_edges(snapshot)

    def _prepare_scores(self, snapshot: Snapshot) -> None:
        """Node ids, the score matrix and its per-dataset z (NaN where a pair has no record)."""
        self.model_ids = [m.model_id for m in snapshot.models]
        self.model_index = {m: j for j, m in enumerate(self.model_ids)}
        self.nodes = [d.dataset_id for d in snapshot.datasets]
        rated = sorted({r.dataset_id for r in snapshot.interactions})
        for d in rated:  # records of a dataset that has no node of its own still count
            if d not in self.nodes:
                self.nodes.append(d)
        self.node_index = {d: i for i, d in enumerate(self.nodes)}
        self.dataset_ids = rated  # the scored datasets: what `known_dataset` may name transductively
        self.rated = np.array([self.node_index[d] for d in rated], dtype=np.int64)
        n_nodes, n_models = len(self.nodes), len(self.model_ids)

        total = np.zeros((n_nodes, n_models))
        count = np.zeros_like(total)
        for r in snapshot.interactions:
            i, j = self.node_index[r.dataset_id], self.model_index[r.model_id]
            total[i, j] += r.score
            count[i, j] += 1
        self.scores = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        goodness = self.sign * self.scores
        row_mean, spread = _nan_stats(goodness, axis=1)
        scored = ~np.isnan(row_mean)
        typical = float(np.median(spread[scored & (spread > _MIN_SPREAD)])) if np.any(spread > _MIN_SPREAD) else 0.05
        self.row_mean = np.where(scored, row_mean, 0.0)
        self.row_spread = np.where(scored & (spread > _MIN_SPREAD), spread, typical)
        self.z = (goodness - self.row_mean[:, None]) / self.row_spread[:, None]
        self.has = ~np.isnan(self.z)
        d_idx, m_idx = np.nonzero(self.has)
        self._interactions = (d_idx, m_idx, np.clip(self.z[d_idx, m_idx], _Z_LOW, _Z_HIGH))

        self._z_filled = np.where(self.has, np.clip(np.nan_to_num(self.z), _Z_LOW, _Z_HIGH), 0.0)

    def _prepare_features(self, snapshot: Snapshot) -> None:
        by_id = {d.dataset_id: d for d in snapshot.datasets}
        raw = [_dataset_raw(by_id[d]) if d in by_id else {} for d in self.nodes]
        self.scaler = _DatasetScaler.fit([raw[i] for i in self.rated])
        self.feature_names = self.scaler.names
        self.x_data = self.scaler.transform(raw)
        self.x_model_static = _model_features(snapshot.models)
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
        for j, m in enumerate(snapshot.models):
            for key, cell in m.metadata.items():
                if cell in self.node_index and not _is_id_column(key):
                    self.sources[self.node_index[cell]].append(j)
        if cfg.use_sources and self.sources:
            names += ["source_of", "source"]
            pairs = [(j, i) for i, js in self.sources.items() for j in js]
            src = np.array([j for j, _ in pairs], dtype=np.int64)
            dst = np.array([i for _, i in pairs], dtype=np.int64)
            self.static["source_of"] = _Edges(src, dst, _mean_weights(dst, np.ones(len(dst)), n_nodes))
            self.static["source"] = _Edges(dst, src, _mean_weights(src, np.ones(len(src)), n_models))
        self.model_similarity = model_similarity(self.x_model_static, neighbours=cfg.model_neighbours)
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

    # -- training -----------------------------------------------------------------------------------

    def _popularity(self, visible: np.ndarray) -> np.ndarray:
        """Per-model summaries of the visible z rows: mean, spread, worst, failure share, coverage."""
        seen = self.has[visible]
        z = np.where(seen, np.clip(np.nan_to_num(self.z[visible]), _Z_LOW, _Z_HIGH), 0.0)
        counts = seen.sum(axis=0)
        mean, std = _nan_stats(np.where(seen, z, np.nan), axis=0)
        cols = [
            mean,
            std,
            np.where(seen, z, np.inf).min(axis=0) / -_Z_LOW,
            (seen & (z < -2.0)).sum(axis=0) / np.maximum(counts, 1),
            counts / max(1, len(visible)),
        ]
        return np.nan_to_num(np.stack(cols, axis=1), posinf=0.0)

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

    def _agreeing(self, index: np.ndarray, probe_z: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Datasets on which the probed models ranked as the probes rank them: nodes and kernel weights.

        Agreement is the Pearson correlation of the probes' z with the dataset's z over the probed
        models it has records of (at least 3); the `neighbours` most agreeing get exp(r / 0.25),
        normalised. This is what probes add beyond their own models: they point at similar datasets.
        """
        if len(index) < 3 or probe_z.std() == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        block = self.z[np.ix_(visible, index)]
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

    def _prior(
        self, rows: np.ndarray, visible: np.ndarray, popularity: np.ndarray, extra: sparse.csr_array | None = None
    ) -> Tensor:
        """The neighbour prior of dataset nodes `rows` from the visible datasets' records (zero when off).

        `extra` adds dynamic in-edges (the agree relation of probed nodes) to the static ones.
        """
        if not self.config.use_prior:
            return torch.zeros(len(rows), len(self.model_ids))
        seen = np.zeros(len(self.nodes))
        seen[visible] = 1.0
        neighbours = self._neighbours if extra is None else self._neighbours + extra
        weights = _tensor(neighbours[rows].toarray() * seen)
        z, has = _tensor(self._z_filled), _tensor(self.has)
        return _neighbour_prior(weights, z, has, _tensor(popularity), self.config.prior_strength)

    def _simulated_probes(
        self, hidden: np.ndarray, popularity: np.ndarray, rng: np.random.Generator
    ) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Probe edges for half the hidden datasets, chosen as the selector would (popular models first)."""
        out = []
        budget = self.config.probe_budget
        for i in hidden:
            if rng.random() < 0.5:
                continue
            if self.probe_kind == MEASURED:
                values = {int(j): float(self.z[i, j]) for j in np.nonzero(self.has[i])[0]}
            else:
                values = self.recorded.get(int(i), {})
            if len(values) < 2:
                continue
            js = np.array(sorted(values))
            noisy = popularity[js] + rng.gumbel(size=len(js))
            chosen = js[np.argsort(-noisy)[:budget]]
            raw = np.array([values[int(j)] for j in chosen])
            spread = raw.std()
            z = (raw - raw.mean()) / spread if spread > 1e-12 else np.zeros(len(raw))
            out.append((int(i), chosen, z))
        return out

    def _fit(self) -> None:
        cfg = self.config
        self.members: list[_Net] = []
        n_rated = len(self.rated)
        hide = max(1, round(cfg.mask_fraction * n_rated))
        labels = _tensor(np.where(self.has, self._z_filled, 0.0))
        observed = torch.from_numpy(self.has)
        for member in range(cfg.members):
            seed = cfg.seed * 1000 + member
            torch.manual_seed(seed)
            rng = np.random.default_rng(seed)
            net = _Net(self.x_data.shape[1], self.model_dim, self.relations, cfg)
            optimiser = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
            net.train()
            for _ in range(cfg.steps if n_rated > 1 else 0):
                hidden = rng.choice(self.rated, size=min(hide, n_rated - 1), replace=False)
                visible = np.setdiff1d(self.rated, hidden)
                summaries = self._popularity(visible)
                popularity = summaries[:, 0]
                probes = self._simulated_probes(hidden, popularity, rng) if cfg.probes else []
                x_data, x_model, index, weight = self._inputs(visible, probes, summaries)
                layers = net.embed(x_data, x_model, index, weight)
                rows = torch.from_numpy(hidden)
                side = net.model_side(layers[-1][MODEL], _tensor(popularity))
                agree = self._agree_edges(probes, visible) if probes else None
                extra = agree.matrix(len(self.nodes), len(self.nodes)) if agree is not None else None
                prior = self._prior(hidden, visible, popularity, extra)
                predicted = net.score(layers[-1][DATA][rows], side, prior)
                loss = _loss(predicted, labels[rows], observed[rows], cfg.rank_weight)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            net.eval()
            self.members.append(net)
        self._precompute()

    def state(self) -> list[dict[str, Tensor]]:
        """The members' trained parameters: what a checkpoint keeps (the rest is rebuilt from the graph)."""
        return [{k: v.detach().clone() for k, v in net.state_dict().items()} for net in self.members]

    def _load(self, weights: Sequence[Mapping[str, Tensor]]) -> None:
        if len(weights) != self.config.members:
            raise ValueError(f"{len(weights)} members in the weights, the config says {self.config.members}")
        self.members = []
        for state in weights:
            net = _Net(self.x_data.shape[1], self.model_dim, self.relations, self.config)
            try:
                net.load_state_dict(dict(state), strict=True)
            except RuntimeError as error:  # another shape: other features, relations or config
                raise ValueError(f"weights do not fit this graph: {str(error).splitlines()[0]}") from error
            net.eval()
            self.members.append(net)
        self._precompute()

    def _precompute(self) -> None:
        """Every node's embeddings on the full graph, per layer and member: the constants of a query."""
        summaries = self._popularity(self.rated)
        popularity = summaries[:, 0]
        x_data, x_model, index, weight = self._inputs(self.rated, [], summaries)
        prior = self._prior(np.arange(len(self.nodes)), self.rated, popularity)
        members, finals = [], []
        with torch.no_grad():
            for net in self.members:
                layers = net.embed(x_data, x_model, index, weight)
                projected, bias = net.model_side(layers[-1][MODEL], _tensor(popularity))
                members.append(
                    _MemberConstants([h[DATA] for h in layers[:-1]], [h[MODEL] for h in layers[:-1]], projected, bias)
                )
                finals.append(net.score(layers[-1][DATA], (projected, bias), prior).numpy())
        self.constants = _Constants(
            members, _tensor(self._z_filled), _tensor(self.has), _tensor(popularity), self.config.prior_strength
        )
        self.query_module = QueryScorer(self.members, self.constants).eval()
        stacked = np.stack(finals)  # members × nodes × models: the transductive answers
        self._graph_mean, self._graph_std = stacked.mean(axis=0), stacked.std(axis=0)

    # -- queries ------------------------------------------------------------------------------------

    def shared_features(self, features: Mapping[str, float]) -> list[str]:
        return [n for n in self.feature_names if n in features]

    def query(
        self,
        features: Mapping[str, float],
        *,
        known_dataset: str | None = None,
        distances: Mapping[str, float] | None = None,
        probes: Sequence[ProbeRecord] = (),
    ) -> _Query:
        """The query module's inputs for a dataset node that only receives messages.

        Its edges: `similar` from `distances` (or, for a node of the graph, its similarity rows),
        `near` from its features, `source_of` from models naming it, and with probes the virtual probe
        edges (`probed`, `probed_z`) and `agree`, the datasets on which the probed models ranked alike.
        """
        cfg = self.config
        known = self.node_index.get(known_dataset) if known_dataset else None
        n_nodes = len(self.nodes)
        x = (
            self.x_data[known : known + 1]
            if known is not None and not features
            else self.scaler.transform([dict(features)])
        )
        distance = self.distance[known].copy() if known is not None and not distances else np.full(n_nodes, np.inf)
        for d, value in (distances or {}).items():
            if d in self.node_index:
                distance[self.node_index[d]] = float(value)
        if known is not None:
            distance[known] = np.inf
        weights = {name: np.zeros(n_nodes) for name in QUERY_DATA_RELATIONS}
        order, w = _nearest(distance, cfg.neighbours)
        weights["similar"][order] = w
        order, w = self._near(x[0, :-1], exclude=known)
        weights["near"][self.rated[order]] = w
        no_probe = (np.zeros(0, dtype=np.int64), np.zeros(0))
        kind = self.edge_kind(probes)
        probe_index, probe_z = virtual_edges(probes, kind, self.model_index) if kind else no_probe
        if len(probe_index):
            order, w = self._agreeing(probe_index, probe_z, self.rated[self.rated != known])
            weights["agree"][order] = w
        sources = np.array(self.sources.get(known, []) if known is not None else [], dtype=np.int64)
        index = np.concatenate([sources, probe_index]).astype(np.int64)
        spans = {"source_of": slice(0, len(sources)), "probed": slice(len(sources), len(index))}
        values = {"source_of": np.ones(len(sources)), "probed": np.ones(len(probe_index)), "probed_z": probe_z}
        model_rows = []
        for rel in self.query_module.model_relations:
            row = np.zeros(max(1, len(index)))  # one silent edge to model 0 when there is none: no empty input
            span = spans.get(rel[1], spans["probed"])
            if span.stop > span.start:
                row[span] = values[rel[1]] / (span.stop - span.start)
            model_rows.append(row)
        data_rows = [weights[rel[1]] for rel in self.query_module.data_relations]
        inputs: dict[str, np.ndarray] = {
            "features": x.astype(np.float32),
            "dataset_weights": np.array(data_rows, dtype=np.float32).reshape(len(data_rows), n_nodes),
            "model_index": index if len(index) else np.zeros(1, dtype=np.int64),
            "model_weights": np.array(model_rows, dtype=np.float32).reshape(len(model_rows), max(1, len(index))),
        }
        combined = np.sum(list(weights.values()), axis=0)[self.rated]
        anchor = combined / combined.sum() if combined.sum() > 0 else np.full(len(self.rated), 1.0 / len(self.rated))
        similarity = anchor / anchor.max()
        measured = {}
        if cfg.probes:
            measured = {
                self.model_index[p.model_id]: p.value
                for p in probes
                if p.probe == MEASURED and p.model_id in self.model_index
            }
        return _Query(inputs, anchor, similarity, measured)

    def edge_kind(self, probes: Sequence[ProbeRecord]) -> str | None:
        """The probe kind that becomes edges: the kind learnt from, else a proxy of measured scores.

        An estimator that learnt from measured scores ("score") also takes a proxy kind (XRD finders'
        agreement with each other): both rank models on the query, and edges only use that ranking (z
        among the probed). A proxy is never returned as the model's score.
        """
        if not self.config.probes:
            return None
        kinds = {p.probe for p in probes if p.model_id in self.model_index}
        if self.probe_kind in kinds:
            return self.probe_kind
        if self.probe_kind == MEASURED:
            proxies = sorted(k for k in kinds if k in PROXY_KINDS)
            return proxies[0] if proxies else None
        return None

    def probes_used(self, probes: Sequence[ProbeRecord], *, known_dataset: str | None = None) -> int:
        """How many probed models `predict` turns into probe edges (none on the transductive path)."""
        if known_dataset in self.dataset_ids:
            return 0
        kind = self.edge_kind(probes)
        return len({p.model_id for p in probes if p.probe == kind and p.model_id in self.model_index})

    def run(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of z for every model, through ONNX Runtime when serving from ONNX, else torch."""
        if self.scorer is not None:
            return self.scorer.run(inputs)
        with torch.no_grad():
            mean, std = self.query_module(*(torch.from_numpy(np.asarray(inputs[k])) for k in INPUTS))
        return mean.numpy().astype(float), std.numpy().astype(float)

    def selector(self) -> ProbeSelector:
        z = np.clip(self.z[self.rated], _Z_LOW, _Z_HIGH)  # NaN (no edge) stays NaN
        return ProbeSelector(
            z, self.model_similarity, self.model_ids, enabled=self.config.probes, diversity=self.config.probe_diversity
        )

    def select_probes(
        self,
        features: Mapping[str, float],
        *,
        known_dataset: str | None = None,
        distances: Mapping[str, float] | None = None,
        budget: int | None = None,
        among: Collection[str] | None = None,
    ) -> list[str]:
        """The models the probe-selector would probe on this query (empty when probes are off)."""
        q = self.query(features, known_dataset=known_dataset, distances=distances)
        budget = self.config.probe_budget if budget is None else budget
        return self.selector().select(q.similarity, budget, among=among)

    def predict(
        self,
        features: dict[str, float],
        *,
        known_dataset: str | None = None,
        distances: Mapping[str, float] | None = None,
        probes: Sequence[ProbeRecord] = (),
    ) -> list[Prediction]:
        """A prediction for every model of the library, in library order.

        `known_dataset` naming a scored dataset is the transductive path; naming a dataset node without
        records (or none) is the inductive one, using the node's similarity rows, or `distances`
        (dataset id -> distance) for a new dataset. `probes` become virtual probe edges; measured ones
        (probe "score") are also returned as the model's score.
        """
        own = self.node_index.get(known_dataset) if known_dataset in self.dataset_ids else None
        own_records: set[int] = set()
        if own is not None:
            observed = np.nonzero(self.has[own])[0]
            if len(observed) >= _OWN_SCALE_RECORDS:
                return self._transductive(own)
            # Too few records to know the dataset's own score scale: predict it as a new node from its
            # neighbours and let its records calibrate the rest, as measured probes do.
            own_records = {int(j) for j in observed}
            records = [
                ProbeRecord(self.model_ids[j], self.nodes[own], MEASURED, float(self.scores[own, j])) for j in observed
            ]
            probes = [*records, *(p for p in probes if p.probe != MEASURED or p.model_id not in self.model_index)]
        q = self.query(features, known_dataset=known_dataset, distances=distances, probes=probes)
        mean_z, std_z = self.run(q.inputs)
        anchor_mean = float(q.anchor @ self.row_mean[self.rated])
        anchor_spread = float(q.anchor @ self.row_spread[self.rated])
        predicted = self.sign * (anchor_mean + anchor_spread * mean_z)
        if q.measured:
            # Measured probes calibrate the rest: their mean residual shifts every other model, shrunk
            # by one pseudo-record (as the kNN estimator's transductive path does).
            js = list(q.measured)
            residual = np.array([q.measured[j] for j in js]) - predicted[js]
            predicted = predicted + residual.sum() / (len(js) + 1)
        uncertainty = anchor_spread * std_z
        out = []
        for j, model_id in enumerate(self.model_ids):
            if j in q.measured:
                score = q.measured[j]
                why = (
                    f"measured {score:.3g} on this very dataset ({known_dataset})"
                    if j in own_records
                    else f"probed: measured {score:.3g} on this dataset"
                )
                out.append(Prediction(model_id, score, 0.0, self._evidence(j, q.similarity), why))
                continue
            evidence = self._evidence(j, q.similarity)
            out.append(
                Prediction(
                    model_id,
                    float(predicted[j]),
                    float(uncertainty[j]),
                    evidence,
                    self._explain(j, evidence, mean_z[j]),
                )
            )
        return out

    def _transductive(self, own: int) -> list[Prediction]:
        mean_z, std_z = self._graph_mean[own], self._graph_std[own]
        predicted = self.sign * (self.row_mean[own] + self.row_spread[own] * mean_z)
        observed = self.has[own]
        residual = self.scores[own, observed] - predicted[observed]
        predicted = predicted + residual.sum() / (observed.sum() + 1)
        out = []
        for j, model_id in enumerate(self.model_ids):
            if observed[j]:
                score = float(self.scores[own, j])
                out.append(
                    Prediction(
                        model_id,
                        score,
                        0.0,
                        [Evidence(self.nodes[own], 1.0, score)],
                        f"measured {score:.3g} on this very dataset ({self.nodes[own]})",
                    )
                )
            else:
                out.append(
                    Prediction(
                        model_id,
                        float(predicted[j]),
                        float(self.row_spread[own] * std_z[j]),
                        [],
                        f"predicted z {mean_z[j]:+.2f} from the graph around {self.nodes[own]}",
                    )
                )
        return out

    def _evidence(self, j: int, similarity: np.ndarray) -> list[Evidence]:
        order = np.argsort(-similarity, kind="stable")
        out: list[Evidence] = []
        for p in order:
            i = int(self.rated[p])
            if similarity[p] <= 0 or len(out) >= self.evidence_count:
                break
            if self.has[i, j]:
                out.append(Evidence(self.nodes[i], float(similarity[p]), float(self.scores[i, j])))
        return out

    @staticmethod
    def _explain(j: int, evidence: list[Evidence], z: float) -> str:
        what = f"predicted {z:+.2f} standard deviations from the typical model"
        if not evidence:
            return f"{what}; no close dataset has a record of it"
        near = ", ".join(f"{e.score:.3g} on {e.dataset_id} (similarity {e.similarity:.2f})" for e in evidence)
        return f"{what}; scored {near}"

    # -- ONNX -----------------------------------------------------------------------------------------

    def export_onnx(self, path: str | Path | io.BytesIO) -> None:
        """Write the query module as ONNX (opset 18, the legacy exporter), with its wiring as metadata."""
        example = self.query({}).inputs
        args = tuple(torch.from_numpy(example[k]) for k in INPUTS)
        target: Any = path  # a path or a file-like object: torch takes both
        with warnings.catch_warnings():  # the legacy exporter announces its own deprecation; it is the one that works
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                self.query_module,
                args,
                target,
                input_names=list(INPUTS),
                output_names=["mean_z", "std_z"],
                dynamic_axes={"model_index": {0: "edges"}, "model_weights": {1: "edges"}},
                opset_version=18,
                dynamo=False,
            )
        import onnx

        if isinstance(path, io.BytesIO):
            path.seek(0)
            model = onnx.load_model(path)
        else:
            model = onnx.load(str(path))
        meta = {
            "modsnet.estimator": NAME,
            "modsnet.data_relations": json.dumps([r[1] for r in self.query_module.data_relations]),
            "modsnet.model_relations": json.dumps([r[1] for r in self.query_module.model_relations]),
            "modsnet.feature_names": json.dumps(self.feature_names),
            "modsnet.config": json.dumps(asdict(self.config)),
        }
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        if isinstance(path, io.BytesIO):
            path.seek(0)
            path.truncate()
            path.write(model.SerializeToString())
        else:
            onnx.save(model, str(path))

    def serve_onnx(self, path: str | Path | None = None, *, providers: Sequence[str] | None = None) -> OnnxScorer:
        """Export (to `path`, or in memory) and make `predict` run on ONNX Runtime from now on."""
        target: str | Path | io.BytesIO = path if path is not None else io.BytesIO()
        self.export_onnx(target)
        self.scorer = OnnxScorer(target.getvalue() if isinstance(target, io.BytesIO) else target, providers=providers)
        return self.scorer


INPUTS = ("features", "dataset_weights", "model_index", "model_weights")


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


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _loss(predicted: Tensor, target: Tensor, observed: Tensor, rank_weight: float) -> Tensor:
    """MSE on the observed z plus ListNet: cross-entropy between softmaxes of true and predicted z per row."""
    mask = observed.float()
    mse = ((predicted - target) ** 2 * mask).sum() / mask.sum().clamp(min=1.0)
    if rank_weight <= 0:
        return mse
    very_negative = torch.finfo(predicted.dtype).min / 4
    true_p = torch.softmax(target.masked_fill(~observed, very_negative), dim=1)
    log_q = torch.log_softmax(predicted.masked_fill(~observed, very_negative), dim=1)
    listnet = -(true_p * log_q * mask).sum(dim=1).mean()
    return mse + rank_weight * listnet


class OnnxScorer:
    """The exported query module under ONNX Runtime: CUDA when the machine has it, CPU otherwise."""

    def __init__(self, model: str | Path | bytes, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one query is small; threads cost more than they bring
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, sess_options=options, providers=list(providers))
        self.providers = self.session.get_providers()
        meta = self.session.get_modelmeta().custom_metadata_map
        self.data_relations: list[str] = json.loads(meta.get("modsnet.data_relations", "[]"))
        self.model_relations: list[str] = json.loads(meta.get("modsnet.model_relations", "[]"))

    def run(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self.session.run(None, {k: np.asarray(inputs[k]) for k in INPUTS})
        return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)


# ----------------------------------------------------------------------------------------------------
# Evaluation hook


def evaluate_fold(fold: Fold, config: GnnConfig | None = None) -> dict[str, np.ndarray]:
    """Fit on the fold's graph, probe each target within the budget when the run allows, predict."""
    estimator = GnnEstimator(fold.snapshot, probes=fold.probes, config=config)
    nodes = {d.dataset_id: d for d in fold.snapshot.datasets}
    out = {}
    for target in fold.targets:
        features = _dataset_raw(nodes[target]) if target in nodes else {}
        taken: list[ProbeRecord] = []
        if fold.with_probes and estimator.config.probes:
            chosen = estimator.select_probes(
                features, known_dataset=target, budget=fold.probe_budget, among=fold.probeable(target)
            )
            taken = fold.measure(target, chosen)
        predicted = {p.model_id: p.score for p in estimator.predict(features, known_dataset=target, probes=taken)}
        out[target] = np.array([predicted[m] for m in fold.candidates[target]])
    return out
