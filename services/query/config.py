"""Query service settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from modsnet.runtime.config import CommonConfig, address, default_home, resolve, setting, settings_of


@dataclass(frozen=True, kw_only=True)
class QueryConfig(CommonConfig):
    knowledge_addr: str = setting(help="knowledge service host:port", parse=address, required=True)
    recommender_addr: str = setting(help="recommender service host:port", parse=address, required=True)
    storage_addr: str = setting(help="storage service host:port", parse=address, required=True)
    max_upload_bytes: int = setting(512 * 1024**2, help="largest exemplar file accepted")
    max_concurrent_uploads: int = setting(4, help="searches parsing an upload at once (each holds its parsed data)")
    # Room in line for the clients a busy service has: a refused client's retry has no place in line, so with 8
    # places 32 clients made some searches lose over and over (p99 7.5 s at p50 0.3 s). A place costs an idle
    # RPC thread and the unread upload's flow-control window; the wait, not the line, is what a client feels.
    max_waiting_uploads: int = setting(
        64,
        help="searches that wait for a turn, first come first served (unread: they cost no memory); more are "
        "refused, RESOURCE_EXHAUSTED",
    )
    upload_wait_seconds: float = setting(30.0, help="longest a search waits for a turn (less if its deadline nears)")
    cheap_rpc_threads: int = setting(
        16, help="RPC threads on top of the searches' (running + waiting), so cheap calls never queue behind searches"
    )
    worker_processes: int = setting(
        0,
        help="processes that parse uploads, extract features and run probes (0: one per core; -1: on RPC threads)",
    )
    probe_seconds: float = setting(10.0, help="most seconds a search spends probing models on the uploaded data")
    probe_round: int = setting(1, help="probes measured per round of adaptive probing (each round given the last)")
    spool_dir: str | None = setting(None, help="folder for uploads in progress (default: the system temp folder)")
    http_port: int = setting(-1, help="port of the HTTP/JSON API and web app (0 = any free port, -1 = off)")
    home: Path | None = setting(None, help="data folder; feature models are cached under home/cache")  # noqa: RUF009 - setting() returns a field()

    @classmethod
    def load(cls, flags: argparse.Namespace | None = None) -> QueryConfig:
        values = resolve(SETTINGS, flags)
        values["home"] = Path(values["home"]) if values["home"] else default_home()
        return cls(**values)


SETTINGS = settings_of(QueryConfig)
