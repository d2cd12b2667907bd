"""Recommender service settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from modsnet.runtime.config import COMMON, Setting, address, resolve

SETTINGS = (
    *COMMON,
    Setting("knowledge_addr", "knowledge service host:port", None, address, required=True),
    Setting("neighbours", "similar datasets the kNN estimator consults", 8, int),
    Setting("device", "where estimators run: cpu or cuda", "cpu"),
)


@dataclass(frozen=True)
class RecommenderConfig:
    knowledge_addr: str
    neighbours: int = 8
    device: str = "cpu"
    host: str = "0.0.0.0"
    port: int = 0
    metrics_port: int = 0
    grace: float = 30.0
    log_level: str = "INFO"

    @classmethod
    def load(cls, flags: argparse.Namespace | None = None) -> RecommenderConfig:
        return cls(**resolve(SETTINGS, flags))
