"""Recommender service settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from modsnet.runtime.config import CommonConfig, address, resolve, setting, settings_of


@dataclass(frozen=True, kw_only=True)
class RecommenderConfig(CommonConfig):
    knowledge_addr: str = setting(help="knowledge service host:port", parse=address, required=True)
    storage_addr: str = setting(help="storage service host:port (estimator checkpoints)", parse=address, required=True)
    estimator: str = setting("gnn", help="what ranks: gnn (the GNN, probes and all) or knn (kNN over dataset features)")
    neighbours: int = setting(8, help="similar datasets the kNN estimator consults")
    retrain_after: int = setting(20, help="new interactions after which the GNN retrains in the background")
    train_inline_limit: int = setting(
        250_000, help="larger libraries train their first GNN in the background (kNN answers meanwhile)"
    )
    max_staleness_seconds: float = setting(
        10.0,
        help="how long after feedback searches may be answered by the estimator of the graph before it, while it "
        "refreshes in the background (0: every search waits for the refresh)",
    )
    device: str = setting("auto", help="where the GNN scores: auto (CUDA when present), cpu or cuda")
    # 0 keeps the GNN's own defaults (estimators/gnn/config.py); a small machine or a test trades quality for time.
    gnn_members: int = setting(0, help="GNN ensemble size (0: the GNN's default)")
    gnn_steps: int = setting(0, help="GNN training steps per member (0: the GNN's default)")
    sparse_gnn: bool = setting(
        True,
        help="past the dense GNN's datasets x models cell limit: the GNN trained on sampled neighbourhoods (true) or "
        "the kNN estimator (false)",
    )
    training_processes: int = setting(
        0,
        help="worker processes that train GNNs, at most one per library (0: half the cores, at least one; -1: none, "
        "training runs in the serving process's threads)",
    )

    @classmethod
    def load(cls, flags: argparse.Namespace | None = None) -> RecommenderConfig:
        return cls(**resolve(SETTINGS, flags))


SETTINGS = settings_of(RecommenderConfig)
