"""Query service settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from modsnet.runtime.config import COMMON, Setting, address, default_home, resolve

SETTINGS = (
    *COMMON,
    Setting("knowledge_addr", "knowledge service host:port", None, address, required=True),
    Setting("recommender_addr", "recommender service host:port", None, address, required=True),
    Setting("storage_addr", "storage service host:port", None, address, required=True),
    Setting("max_upload_bytes", "largest exemplar file accepted", 512 * 1024**2, int),
    Setting("probe_seconds", "most seconds a search spends probing models on the uploaded data", 10.0, float),
    Setting("spool_dir", "folder for uploads in progress (default: the system temp folder)", None),
    Setting("home", "data folder; feature models are cached under home/cache", None),
)


@dataclass(frozen=True)
class QueryConfig:
    knowledge_addr: str
    recommender_addr: str
    storage_addr: str
    max_upload_bytes: int = 512 * 1024**2
    probe_seconds: float = 10.0
    spool_dir: str | None = None
    home: Path | None = None
    host: str = "0.0.0.0"
    port: int = 0
    metrics_port: int = 0
    grace: float = 30.0
    log_level: str = "INFO"

    @classmethod
    def load(cls, flags: argparse.Namespace | None = None) -> QueryConfig:
        values = resolve(SETTINGS, flags)
        values["home"] = Path(values["home"]) if values["home"] else default_home()
        return cls(**values)
