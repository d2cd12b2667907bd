"""Typed service configuration read from flags, then environment variables, then defaults.

Each service declares its configuration once, as a frozen dataclass deriving from `CommonConfig` whose fields
are made by `setting(...)` (default, help, parser); `settings_of` turns those fields into the `Setting`s that
`add_arguments` shows as flags (help lists each setting's environment variable and default) and `resolve`
reads, so a default is stated in one place and the dataclass and the flags cannot disagree. `load` refuses
to start (ConfigError) when a required address is missing or malformed, as Online Boutique does with its
*_ADDR variables.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from modsnet.runtime.errors import ConfigError

# How often a service checks its backend and the services it depends on, and how long one check may take
# (the bound: a dead or frozen dependency is seen within 5 s).
CHECK_INTERVAL_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 2.0

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


def _log_format(value: str) -> str:
    from modsnet.runtime.logs import parse_format

    return parse_format(value)


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


def setting(
    default: Any = MISSING, *, help: str, parse: Callable[[str], Any] | None = None, required: bool = False
) -> Any:
    """A configuration field: its one default, its help, and how its flag/environment text is parsed.

    `parse` defaults to the default's type (bool reads true/false/1/0...); without a default the field must
    be given when the dataclass is built directly, and `load` gives it None unless `required` refuses that.
    """
    if parse is None:
        parse = parse_bool if isinstance(default, bool) else type(default) if isinstance(default, (int, float)) else str
    return field(default=default, metadata={"help": help, "parse": parse, "required": required})


def settings_of(config_class: type) -> tuple[Setting, ...]:
    """The `Setting`s of a configuration dataclass, in field order (the common settings first)."""
    return tuple(
        Setting(
            f.name,
            f.metadata["help"],
            None if f.default is MISSING else f.default,
            f.metadata["parse"],
            f.metadata["required"],
        )
        for f in fields(config_class)
        if "help" in f.metadata
    )


@dataclass(frozen=True, kw_only=True)
class CommonConfig:
    """The settings every service has; a service's config derives from it (keyword-only, so the order of
    fields with and without defaults is free)."""

    host: str = setting("127.0.0.1", help="interface to listen on (0.0.0.0: every interface, as in a pod)")
    port: int = setting(0, help="gRPC port (0 = any free port)")
    metrics_port: int = setting(0, help="Prometheus /metrics HTTP port (0 = off)")
    metrics_host: str = setting("127.0.0.1", help="interface of the /metrics endpoint")
    health_port: int = setting(
        0, help="plaintext port serving only gRPC health, for probes that speak no TLS (0 = off)"
    )
    # Authentication and TLS (modsnet.runtime.auth, docs/security.md); all off by default.
    tls_cert: str | None = setting(
        None, help="PEM certificate of this service: serve TLS, and present it to the others"
    )
    tls_key: str | None = setting(None, help="PEM private key of tls_cert")
    tls_ca: str | None = setting(
        None, help="PEM CA certificate: verifies the other services, and client certificates (mTLS)"
    )
    tls_require_client_cert: bool = setting(
        True, help="with tls_ca, refuse callers without a client certificate (false: tokens only, e.g. the query API)"
    )
    auth_file: str | None = setting(
        None, help="YAML/JSON file of token hashes and certificate names with their scopes; turns authentication on"
    )
    service_token: str | None = setting(None, help="bearer token this service presents to the others")
    grace: float = setting(30.0, help="seconds in-flight calls get to finish on SIGTERM")
    log_level: str = setting("INFO", help="logging level")
    log_format: str = setting(
        "json", help="log lines: json (one object a line, with the query id) or text", parse=_log_format
    )
    otlp_endpoint: str | None = setting(
        None, help="OTLP/gRPC endpoint of a trace collector; tracing is off without it (or OTEL_EXPORTER_OTLP_ENDPOINT)"
    )
    check_interval: float = setting(
        CHECK_INTERVAL_SECONDS, help="seconds between readiness checks of the backend and the services it needs"
    )
    check_timeout: float = setting(CHECK_TIMEOUT_SECONDS, help="seconds a readiness check may take before it fails")


COMMON = settings_of(CommonConfig)


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
