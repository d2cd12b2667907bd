"""The GNN estimator's settings and the names of its node kinds and relations."""

from __future__ import annotations

from dataclasses import dataclass

from ...probes import DIVERSITY

NAME = "gnn/v1"
DATA, MODEL = "dataset", "model"
EdgeType = tuple[str, str, str]
# Relations into a dataset node, in the order the query module takes them.
QUERY_DATA_RELATIONS = ("similar", "near", "agree")  # from datasets: dense weights over dataset nodes
QUERY_MODEL_RELATIONS = ("source_of", "probed", "probed_z")  # from models: sparse (index, weight)
_Z_LOW, _Z_HIGH = -6.0, 3.0  # z beyond these is one odd dataset speaking (food101: +10 for its own model)


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
