"""The embedded default: all four services in one process, talking gRPC over loopback.

Same servers and same code path as the local cluster and Kubernetes; only the backends differ (an SQLite
file and a local folder under the data folder). On first start the built-in libraries shipped in
`modsnet/libraries/` are imported, so a search works right after installation.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from modsnet.client import Client
from modsnet.runtime import tracing
from modsnet.runtime.server import ServiceServer, freeze_startup_objects
from services.knowledge.config import KnowledgeConfig
from services.knowledge.server import create_server as knowledge_server
from services.query.config import QueryConfig
from services.query.server import create_server as query_server
from services.recommender.config import RecommenderConfig
from services.recommender.server import SERVICE_NAME as RECOMMENDER_SERVICE
from services.recommender.server import create_server as recommender_server
from services.storage.config import StorageConfig
from services.storage.server import create_server as storage_server

if TYPE_CHECKING:
    from services.recommender.core import RecommenderCore

log = logging.getLogger(__name__)

BUILTIN_LIBRARIES = Path(__file__).resolve().parent / "libraries"
LOOPBACK = "127.0.0.1"


def builtin_bundles() -> list[Path]:
    """Folders of the libraries that ship with ModsNet (all, or those named in $MODSNET_BUILTIN_LIBRARIES)."""
    if not BUILTIN_LIBRARIES.is_dir():
        return []
    folders = sorted(p for p in BUILTIN_LIBRARIES.iterdir() if (p / "library.yaml").is_file())
    wanted = os.environ.get("MODSNET_BUILTIN_LIBRARIES")
    if wanted is not None:
        names = {n.strip() for n in wanted.split(",") if n.strip()}
        folders = [f for f in folders if f.name in names]
    return folders


def import_builtin_libraries(client: Client) -> list[str]:
    """Import each built-in library that is not there yet (never overwrites one, feedback included)."""
    present = {lib.name for lib in client.list_libraries()}
    imported = []
    for folder in builtin_bundles():
        if folder.name in present:
            continue
        response = client.import_library(folder)
        log.info("imported built-in library %s", response.library.name)
        imported.append(response.library.name)
    return imported


class EmbeddedCluster:
    """Start with `with EmbeddedCluster(home) as cluster:`; `cluster.client` talks to it, with every
    service's address (it imports the built-in libraries, so it administers too)."""

    def __init__(
        self,
        home: str | Path,
        *,
        import_builtins: bool = True,
        max_upload_bytes: int | None = None,
        estimator: str | None = None,
        retrain_after: int = 20,
        train_inline_limit: int | None = None,
        max_staleness_seconds: float | None = None,
        gnn_members: int | None = None,
        gnn_steps: int | None = None,
        http_port: int | None = None,
        worker_processes: int | None = None,
        auth_file: str | Path | None = None,
        service_token: str | None = None,
        client_token: str | None = None,
    ):
        """`auth_file` turns authentication on in every service (the daemon's loopback cluster): the services
        call each other with `service_token` and `client` calls with `client_token`."""
        self.home = Path(home)
        # As `modsnet serve recommender` reads it: the kNN estimator on request, the GNN by default.
        self.estimator = estimator or os.environ.get("MODSNET_ESTIMATOR") or "gnn"
        self.retrain_after = retrain_after
        # As `modsnet serve recommender` reads it: past this many interactions a first training goes on in the
        # background while kNN answers.
        self.train_inline_limit = (
            train_inline_limit
            if train_inline_limit is not None
            else int(os.environ.get("MODSNET_TRAIN_INLINE_LIMIT") or 250_000)
        )
        # As `modsnet serve recommender` reads it: how long searches may be answered behind the graph.
        self.max_staleness_seconds = (
            max_staleness_seconds
            if max_staleness_seconds is not None
            else float(os.environ.get("MODSNET_MAX_STALENESS_SECONDS") or 10.0)
        )
        # As `modsnet serve recommender` reads them (0: the GNN's defaults); the test suite asks for a small GNN.
        self.gnn_members = gnn_members if gnn_members is not None else int(os.environ.get("MODSNET_GNN_MEMBERS", 0))
        self.gnn_steps = gnn_steps if gnn_steps is not None else int(os.environ.get("MODSNET_GNN_STEPS", 0))
        self.import_builtins = import_builtins
        self.max_upload_bytes = max_upload_bytes
        self.http_port = http_port  # the query service's HTTP API and web app: None = off, 0 = any free port
        # The query service's worker processes (0: one per core; -1: none), as `modsnet serve query` reads them.
        # Default none: a one-shot command searches once, and a worker's start (a fork server importing pandas,
        # scikit-learn, ONNX Runtime) would cost it seconds; a long-lived embedded cluster can ask for them.
        env = os.environ.get("MODSNET_WORKER_PROCESSES")
        self.worker_processes = worker_processes if worker_processes is not None else int(env) if env else -1
        self.auth_file = str(auth_file) if auth_file else None
        self.service_token = service_token
        self.client_token = client_token
        self.servers: dict[str, ServiceServer] = {}
        self.addresses: dict[str, str] = {}
        self._client: Client | None = None
        self._tracing = False  # whether this cluster turned tracing on (and so turns it off)

    def start(self) -> EmbeddedCluster:
        self.home.mkdir(parents=True, exist_ok=True)
        # As `modsnet serve` does: spans go to a collector only when OTEL_EXPORTER_OTLP_ENDPOINT names one.
        self._tracing = not tracing.enabled() and tracing.configure()
        try:
            self._start(
                "storage",
                storage_server(
                    StorageConfig(
                        home=self.home, host=LOOPBACK, auth_file=self.auth_file, service_token=self.service_token
                    )
                ),
            )
            storage = self.addresses["storage"]
            self._start(
                "knowledge",
                knowledge_server(
                    KnowledgeConfig(
                        home=self.home,
                        storage_addr=storage,
                        host=LOOPBACK,
                        auth_file=self.auth_file,
                        service_token=self.service_token,
                    )
                ),
            )
            knowledge = self.addresses["knowledge"]
            recommender = RecommenderConfig(
                knowledge_addr=knowledge,
                storage_addr=storage,
                estimator=self.estimator,
                retrain_after=self.retrain_after,
                train_inline_limit=self.train_inline_limit,
                max_staleness_seconds=self.max_staleness_seconds,
                gnn_members=self.gnn_members,
                gnn_steps=self.gnn_steps,
                host=LOOPBACK,
                auth_file=self.auth_file,
                service_token=self.service_token,
            )
            self._start("recommender", recommender_server(recommender))
            query_config = QueryConfig(
                knowledge_addr=knowledge,
                recommender_addr=self.addresses["recommender"],
                storage_addr=storage,
                home=self.home,
                host=LOOPBACK,
                worker_processes=self.worker_processes,
                auth_file=self.auth_file,
                service_token=self.service_token,
            )
            if self.max_upload_bytes is not None:
                query_config = QueryConfig(**{**query_config.__dict__, "max_upload_bytes": self.max_upload_bytes})
            if self.http_port is not None:
                query_config = QueryConfig(**{**query_config.__dict__, "http_port": self.http_port})
            self._start("query", query_server(query_config))
            if "http" in self.servers["query"].companions:
                self.addresses["http"] = f"{LOOPBACK}:{self.servers['query'].companions['http'].port}"
            if self.import_builtins:
                self.ensure_builtin_libraries()
            freeze_startup_objects()  # with all four servers built and their libraries imported
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, name: str, server: ServiceServer) -> None:
        server.freeze_on_start = False  # the cluster does, once all four run
        port = server.start()
        self.servers[name] = server
        self.addresses[name] = f"{LOOPBACK}:{port}"

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                query=self.addresses["query"],
                knowledge=self.addresses["knowledge"],
                storage=self.addresses["storage"],
                recommender=self.addresses["recommender"],
                token=self.client_token,
            )
        return self._client

    @property
    def recommender_core(self) -> RecommenderCore:
        """The recommender's logic in this process: its trainings under way (`trainings()`)."""
        return self.servers["recommender"].cores[RECOMMENDER_SERVICE]  # type: ignore[no-any-return]

    def ensure_builtin_libraries(self) -> list[str]:
        return import_builtin_libraries(self.client)

    def stop(self, grace: float = 1.0) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        for name in ("query", "recommender", "knowledge", "storage"):  # callers before callees
            server = self.servers.pop(name, None)
            if server is not None:
                server.stop(grace)
        if self._tracing:
            tracing.disable()  # sends the spans still batched
            self._tracing = False

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
