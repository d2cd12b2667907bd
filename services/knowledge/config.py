"""Knowledge service settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from modsnet.runtime.config import CommonConfig, address, default_home, resolve, setting, settings_of
from modsnet.runtime.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class KnowledgeConfig(CommonConfig):
    home: Path = setting(help="data folder of the embedded backends")  # noqa: RUF009 - setting() returns a field()
    storage_addr: str = setting(help="storage service host:port", parse=address, required=True)
    knowledge_backend: str = setting("sqlite", help="graph store: sqlite (a file under home) or redis")
    redis_url: str | None = setting(
        None,
        help="Redis URL, e.g. redis://redis:6379/0, or redis+cluster://node:6379 for a Redis Cluster (backend redis)",
    )
    redis_password: str | None = setting(None, help="Redis password, kept out of the URL (backend redis)")
    redis_allow_no_persistence: bool = setting(
        False, help="accept a Redis that keeps nothing on disk (tests only: the graph cannot be rebuilt)"
    )

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


SETTINGS = settings_of(KnowledgeConfig)
