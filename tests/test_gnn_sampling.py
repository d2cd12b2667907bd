"""The sparse GNN's neighbour sampler (services/recommender/estimators/gnn/sampling.py) against a brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.recommender.estimators.gnn.config import DATA, MODEL
from services.recommender.estimators.gnn.sampling import InEdges, NeighbourhoodSampler

N_DATA, N_MODEL = 12, 30


def _graph(seed: int = 0) -> tuple[list[InEdges], dict[str, np.ndarray]]:
    """A random bipartite graph with interactions both ways and a kernel-weighted dataset relation."""
    rng = np.random.default_rng(seed)
    has = rng.random((N_DATA, N_MODEL)) < 0.3
    d, m = np.nonzero(has)
    z = rng.normal(size=len(d))
    near_src = np.concatenate(
        [rng.choice(np.delete(np.arange(N_DATA), i), size=3, replace=False) for i in range(N_DATA)]
    )
    near_dst = np.repeat(np.arange(N_DATA), 3)
    near_w = rng.random(len(near_dst)) + 0.1
    near_w = near_w / np.bincount(near_dst, weights=near_w)[near_dst]
    relations = [
        InEdges.of(MODEL, DATA, m, d, {"rated": np.ones(len(d)), "rated_z": z}, N_DATA, hideable="dst"),
        InEdges.of(DATA, MODEL, d, m, {"rates": np.ones(len(d)), "rates_z": z}, N_MODEL, hideable="src"),
        InEdges.of(DATA, DATA, near_src, near_dst, {"near": near_w}, N_DATA, mean=False),
    ]
    return relations, {"d": d, "m": m, "z": z, "near": np.stack([near_src, near_dst]), "near_w": near_w}


def _brute(raw: dict[str, np.ndarray], seeds: dict[str, np.ndarray], hops: int, hidden: np.ndarray) -> tuple:
    """Every edge into every node within `hops` in-hops of the seeds, weights as the dense graph's means."""
    visible = ~hidden[raw["d"]]
    d, m, z = raw["d"][visible], raw["m"][visible], raw["z"][visible]
    edges = {  # name -> list of (src kind, src, dst kind, dst, weight)
        "rated": [(MODEL, int(mi), DATA, int(di), 1.0 / np.sum(d == di)) for di, mi in zip(d, m, strict=True)],
        "rated_z": [(MODEL, int(mi), DATA, int(di), zi / np.sum(d == di)) for di, mi, zi in zip(d, m, z, strict=True)],
        "rates": [(DATA, int(di), MODEL, int(mi), 1.0 / np.sum(m == mi)) for di, mi in zip(d, m, strict=True)],
        "rates_z": [(DATA, int(di), MODEL, int(mi), zi / np.sum(m == mi)) for di, mi, zi in zip(d, m, z, strict=True)],
        "near": [(DATA, int(s), DATA, int(t), w) for (s, t), w in zip(raw["near"].T, raw["near_w"], strict=True)],
    }
    reached = {kind: set(map(int, v)) for kind, v in seeds.items()}
    frontier = {kind: set(map(int, v)) for kind, v in seeds.items()}
    kept: dict[str, set[tuple[int, int, float]]] = {name: set() for name in edges}
    for _ in range(hops):
        new: dict[str, set[int]] = {DATA: set(), MODEL: set()}
        for name, rows in edges.items():
            for src_kind, s, dst_kind, t, w in rows:
                if t in frontier[dst_kind]:
                    kept[name].add((s, t, round(float(w), 9)))
                    if s not in reached[src_kind]:
                        new[src_kind].add(s)
        for kind in new:
            reached[kind] |= new[kind]
        frontier = new
    return reached, kept


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_full_fanout_sample_is_the_exact_neighbourhood(hops: int) -> None:
    relations, raw = _graph()
    hidden = np.zeros(N_DATA, dtype=bool)
    hidden[[2, 5]] = True
    seeds = {DATA: np.array([5, 2]), MODEL: np.array([7, 0, 11])}
    sampler = NeighbourhoodSampler(relations, {DATA: N_DATA, MODEL: N_MODEL}, [10**6] * hops)
    sub = sampler.sample(seeds, hidden)
    reached, kept = _brute(raw, seeds, hops, hidden)
    for kind in (DATA, MODEL):
        assert set(sub.nodes[kind].tolist()) == reached[kind]
        assert len(set(sub.nodes[kind].tolist())) == len(sub.nodes[kind])  # each node once
        assert sub.nodes[kind][: len(seeds[kind])].tolist() == seeds[kind].tolist()  # seeds first, in order
    for name, expected in kept.items():
        src, dst, weight = sub.edges.get(name, (np.zeros(0, int), np.zeros(0, int), np.zeros(0)))
        src_kind, dst_kind = sub.kinds.get(name, (DATA, DATA))
        got = {
            (int(sub.nodes[src_kind][s]), int(sub.nodes[dst_kind][t]), round(float(w), 9))
            for s, t, w in zip(src, dst, weight, strict=True)
        }
        assert got == expected, name
        assert len(src) == len(expected)  # no edge twice


