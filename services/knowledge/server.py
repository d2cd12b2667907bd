"""Knowledge server factory: builds the server (not started) from a config."""

from __future__ import annotations

from modsnet.runtime.auth import Security
from modsnet.runtime.server import ServiceServer
from modsnet.runtime.stubs import StorageClient
from modsnet.v1 import knowledge_pb2, knowledge_pb2_grpc

from .config import KnowledgeConfig
from .core import KnowledgeCore, open_store
from .metrics import LIBRARY_GAUGES, library_samples
from .servicer import KnowledgeServicer

SERVICE_NAME = knowledge_pb2.DESCRIPTOR.services_by_name["Knowledge"].full_name


def create_server(config: KnowledgeConfig) -> ServiceServer:
    """Build the knowledge server (not started): store, storage client, core, servicer, health check."""
    security = Security.from_config(config)  # TLS and authentication, when configured
    storage = StorageClient(config.storage_addr, credentials=security.client())
    core = KnowledgeCore(open_store(config), storage)
    servicer = KnowledgeServicer(core)
    server = ServiceServer.from_config("knowledge", config, security)
    unwatch = LIBRARY_GAUGES.watch(library_samples(core.list_libraries))

    def close() -> None:
        unwatch()
        core.close()

    server.add_service(
        SERVICE_NAME,
        lambda s: knowledge_pb2_grpc.add_KnowledgeServicer_to_server(servicer, s),
        check=core.check,
        close=close,
        depends_on=(storage,),  # bundles are read from and written to storage
        core=core,
    )
    return server
