"""Recommender service settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from modsnet.runtime.config import COMMON, Setting, address, resolve

SETTINGS = (
    *COMMON,
    Setting("knowledge_addr", "knowledge service host:port", None, address, required=True),
    Setting("storage_addr", "storage service host:port (estimator checkpoints)", None, address, required=True),
    Setting("estimator", "what ranks: gnn (the GNN, probes and all) or knn (kNN over dataset features)", "gnn"),
    Setting("neighbours", "similar datasets the kNN estimator consults", 8, int),
    Setting("retrain_after", "new interactions after which the GNN retrains in the background", 20, int),
    Setting(
        "train_inline_limit",
        "larger libraries train their first GNN in the background (kNN answers meanwhile)",
        250_000,
        int,
    ),
    Setting("device", "where the GNN scores: auto (CUDA when present), cpu or cuda", "auto"),
)


@dataclass(frozen=True)
class RecommenderConfig:
    knowledge_addr: str
    storage_addr: str
    estimator: str = "gnn"
    neighbours: int = 8
    retrain_after: int = 20
    train_inline_limit: int = 250_000
    device: str = "auto"
    host: str = "0.0.0.0"
    port: int = 0
    metrics_port: int = 0
    grace: float = 30.0
    log_level: str = "INFO"

    @classmethod
    def load(cls, flags: argparse.Namespace | None = None) -> RecommenderConfig:
        return cls(**resolve(SETTINGS, flags))
