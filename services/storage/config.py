"""Storage service settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from modsnet.runtime.config import COMMON, Setting, default_home, parse_bool, resolve
from modsnet.runtime.errors import ConfigError

SETTINGS = (
    *COMMON,
    Setting("home", "data folder of the embedded backends", None),
    Setting("storage_backend", "blob backend: local (a folder under home) or s3", "local"),
    Setting("s3_endpoint", "S3 endpoint host:port (backend s3)", None),
    Setting("s3_bucket", "S3 bucket (backend s3)", "modsnet"),
    Setting("s3_access_key", "S3 access key (backend s3)", None),
    Setting("s3_secret_key", "S3 secret key (backend s3)", None),
    Setting("s3_secure", "use TLS to reach S3", False, parse_bool),
    Setting("max_upload_bytes", "largest blob accepted", 2 * 1024**3, int),
)


@dataclass(frozen=True)
class StorageConfig:
    home: Path
    storage_backend: str = "local"
    s3_endpoint: str | None = None
    s3_bucket: str = "modsnet"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_secure: bool = False
    max_upload_bytes: int = 2 * 1024**3
    host: str = "0.0.0.0"
    port: int = 0
    metrics_port: int = 0
    grace: float = 30.0
    log_level: str = "INFO"

    @classmethod
    def load(cls, flags: argparse.Namespace | None = None) -> StorageConfig:
        values = resolve(SETTINGS, flags)
        values["home"] = Path(values["home"]) if values["home"] else default_home()
        config = cls(**values)
        if config.storage_backend not in ("local", "s3"):
            raise ConfigError(f"storage backend must be local or s3, not {config.storage_backend!r}")
        if config.storage_backend == "s3":
            missing = [n for n in ("s3_endpoint", "s3_access_key", "s3_secret_key") if not getattr(config, n)]
            if missing:
                names = ", ".join("MODSNET_" + n.upper() for n in missing)
                raise ConfigError(f"storage backend s3 needs {names}")
        return config
