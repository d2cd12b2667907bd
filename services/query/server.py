"""Query server factory: builds the server (not started) from a config."""

from __future__ import annotations

from modsnet.features import single_threaded_blas
from modsnet.runtime.auth import Security
from modsnet.runtime.server import ServiceServer
from modsnet.runtime.stubs import KnowledgeClient, RecommenderClient, StorageClient
from modsnet.runtime.workers import WorkerPool
from modsnet.v1 import query_pb2, query_pb2_grpc

from .config import QueryConfig
from .core import QueryCore
from .insight import LibraryInsight
from .servicer import QueryServicer
from .work import PRELOAD

SERVICE_NAME = query_pb2.DESCRIPTOR.services_by_name["Query"].full_name


def create_server(config: QueryConfig) -> ServiceServer:
    """Build the query server (not started): downstream clients, core, servicer, readiness checks."""
    security = Security.from_config(config)  # TLS and authentication, when configured
    single_threaded_blas()  # feature extraction is fastest so (see the function)
    storage = StorageClient(config.storage_addr, credentials=security.client())
    knowledge = KnowledgeClient(config.knowledge_addr, credentials=security.client())
    recommender = RecommenderClient(config.recommender_addr, credentials=security.client())
    core = QueryCore(
        storage,
        knowledge,
        recommender,
        max_upload_bytes=config.max_upload_bytes,
        max_concurrent_uploads=config.max_concurrent_uploads,
        max_waiting_uploads=config.max_waiting_uploads,
        upload_wait_seconds=config.upload_wait_seconds,
        probe_seconds=config.probe_seconds,
        probe_round=config.probe_round,
        spool_dir=config.spool_dir,
        cache_dir=config.home / "cache" if config.home else None,
        # Started at the first search, stopped with the server (core.close); -1 keeps the work on RPC threads.
        workers=WorkerPool("query", size=config.worker_processes, preload=PRELOAD)
        if config.worker_processes >= 0
        else None,
    )
    servicer = QueryServicer(core)
    # A search holds its RPC thread while it runs or waits for a turn; admission (UploadTurns), not the thread
    # pool, bounds them, and cheap calls get threads of their own on top, so they never queue behind searches.
    threads = config.max_concurrent_uploads + config.max_waiting_uploads + config.cheap_rpc_threads
    server = ServiceServer.from_config("query", config, security, max_workers=threads)
    server.add_service(
        SERVICE_NAME,
        lambda s: query_pb2_grpc.add_QueryServicer_to_server(servicer, s),
        close=core.close,
        depends_on=(knowledge, recommender, storage),  # a search needs all three
    )
    if config.http_port >= 0:  # the HTTP face: same process, same core
        from .http_api import HttpApi, HttpServer  # Werkzeug: only when the port is asked for

        tls = (config.tls_cert, config.tls_key) if config.tls_cert and config.tls_key else None
        app = HttpApi(core, LibraryInsight(knowledge, storage), security)
        server.add_companion("http", HttpServer(app, config.host, config.http_port, ssl_context=tls))
    return server
