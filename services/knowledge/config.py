"""Knowledge service settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from modsnet.runtime.config import COMMON, Setting, address, default_home, parse_bool, resolve
from modsnet.runtime.errors import ConfigError

SETTINGS = (
    *COMMON,
    Setting("home", "data folder of the embedded backends", None),
    Setting("storage_addr", "storage service host:port", None, address, required=True),
    Setting("knowledge_backend", "graph store: sqlite (a file under home) or redis", "sqlite"),
    Setting("redis_url", "Redis URL, e.g. redis://redis:6379/0 (backend redis)", None),
    Setting("redis_password", "Redis password, kept out of the URL (backend redis)", None),
    Setting(
        "redis_allow_no_persistence",
        "accept a Redis that keeps nothing on disk (tests only: the graph cannot be rebuilt)",
        False,
        parse_bool,
    ),
)


@dataclass(frozen=True)
class KnowledgeConfig:
    home: Path
    storage_addr: str
    knowledge_backend: str = "sqlite"
    redis_url: str | None = None
    redis_password: str | None = None
    redis_allow_no_persistence: bool = False
    host: str = "0.0.0.0"
    port: int = 0
    metrics_port: int = 0
    grace: float = 30.0
    log_level: str = "INFO"

    @classmethod
    def load(cls, flags: argparse.Namespace | None = None) -> KnowledgeConfig:
        values = resolve(SETTINGS, flags)
        values["home"] = Path(values["home"]) if values["home"] else default_home()
        config = cls(**values)
        if config.knowledge_backend not in ("sqlite", "redis"):
            raise ConfigError(f"knowledge backend must be sqlite or redis, not {config.knowledge_backend!r}")
        if config.knowledge_backend == "redis" and not config.redis_url:
            raise ConfigError("knowledge backend redis needs MODSNET_REDIS_URL")
        return config
