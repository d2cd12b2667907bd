"""The torch modules: one ensemble member (`_Net`) and the query module (`QueryScorer`) that ONNX exports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch_geometric.nn import GraphConv, HeteroConv

from .config import DATA, MODEL, QUERY_DATA_RELATIONS, QUERY_MODEL_RELATIONS, EdgeType, GnnConfig

# The query module's inputs, in the order it takes them.
INPUTS = ("features", "dataset_weights", "model_index", "model_weights")


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


def _mean_and_spread(scores: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """The members' mean and (population) standard deviation, elementwise, as sums of the members' vectors.

    What `torch.stack(scores).mean(0)` and the root of the mean squared deviation give (float32 rounding apart),
    without the stacked (members x models) copy and the reductions across its rows: exported to ONNX, those were
    a Concat and two ReduceMeans over every model, ~30% more of a query's ONNX time at 1M models than these
    elementwise sums (docs/benchmarks-scale.md, run 12)."""
    total = scores[0]
    for score in scores[1:]:
        total = total + score
    mean = total / len(scores)
    squares = (scores[0] - mean) ** 2
    for score in scores[1:]:
        squares = squares + (score - mean) ** 2
    return mean, torch.sqrt(squares / len(scores))


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
        prior = self.prior(dataset_weights)
        return self.ensemble(features, dataset_weights, model_index, model_weights, prior)

    def ensemble(
        self, features: Tensor, dataset_weights: Tensor, model_index: Tensor, model_weights: Tensor, prior: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The members' mean and spread of z given the query's neighbour prior (1, n_models)."""
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
            # (models x head) @ (head x 1), the library's matrix as it is stored: under ONNX Runtime 0.81x the
            # time of (1 x head) @ its transpose, the same sums (docs/benchmarks-scale.md, run 12).
            product = (projected @ net.project_dataset(h).T).reshape(1, -1)
            scores.append((product + bias + net.prior_gain * prior).squeeze(0))
        return _mean_and_spread(scores)

    def prior(self, dataset_weights: Tensor) -> Tensor:
        """`_neighbour_prior` of the query over the datasets it has an edge from (all its relations together).

        A query has edges from ~2 x `neighbours` of the library's datasets: the prior gathers those rows only
        instead of a (1 x datasets) @ (datasets x models) product that is mostly zeros (at 10k models that
        product was ~80% of a query's ONNX time). Only exact zeros are left out of the sums.
        """
        together = dataset_weights.sum(dim=0, keepdim=True)
        edges = torch.nonzero(together[0]).squeeze(1)
        return _neighbour_prior(
            together.index_select(1, edges),
            self.z.index_select(0, edges),
            self.has.index_select(0, edges),
            self.popularity,
            self.strength,
        )


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
