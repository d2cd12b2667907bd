"""Sampled neighbourhoods of the bipartite graph: the subgraphs the sparse GNN trains on (issue 13).

The graph is held as in-edges per relation, CSR over destination nodes (`InEdges`): a destination's sources
and one value per edge and relation name (the interactions carry both `rated` (1) and `rated_z` (z) on the
same edges). Nothing here is (datasets x models): the arrays are as long as the edges, and a sample is as
large as its seeds times the fan-outs.

`NeighbourhoodSampler.sample` expands seed nodes hop by hop: each hop takes, for every node new in the last
hop, up to `fanouts[hop]` of its in-neighbours per relation (all of them when it has no more; a random subset
without repeats otherwise), and the sources not seen yet are the next hop's nodes. The interactions of
`hidden` datasets (training's cold seeds) are left out before sampling, so a cold node has no interaction
edge and none of its records reaches a model. Each kept edge's weight is its value over the number of edges
kept into its destination for that relation (a mean, as the dense graph's `_mean_weights`), or for a relation
whose values are already weights (`similar`, `near`: kernel weights summing to 1) the value rescaled so the
kept ones sum as all of them did. With fan-outs at least every degree the sample is the exact k-hop
neighbourhood with the dense graph's weights (tests/test_gnn_sampling.py checks it against a brute force).

It is a torch-geometric `BaseSampler`: `sample_from_nodes` answers a `NodeSamplerInput` of seed datasets
(made cold) with a `HeteroSamplerOutput` (edge weights third in its metadata), so `torch_geometric.loader.NodeLoader`
can drive it without pyg-lib or torch-sparse, which its own `NeighborSampler` needs and this environment
lacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch_geometric.sampler import BaseSampler, HeteroSamplerOutput, NodeSamplerInput

from .config import DATA, EdgeType


@dataclass(frozen=True)
class InEdges:
    """The in-edges of one or more relations sharing the same edges, CSR over destinations.

    Destination i's sources are `src[indptr[i]:indptr[i + 1]]`; `values[name]` holds one value per edge for
    each relation name carried. `hideable` names the end that is a dataset whose edges a cold dataset loses
    ("src", "dst"), or None for edges a cold dataset keeps (its features' and metadata's relations)."""

    src_kind: str
    dst_kind: str
    indptr: np.ndarray
    src: np.ndarray
    values: Mapping[str, np.ndarray]
    hideable: str | None = None
    mean: bool = True  # weights are value / edges kept; False: values are weights, rescaled to their sum

    @classmethod
    def of(
        cls,
        src_kind: str,
        dst_kind: str,
        src: np.ndarray,
        dst: np.ndarray,
        values: Mapping[str, np.ndarray],
        n_dst: int,
        *,
        hideable: str | None = None,
        mean: bool = True,
    ) -> InEdges:
        """From edge lists (any order): sorted by destination, stable."""
        src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        order = np.argsort(dst, kind="stable")
        indptr = np.zeros(n_dst + 1, dtype=np.int64)
        np.cumsum(np.bincount(dst, minlength=n_dst), out=indptr[1:])
        ordered = {name: np.asarray(v, dtype=float)[order] for name, v in values.items()}
        return cls(src_kind, dst_kind, indptr, src[order], ordered, hideable, mean)

    @property
    def names(self) -> list[str]:
        return list(self.values)

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)


@dataclass
class Subgraph:
    """A sample: its nodes per kind (global positions; seeds first, then each hop's new nodes) and its edges
    per relation name as (source local, destination local, weight)."""

    nodes: dict[str, np.ndarray]
    edges: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    kinds: dict[str, tuple[str, str]] = field(default_factory=dict)  # relation name -> (source kind, dest kind)

    def local(self, kind: str, positions: np.ndarray) -> np.ndarray:
        """Local indices of global `positions` of a kind (each must be in the sample)."""
        nodes = self.nodes[kind]
        order = np.argsort(nodes, kind="stable")
        at = np.searchsorted(nodes[order], positions)
        found = order[np.minimum(at, len(nodes) - 1)]
        if len(positions) and not np.array_equal(nodes[found], positions):
            raise KeyError(f"{kind} nodes not in the sample")
        return found


class NeighbourhoodSampler(BaseSampler):
    """k-hop sampling with per-hop fan-outs over `InEdges` relations; see the module's doc."""

    def __init__(
        self,
        relations: Sequence[InEdges],
        sizes: Mapping[str, int],
        fanouts: Sequence[int],
        *,
        seed: int = 0,
        labels: int = 0,
        label_edges: InEdges | None = None,
    ):
        """`sizes`: node count per kind; `labels`, `label_edges`: for `sample_from_nodes`, how many of a seed
        dataset's models (its in-edges in `label_edges`) join the seeds as the ones its loss is taken on."""
        self.relations = list(relations)
        self.sizes = dict(sizes)
        self.fanouts = list(fanouts)
        self.rng = np.random.default_rng(seed)
        self.labels = labels
        self.label_edges = label_edges
        # Global -> local position per kind, -1 where not sampled: reset after each sample (O(sample), not O(n)).
        self._local = {kind: np.full(n, -1, dtype=np.int64) for kind, n in self.sizes.items()}

    def _pick(self, rel: InEdges, dst: np.ndarray, fanout: int, hidden: np.ndarray | None) -> tuple[np.ndarray, ...]:
        """Edge positions into `rel` kept for destinations `dst` (and each one's destination)."""
        starts, degrees = rel.indptr[dst], rel.indptr[dst + 1] - rel.indptr[dst]
        if hidden is not None and rel.hideable == "dst":
            degrees = np.where(hidden[dst], 0, degrees)  # a cold dataset receives no interaction
        small = degrees <= fanout
        # All edges of the destinations with few enough.
        lengths = np.where(small, degrees, 0)
        which = np.repeat(np.arange(len(dst)), lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        # A random subset of the others: fanout draws with replacement, repeats dropped, then more draws
        # for those short of fanout (a few rounds: with fanout << degree repeats are rare).
        big = np.nonzero(~small)[0]
        chosen_which, chosen_offsets = [which], [offsets]
        if len(big):
            keys = np.zeros(0, dtype=np.int64)
            need = np.full(len(big), fanout)
            for _ in range(4):
                draw_which = np.repeat(np.arange(len(big)), need)
                draw = (self.rng.random(len(draw_which)) * degrees[big][draw_which]).astype(np.int64)
                keys = np.unique(np.concatenate([keys, draw_which * (int(degrees.max()) + 1) + draw]))
                have = np.bincount(keys // (int(degrees.max()) + 1), minlength=len(big))
                need = np.maximum(fanout - have, 0)
                if not need.any():
                    break
            per = keys // (int(degrees.max()) + 1)
            rank = np.arange(len(keys)) - np.searchsorted(per, per)  # position within its destination
            keep = rank < fanout
            chosen_which.append(big[per[keep]])
            chosen_offsets.append((keys % (int(degrees.max()) + 1))[keep])
        which, offsets = np.concatenate(chosen_which), np.concatenate(chosen_offsets)
        positions = starts[which] + offsets
        if hidden is not None and rel.hideable == "src":
            keep = ~hidden[rel.src[positions]]  # a cold dataset sends no interaction
            which, positions = which[keep], positions[keep]
        return which, positions

    def sample(self, seeds: Mapping[str, np.ndarray], hidden: np.ndarray | None = None) -> Subgraph:
        """The sampled neighbourhood of `seeds` (global positions per kind, distinct); `hidden`: a mask over
        datasets whose interactions are left out."""
        order: dict[str, list[np.ndarray]] = {kind: [] for kind in self.sizes}
        count = dict.fromkeys(self.sizes, 0)

        def add(kind: str, positions: np.ndarray) -> np.ndarray:
            positions = np.unique(positions)
            new = positions[self._local[kind][positions] < 0]
            self._local[kind][new] = count[kind] + np.arange(len(new))
            count[kind] += len(new)
            order[kind].append(new)
            return new

        frontier = {}
        for kind in self.sizes:
            given = np.asarray(seeds.get(kind, np.zeros(0, dtype=np.int64)), dtype=np.int64)
            self._local[kind][given] = np.arange(len(given))  # seeds keep their given order
            count[kind] = len(given)
            order[kind].append(given)
            frontier[kind] = given
        collected: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        kinds: dict[str, tuple[str, str]] = {}
        try:
            for fanout in self.fanouts:
                reached: dict[str, list[np.ndarray]] = {kind: [] for kind in self.sizes}
                for rel in self.relations:
                    dst = frontier[rel.dst_kind]
                    which, positions = self._pick(rel, dst, fanout, hidden)
                    src = rel.src[positions]
                    reached[rel.src_kind].append(src)
                    kept = np.bincount(which, minlength=len(dst)).astype(float)
                    for name, values in rel.values.items():
                        value = values[positions]
                        if rel.mean:
                            weight = value / np.maximum(kept[which], 1.0)
                        else:  # kernel weights: the kept ones sum as all of a destination's did
                            running = np.concatenate([[0.0], np.cumsum(values)])
                            total = running[rel.indptr[dst + 1]] - running[rel.indptr[dst]]
                            got = np.bincount(which, weights=value, minlength=len(dst))
                            weight = value * (total / np.where(got > 0, got, 1.0))[which]
                        collected.setdefault(name, []).append((src, dst[which], weight))
                        kinds[name] = (rel.src_kind, rel.dst_kind)
                frontier = {
                    kind: add(kind, np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
                    for kind, found in reached.items()
                }
            nodes = {kind: np.concatenate(parts) for kind, parts in order.items()}
            edges = {}
            for name, triples in collected.items():
                src_kind, dst_kind = kinds[name]
                src = np.concatenate([t[0] for t in triples])
                dst = np.concatenate([t[1] for t in triples])
                edges[name] = (
                    self._local[src_kind][src],
                    self._local[dst_kind][dst],
                    np.concatenate([t[2] for t in triples]),
                )
        finally:
            for kind, parts in order.items():
                for part in parts:
                    self._local[kind][part] = -1
        return Subgraph(nodes, edges, kinds)

    # -- torch-geometric's sampler interface ----------------------------------------------------------

    def seeds_of(self, datasets: np.ndarray) -> dict[str, np.ndarray]:
        """Seed datasets and up to `labels` models each of them has records of (drawn at random)."""
        models: list[np.ndarray] = []
        if self.label_edges is not None and self.labels > 0:
            for i in datasets.tolist():
                span = self.label_edges.src[self.label_edges.indptr[i] : self.label_edges.indptr[i + 1]]
                if len(span) > self.labels:
                    span = self.rng.choice(span, size=self.labels, replace=False)
                models.append(span)
        other = [k for k in self.sizes if k != DATA]
        out = {DATA: np.asarray(datasets, dtype=np.int64)}
        for kind in other:
            out[kind] = np.unique(np.concatenate(models)) if models else np.zeros(0, dtype=np.int64)
        return out

    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs: object) -> HeteroSamplerOutput:
        """Seed datasets made cold (their interactions hidden), with their labelled models as seeds too."""
        datasets = index.node.numpy().astype(np.int64)
        hidden = np.zeros(self.sizes[DATA], dtype=bool)
        hidden[datasets] = True
        seeds = self.seeds_of(datasets)
        sub = self.sample(seeds, hidden)
        row: dict[EdgeType, torch.Tensor] = {}
        col: dict[EdgeType, torch.Tensor] = {}
        weights: dict[EdgeType, torch.Tensor] = {}
        for name, (src, dst, weight) in sub.edges.items():
            edge_type = (sub.kinds[name][0], name, sub.kinds[name][1])
            row[edge_type], col[edge_type] = torch.from_numpy(src), torch.from_numpy(dst)
            weights[edge_type] = torch.from_numpy(weight.astype(np.float32))
        return HeteroSamplerOutput(
            node={kind: torch.from_numpy(nodes) for kind, nodes in sub.nodes.items()},
            row=row,
            col=col,
            edge=dict.fromkeys(row),
            batch=None,
            # torch-geometric reads (input ids, seed times); the edge weights ride third.
            metadata=(index.input_id, index.time, weights),
        )

    def sample_from_edges(self, index: object, neg_sampling: object = None) -> HeteroSamplerOutput:
        raise NotImplementedError("the GNN trains on cold datasets (node seeds), not on edges")