def test_cold_datasets_keep_no_interaction() -> None:
    relations, _ = _graph(1)
    hidden = np.zeros(N_DATA, dtype=bool)
    hidden[[0, 3, 4]] = True
    sampler = NeighbourhoodSampler(relations, {DATA: N_DATA, MODEL: N_MODEL}, [4, 4], seed=3)
    sub = sampler.sample({DATA: np.array([0, 3, 4]), MODEL: np.arange(N_MODEL)}, hidden)
    for name in ("rated", "rated_z"):
        assert not hidden[sub.nodes[DATA][sub.edges[name][1]]].any()
    for name in ("rates", "rates_z"):
        assert not hidden[sub.nodes[DATA][sub.edges[name][0]]].any()
    assert hidden[sub.nodes[DATA][sub.edges["near"][1]]].any()  # features' relations stay


def test_fanout_bounds_the_sample_and_keeps_weights_a_mean() -> None:
    relations, raw = _graph(2)
    true_edges = {(int(m), int(d)) for d, m in zip(raw["d"], raw["m"], strict=True)}
    fanout = 2
    sampler = NeighbourhoodSampler(relations, {DATA: N_DATA, MODEL: N_MODEL}, [fanout, fanout], seed=5)
    for _ in range(20):
        sub = sampler.sample({DATA: np.array([1]), MODEL: np.array([3, 4])})
        src, dst, weight = sub.edges["rated"]
        per_dst = np.bincount(dst)
        assert per_dst.max() <= fanout
        pairs = {(int(sub.nodes[MODEL][s]), int(sub.nodes[DATA][t])) for s, t in zip(src, dst, strict=True)}
        assert pairs <= true_edges and len(pairs) == len(src)  # real edges, none twice
        np.testing.assert_allclose(np.bincount(dst, weights=weight)[per_dst > 0], 1.0)  # a mean over the kept
        near_dst = sub.edges["near"][1]  # kernel weights: the kept ones sum as all did (to 1)
        np.testing.assert_allclose(np.bincount(near_dst, weights=sub.edges["near"][2])[np.bincount(near_dst) > 0], 1.0)
        assert sampler._local[DATA].max() == -1 and sampler._local[MODEL].max() == -1  # reset for the next


def test_node_loader_drives_the_sampler() -> None:
    from torch_geometric.data import HeteroData
    from torch_geometric.loader import NodeLoader

    relations, _ = _graph(3)
    data = HeteroData()
    data[DATA].x = torch.randn(N_DATA, 4)
    data[MODEL].x = torch.randn(N_MODEL, 3)
    for rel in relations:  # the loader keeps the edge types the data declares
        for name in rel.names:
            dst = np.repeat(np.arange(len(rel.indptr) - 1), rel.degree())
            data[rel.src_kind, name, rel.dst_kind].edge_index = torch.from_numpy(np.stack([rel.src, dst]))
    sampler = NeighbourhoodSampler(
        relations, {DATA: N_DATA, MODEL: N_MODEL}, [3, 3], labels=4, label_edges=relations[0], seed=1
    )
    loader = NodeLoader(data, sampler, input_nodes=(DATA, torch.arange(N_DATA)), batch_size=4, shuffle=False)
    batches = list(loader)
    assert len(batches) == 3
    for k, batch in enumerate(batches):
        assert batch[DATA].n_id[:4].tolist() == list(range(4 * k, 4 * k + 4))
        assert torch.equal(batch[DATA].x, data[DATA].x[batch[DATA].n_id])
        index = batch[MODEL, "rates", DATA].edge_index if (MODEL, "rates", DATA) in batch.edge_types else None
        assert index is None  # rates go dataset -> model
        rated = batch[MODEL, "rated", DATA].edge_index
        assert not (rated[1] < 4).any()  # the seeds are cold
        assert batch[DATA].input_id.tolist() == list(range(4 * k, 4 * k + 4))
