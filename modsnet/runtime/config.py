"""Typed service configuration read from flags, then environment variables, then defaults.

Each service declares its settings as `Setting`s; `load` builds an argparse parser whose help lists each
setting's environment variable and default, and refuses to start (ConfigError) when a required address
is missing or malformed, as Online Boutique does with its *_ADDR variables.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modsnet.runtime.errors import ConfigError

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


def default_home() -> Path:
    """The data folder of the embedded backends: $MODSNET_HOME, else ~/.modsnet."""
    return Path(os.environ.get("MODSNET_HOME") or Path.home() / ".modsnet")


def parse_bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (true/false)")


def address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"{value!r} is not host:port")
    return value


@dataclass(frozen=True)
class Setting:
    name: str  # attribute name; flag --name-with-dashes; env MODSNET_NAME_UPPER
    help: str
    default: Any = None
    parse: Callable[[str], Any] = str
    required: bool = False

    @property
    def env(self) -> str:
        return "MODSNET_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


COMMON = (
    Setting("host", "interface to listen on", "0.0.0.0"),
    Setting("port", "gRPC port (0 = any free port)", 0, int),
    Setting("metrics_port", "Prometheus /metrics HTTP port (0 = off)", 0, int),
    Setting("grace", "seconds in-flight calls get to finish on SIGTERM", 30.0, float),
    Setting("log_level", "logging level", "INFO"),
)


def add_arguments(parser: argparse.ArgumentParser, settings: Sequence[Setting]) -> None:
    for s in settings:
        need = "required" if s.required else f"default {s.default!r}"
        parser.add_argument(s.flag, dest=s.name, default=None, help=f"{s.help} (env {s.env}; {need})")


def resolve(settings: Sequence[Setting], flags: argparse.Namespace | None = None) -> dict[str, Any]:
    """Values for `settings`: a flag wins over the environment, which wins over the default."""
    values: dict[str, Any] = {}
    for s in settings:
        raw = getattr(flags, s.name, None) if flags is not None else None
        if raw is None:
            raw = os.environ.get(s.env)
        if raw is None or raw == "":
            if s.required:
                raise ConfigError(f"missing required setting {s.flag} (or environment variable {s.env})")
            values[s.name] = s.default
            continue
        try:
            values[s.name] = s.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"invalid {s.flag} / {s.env}: {exc}") from None
    return values
