"""Storage service settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from modsnet.runtime.config import CommonConfig, default_home, resolve, setting, settings_of
from modsnet.runtime.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class StorageConfig(CommonConfig):
    home: Path = setting(help="data folder of the embedded backends")  # noqa: RUF009 - setting() returns a field()
    storage_backend: str = setting("local", help="blob backend: local (a folder under home) or s3")
    s3_endpoint: str | None = setting(None, help="S3 endpoint host:port (backend s3)")
    s3_bucket: str = setting("modsnet", help="S3 bucket (backend s3)")
    s3_access_key: str | None = setting(None, help="S3 access key (backend s3)")
    s3_secret_key: str | None = setting(None, help="S3 secret key (backend s3)")
    s3_secure: bool = setting(False, help="use TLS to reach S3")
    max_upload_bytes: int = setting(2 * 1024**3, help="largest blob accepted")

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


SETTINGS = settings_of(StorageConfig)
